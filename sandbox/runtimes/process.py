"""Process runtimes: the function runs in a child of the agent that speaks the Runtime API.

``provided`` (:mod:`sandbox.runtimes.provided`) and Node.js (:mod:`sandbox.runtimes.node`)
share this: the agent, PID 1 of the sandbox, serves the Runtime API
(:mod:`sandbox.runtime_api`) on the sandbox's own loopback and runs the runtime process as its
child — with every isolation step already in place, since the child inherits the agent's uid,
empty capability sets, ``no_new_privs``, rlimits, cgroup, namespaces and seccomp filter.

Init is over when the runtime first asks for an event (``GET .../invocation/next``); it fails
if the runtime posts ``init/error`` or exits first (``Runtime.ExitError``), and the daemon's Init
timeout covers one that never asks. An invocation is the event handed to ``next`` and the
answer posted to ``.../response`` or ``.../error``. A runtime process that exits during an
invocation takes the sandbox with it: the agent exits with the child's status (a signal N as
128 + N: PID 1 cannot die of a signal it sends itself), so the daemon reports
``Runtime.ExitError`` as for any crash and the next invocation gets a fresh sandbox.
"""

from __future__ import annotations

import base64
import os
import resource
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox import contain, messages, runtime_api
from sandbox.agent import InitFailure
from sandbox.runtimes.lambda_env import function_arn

TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
# Lambda's for custom runtimes; /opt/* are where layers put executables and libraries.
PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LD_LIBRARY_PATH = "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
# Python ignores these; ignored dispositions survive execve, and a shell script must see
# SIGPIPE kill ``yes | head`` as it does everywhere else.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)


def lambda_environment(
    function: Mapping[str, Any],
    stream: str,
    task_root: str,
    api_address: str,
    region: str = "us-east-1",
    initialization_type: str = "on-demand",
) -> dict[str, str]:
    """The environment Lambda gives a custom runtime, plus the function's own variables."""
    name = str(function["name"])
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["memory_mb"]),
        "AWS_LAMBDA_FUNCTION_VERSION": str(function["version"]),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(function["timeout_s"])),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "_HANDLER": str(function["handler"]),
        "TZ": "UTC",
        "LANG": "en_US.UTF-8",
        "PATH": PATH,
        "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
    }
    env.update({str(k): str(v) for k, v in dict(function.get("env") or {}).items()})
    return env


def exit_status_code(status: int) -> int:
    """The exit status the agent passes on for a child's wait status."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1


def describe_status(status: int) -> str:
    """Lambda's words for how a runtime process ended (``exit status 1``, ``signal: killed``)."""
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        words = {"SIGKILL": "killed", "SIGSEGV": "segmentation fault", "SIGABRT": "aborted"}
        return f"signal: {words.get(name, name.lower())}"
    return f"wait status {status}"


