"""The python3 runtime: handler import (Init) and invocations, driven by :mod:`sandbox.agent`.

Runs inside the sandbox, single-threaded, blocking, in the agent's process. Lambda semantics:
``handler(event, context)``, module globals persist across warm invocations, a handler
exception is a ``Handled`` error with ``errorType``/``errorMessage``/``stackTrace``, a result
that is not JSON serialisable is ``Runtime.MarshalError``, an import failure is
``Runtime.ImportModuleError``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import io
import json
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from sandbox import contain, messages
from sandbox.agent import InitFailure

PRELOAD = ("json", "traceback", "importlib", "decimal", "uuid", "datetime", "logging", "base64")
TASK_ROOT = "/var/task"
ARN_PREFIX = "arn:aws:lambda:local:000000000000:function:"
MAX_RESULT = 6 * 1024 * 1024  # Lambda's synchronous response limit


class LambdaContext:
    """The ``context`` argument: Lambda's fields and ``get_remaining_time_in_millis()``."""

    def __init__(
        self, request_id: str, function: Mapping[str, Any], deadline_ns: int, stream: str
    ) -> None:
        name = str(function["name"])
        self.aws_request_id = request_id
        self.function_name = name
        self.function_version = str(function["version"])
        self.memory_limit_in_mb = int(function["memory_mb"])
        self.invoked_function_arn = ARN_PREFIX + name
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = stream
        self.identity = None
        self.client_context = None
        self._deadline_ns = deadline_ns

    def get_remaining_time_in_millis(self) -> int:
        return max(0, (self._deadline_ns - time.monotonic_ns()) // 1_000_000)


def lambda_environment(function: Mapping[str, Any], stream: str, task_root: str) -> dict[str, str]:
    """The environment a Lambda python handler expects, plus the function's own variables."""
    name = str(function["name"])
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["memory_mb"]),
        "AWS_LAMBDA_FUNCTION_VERSION": str(function["version"]),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(function["timeout_s"])),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_RUNTIME_API": "",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
        "AWS_REGION": "local",
        "AWS_DEFAULT_REGION": "local",
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_HANDLER": str(function["handler"]),
        "TZ": "UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin",
        "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:"
        "/var/task:/var/task/lib:/opt/lib",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({str(k): str(v) for k, v in dict(function.get("env") or {}).items()})
    return env


