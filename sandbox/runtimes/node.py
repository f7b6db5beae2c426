"""Node.js (``nodejs18.x`` / ``nodejs20.x`` / ``nodejs22.x``: the host's ``node``).

Node is a process, not a fork of a zygote, and starting it costs tens of milliseconds. So each
pooled sandbox starts its node at pool time, already confined: the agent forks, the child
becomes the sandbox's unprivileged uid, loads the seccomp filter and execs
``node runtime.mjs`` (:file:`sandbox/runtimes/nodejs/runtime.mjs`, a small Runtime API client
shipped here, as AWS ships its own). That process warms up and blocks reading fd 3. At Init the
agent copies its own (function-specific) rlimits onto it and writes the function's
environment and handler to fd 3; node loads the handler and asks for its first event. The
request path has no interpreter start in it, only the handler's import.

What the pre-started process cannot get: ``NODE_OPTIONS`` and other flags from the function's
environment (node has already started; the variables are visible to the handler as usual).
"""

from __future__ import annotations

import json
import os
import resource
import signal
from collections.abc import Mapping, Sequence

from sandbox import _libc, contain, credentials, messages, runtimes, seccomp
from sandbox.agent import InitFailure
from sandbox.runtimes.process import ProcessRuntime
from sandbox.runtimes.python_layout import Layout

PRELOAD = ("json", "selectors", "secrets", "resource")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nodejs", "runtime.mjs")
NODE = runtimes.node_binary()  # in the zygote, before any fork: every sandbox inherits it
CONFIG_FD = 3
READY_FD = 4  # node writes one byte here once it is warmed up and waiting for its config
# Node's own module search path on Lambda, with layers first.
NODE_PATH = "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules"
_LIMITS = (
    resource.RLIMIT_NOFILE,
    resource.RLIMIT_FSIZE,
    resource.RLIMIT_NPROC,
    resource.RLIMIT_CORE,
    resource.RLIMIT_MSGQUEUE,
)


def sandbox_layout() -> Layout:
    """What of the host a node sandbox sees beyond the host's /usr (where node is): the JS
    runtime client at /var/runtime, where Lambda keeps its Node runtime."""
    scripts = os.path.dirname(SCRIPT)
    return Layout({scripts: "/var/runtime"}, ((scripts, "/var/runtime"),), (), None)


def _inside(path: str, path_map: Mapping[str, str]) -> str:
    for host, inside in path_map.items():
        if path == host or path.startswith(host + "/"):
            return inside + path[len(host) :]
    return path


class NodeRuntime(ProcessRuntime):
    name = "nodejs"

    def __init__(self) -> None:
        super().__init__()
        self.config_w = -1

    def command(self, init: messages.Init, task_root: str) -> Sequence[str]:
        raise AssertionError("node is started at pool time")

    def prepare(
        self, isolation: contain.Isolation, path_map: Mapping[str, str], warm_up: bool = True
    ) -> None:
        super().prepare(isolation, path_map, warm_up)
        if NODE is None:
            return  # init reports it (the daemon starts no nodejs zygote without node)
        node = NODE[0]
        script = _inside(SCRIPT, path_map) if isolation.namespaces else SCRIPT
        config_r, self.config_w = os.pipe2(os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        env = {"PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin", "NODE_PATH": NODE_PATH}
        pid = os.fork()
        if pid == 0:  # the node process: confined as the handler will be, then exec
            try:
                os.dup2(config_r, CONFIG_FD)  # inheritable
                os.dup2(ready_w, READY_FD)
                _libc.close_range(READY_FD + 1)
                for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                if isolation.credentials:
                    credentials.drop(self.uid, self.gid)
                if isolation.seccomp_program is not None:
                    seccomp.load(isolation.seccomp_program)
                os.execve(node, [node, "--no-deprecation", script], env)
            finally:
                os._exit(127)
        os.close(config_r)
        os.close(ready_w)
        self.adopt(pid)
        # Pool time: the sandbox is "ready" only once node is — started, its modules loaded,
        # blocked on fd 3 — so that taking it from the pool means no interpreter start. (EOF:
        # node died; Init reports it.)
        try:
            os.read(ready_r, 1)
        finally:
            os.close(ready_r)

    def start_process(self, init: messages.Init, task_root: str, env: dict[str, str]) -> None:
        if NODE is None or self.child_pid == 0:
            raise InitFailure({
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": "this host has no node for the nodejs runtime",
            })  # fmt: skip
        runtime_name = str(init.function.get("runtime", "nodejs"))
        if runtime_name == "nodejs":
            runtime_name = runtimes.host_node_name() or "nodejs"
        env = {
            **env,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime_name}",
            "NODE_PATH": NODE_PATH + ":/var/runtime:/var/task",
        }
        env.update({str(k): str(v) for k, v in dict(init.function.get("env") or {}).items()})
        for what in _LIMITS:  # the function's limits, set on the agent by specialization
            try:
                resource.prlimit(self.child_pid, what, resource.getrlimit(what))
            except (OSError, ValueError):
                pass  # it exited: wait_init sees that
        config = json.dumps({"env": env, "taskRoot": task_root, "handler": env["_HANDLER"]})
        try:
            os.write(self.config_w, config.encode() + b"\n")
        except OSError:
            pass  # it exited: wait_init sees that
        finally:
            os.close(self.config_w)
            self.config_w = -1


RUNTIME = NodeRuntime()