class ProcessRuntime:
    """The :class:`sandbox.agent.Runtime` of a runtime that runs as a child process."""

    name = "process"

    def __init__(self) -> None:
        self.server: runtime_api.RuntimeApiServer | None = None
        self.function: Mapping[str, Any] = {}
        self.region = "us-east-1"
        self.child_pid = 0
        self.pidfd = -1
        self.child_status: int | None = None
        self.uid = os.getuid()
        self.gid = os.getgid()

    @property
    def child_pids(self) -> tuple[int, ...]:
        """The runtime process, if it has been started (the agent renices it with itself)."""
        return (self.child_pid,) if self.child_pid else ()

    # -- what a concrete runtime says --------------------------------------------------------

    def command(self, init: messages.Init, task_root: str) -> Sequence[str]:
        """argv of the runtime process. Raises :class:`InitFailure` if there is none."""
        raise NotImplementedError

    # -- the agent's protocol --------------------------------------------------------------

    def sandbox_credentials(self, uid: int, gid: int) -> None:
        """The uid/gid this sandbox will run as (called by the agent before :meth:`prepare`)."""
        self.uid, self.gid = uid, gid

    def prepare(
        self, isolation: contain.Isolation, path_map: Mapping[str, str], warm_up: bool = True
    ) -> None:
        # Each sandbox has its own loopback: the port is Lambda's. Without a network namespace
        # (a host that cannot make one) sandboxes share the host's, so any free port will do.
        port = runtime_api.PORT if isolation.namespaces else 0
        self.server = runtime_api.RuntimeApiServer(runtime_api.HOST, port)

    def init(self, init: messages.Init, task_root: str, phases: dict[str, int]) -> None:
        assert self.server is not None
        self.function = init.function
        t_spawn = time.monotonic_ns()
        self.region = init.region
        env = lambda_environment(
            init.function,
            init.log_stream,
            task_root,
            self.server.address,
            init.region,
            init.initialization_type,
        )
        self.start_process(init, task_root, env)
        t_wait = time.monotonic_ns()
        phases["runtime_spawn"] = (t_wait - t_spawn) // 1000
        outcome = self.server.wait_init()
        phases["runtime_init"] = (time.monotonic_ns() - t_wait) // 1000
        if outcome.error is not None:
            raise InitFailure(outcome.error)
        if outcome.exited:
            status = self._reap_child()
            raise InitFailure({
                "errorType": "Runtime.ExitError",
                "errorMessage": f"Runtime exited with error: {describe_status(status)}",
            })  # fmt: skip

    def start_process(self, init: messages.Init, task_root: str, env: dict[str, str]) -> None:
        """Start the runtime process (``provided``: exec its bootstrap now)."""
        argv = list(self.command(init, task_root))
        os.chdir(task_root)
        try:
            pid = os.posix_spawn(argv[0], argv, env, setsigdef=_DEFAULT_SIGNALS)
        except OSError as exc:
            raise InitFailure({
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": f"RequestId: Error: fork/exec {argv[0]}: {exc.strerror}",
            }) from None  # fmt: skip
        self.adopt(pid)

    def adopt(self, pid: int) -> None:
        assert self.server is not None
        self.child_pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.server.watch_child(self.pidfd)

    def invoke(self, msg: messages.Invoke) -> messages.Result:
        assert self.server is not None
        now_ms = int(time.time() * 1000)
        event = runtime_api.Event(
            request_id=msg.request_id,
            payload=msg.payload,
            deadline_ms=now_ms + msg.timeout_ms,
            function_arn=function_arn(self.region, str(self.function.get("name", "")))
            + (f":{msg.qualifier}" if msg.qualifier else ""),
            trace_id=msg.trace_id or runtime_api.trace_header(),
            client_context=_client_context_json(msg.client_context),
        )
        answer = self.server.invoke(event)
        if answer.exited:
            status = self._reap_child()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exit_status_code(status))
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if answer.error is not None:
            return messages.Result(
                error=answer.error, duration_us=answer.duration_us, maxrss_kb=maxrss
            )
        return messages.Result(
            result=answer.result or b"", duration_us=answer.duration_us, maxrss_kb=maxrss
        )

    def after_invoke(self) -> None:
        self._reap_orphans()

    # -- children ----------------------------------------------------------------------------

    def _reap_child(self) -> int:
        if self.child_status is None:
            _, status = os.waitpid(self.child_pid, 0)
            self.child_status = status
        return self.child_status

    def _reap_orphans(self) -> None:
        # PID 1 of the sandbox: the runtime's orphaned children are ours to reap. If the runtime
        # process itself is among them its status is kept; its pidfd still says it exited.
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child_pid:
                self.child_status = status


def _client_context_json(encoded: str | None) -> str | None:
    """The Runtime API's ``Lambda-Runtime-Client-Context`` is the JSON itself; callers send it
    base64-encoded (Invoke's ``X-Amz-Client-Context``)."""
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