def error_shape(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error object for an exception raised by user code."""
    frames = traceback.extract_tb(exc.__traceback__)
    # Drop this runtime's own frames: the user should see their code only.
    frames = traceback.StackSummary.from_list(
        [f for f in frames if not f.filename.endswith(("runtimes/python.py",))]
    )
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": frames.format(),
    }


def load_handler(handler: str) -> Callable[[Any, Any], Any]:
    """Import ``module.func`` (``dir/module.func`` allowed). Raises ``_InitError``."""
    module_name, _, func_name = handler.rpartition(".")
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise _InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", exc
        ) from exc
    except ImportError as exc:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", exc
        ) from exc
    except Exception as exc:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", exc
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise _InitError(
            "Runtime.HandlerNotFound", f"Handler '{func_name}' missing on module '{module_name}'"
        )
    return func  # type: ignore[no-any-return]


class _InitError(Exception):
    def __init__(self, error_type: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        # Only the user's own frames: importlib's machinery is noise to them.
        frames = [
            f
            for f in (traceback.extract_tb(cause.__traceback__) if cause else [])
            if not f.filename.startswith("<frozen") and "/importlib/" not in f.filename
        ]
        self.error: dict[str, Any] = {
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": traceback.StackSummary.from_list(frames).format(),
        }


def _warm_up() -> None:
    """Run the invocation machinery once, at pool time.

    A sandbox is a fork of the zygote: the first time any code path runs in it, every page it
    writes (reference counts, caches) is copied. Doing that here, before the sandbox is ready,
    moves ~1 ms of page faults from the first invocation to the pool."""
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=True).encode
    event = json.loads(b'{"a": [1, 2.5, "x", null, true, {"b": {}}]}')
    function = {
        "name": "warm-up",
        "version": "0",
        "memory_mb": 128,
        "timeout_s": 3,
        "env": {},
        "handler": "app.handler",
    }
    context = LambdaContext("00000000-0000-0000-0000-000000000000", function, 0, "warm-up")
    context.get_remaining_time_in_millis()
    dumps({"event": event, "n": 1, "f": 1.5, "s": "x", "l": [None, True]}).encode()
    try:
        raise ValueError("warm-up")
    except ValueError as exc:
        error_shape(exc)
    messages.encode(messages.Result(result=b"null", duration_us=1.0, maxrss_kb=1))
    resource.getrusage(resource.RUSAGE_SELF)
    importlib.machinery.PathFinder.find_spec("lambdad_warm_up_no_such_module", ["/"])
    # A real import from a directory, through the whole path finder / pyc loader machinery,
    # as the handler's import at specialization will be: colorsys is tiny and pure Python.
    importlib.import_module("colorsys")
    # The environment is replaced at specialization; do it once now, so that those dict and
    # environ writes are already this process's own pages.
    os.environ.clear()
    os.environ.update(lambda_environment(function, "warm-up", TASK_ROOT))
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            # print() from a handler should reach `lambdad logs -f` line by line, as on Lambda.
            stream.reconfigure(line_buffering=True)
    _reap_orphans()
    time.monotonic_ns()


_children_exited: list[bool] = []  # set by SIGCHLD: something for PID 1 to reap


def _on_sigchld(signum: int, frame: object) -> None:
    _children_exited.append(True)


def _reap_orphans() -> None:
    # We are PID 1 of the sandbox: every orphaned grandchild is ours to reap.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _rewrite_paths(path_map: Mapping[str, str]) -> None:
    """sys.path and the prefixes point at host paths; inside, the runtime lives elsewhere."""

    def move(p: str) -> str:
        for host, inside in path_map.items():
            if p == host or p.startswith(host + "/"):
                return inside + p[len(host) :]
        return p

    sys.path[:] = [move(p) for p in sys.path]
    for attr in ("prefix", "exec_prefix", "base_prefix", "base_exec_prefix"):
        setattr(sys, attr, move(getattr(sys, attr)))


class PythonRuntime:
    """The :class:`sandbox.agent.Runtime` for python3: the handler runs in this process."""

    def __init__(self) -> None:
        self.handler: Callable[[Any, Any], Any] | None = None
        self.function: Mapping[str, Any] = {}
        self.stream = ""
        self.dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=True).encode

    def prepare(self, isolation: contain.Isolation, path_map: Mapping[str, str]) -> None:
        if isolation.namespaces:
            _rewrite_paths(path_map)
        _warm_up()

    def init(self, init: messages.Init, task_root: str, phases: dict[str, int]) -> None:
        function = init.function
        t_env = time.monotonic_ns()
        stream = init.log_stream
        os.environ.clear()
        os.environ.update(lambda_environment(function, stream, task_root))
        # Lambda's order: the function, then layers' site-packages, then layers' /opt/python.
        layer_site = f"/opt/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}"
        sys.path[:0] = [task_root, layer_site + "/site-packages", "/opt/python"]
        os.chdir(task_root)
        t_import = time.monotonic_ns()
        phases["runtime_env"] = (t_import - t_env) // 1000
        try:
            handler = load_handler(str(function["handler"]))
        except _InitError as exc:
            phases["import"] = (time.monotonic_ns() - t_import) // 1000
            sys.stdout.flush()
            sys.stderr.flush()
            raise InitFailure(exc.error) from None
        phases["import"] = (time.monotonic_ns() - t_import) // 1000
        sys.stdout.flush()
        sys.stderr.flush()
        self.handler, self.function, self.stream = handler, function, stream
        signal.signal(signal.SIGCHLD, _on_sigchld)

    def invoke(self, msg: messages.Invoke) -> messages.Result:
        handler = self.handler
        assert handler is not None
        request_id = msg.request_id
        received = time.monotonic_ns()
        try:
            event = json.loads(msg.payload) if msg.payload else None
        except (ValueError, UnicodeDecodeError) as exc:
            return messages.Result(bad_payload=f"Could not parse request body into json: {exc}")
        context = LambdaContext(
            request_id, self.function, received + msg.timeout_ms * 1_000_000, self.stream
        )
        reply: dict[str, Any] = {}
        start = time.monotonic_ns()
        try:
            result = handler(event, context)
            end = time.monotonic_ns()
        except Exception as exc:
            end = time.monotonic_ns()
            reply["error"] = error_shape(exc)
        else:
            try:
                reply["result"] = self.dumps(result).encode()
                if len(reply["result"]) > MAX_RESULT:
                    del reply["result"]
                    reply["error"] = {
                        "errorMessage": "Response payload size exceeded maximum allowed "
                        f"payload size ({MAX_RESULT} bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                        "stackTrace": [],
                    }
            except (TypeError, ValueError) as exc:
                reply["error"] = {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError",
                    "stackTrace": [],
                }
        reply["duration_us"] = (end - start) / 1000
        reply["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sys.stdout.flush()
        sys.stderr.flush()
        return messages.Result(**reply)

    def after_invoke(self) -> None:
        if _children_exited:
            _children_exited.clear()
            _reap_orphans()


RUNTIME = PythonRuntime()
