"""The python3 runtime: handler import (Init) and invocations, driven by :mod:`sandbox.agent`.

Runs inside the sandbox, single-threaded, blocking, in the agent's process. Lambda semantics:
``handler(event, context)``, module globals persist across warm invocations, a handler exception
is an
``Unhandled`` error with ``errorType``/``errorMessage``/``stackTrace``, a result that is not JSON
serialisable is ``Runtime.MarshalError``, an import failure is ``Runtime.ImportModuleError``.

What Lambda's runtime does beyond the invocation loop lives beside this module, one concern
each: :mod:`.python_layout` (where files are, what a function can import),
:mod:`.lambda_env` (environment variables, trace ids), :mod:`.lambda_context`,
:mod:`.lambda_json` (result encoding), :mod:`.lambda_logging` (root logger, error records).
"""

from __future__ import annotations

import base64
import importlib
import importlib.machinery
import io
import logging
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import sandbox
from sandbox import contain, messages
from sandbox.agent import InitFailure
from sandbox.runtimes import lambda_env, lambda_json, lambda_logging, python_layout, snapshot_hooks
from sandbox.runtimes.lambda_context import LambdaContext

PRELOAD = (
    "json", "traceback", "importlib", "decimal", "uuid", "datetime", "logging", "base64",
    "simplejson", "importlib.util", "importlib.machinery",
)  # fmt: skip
TASK_ROOT = python_layout.TASK_ROOT
MAX_RESULT = 6 * 1024 * 1024  # Lambda's synchronous response limit
# This runtime's own frames are not the function's business (nor are its host paths).
_RUNTIME_DIR = os.path.dirname(os.path.realpath(sandbox.__file__)) + "/"
_path_map: dict[str, str] = {}  # host directory -> sandbox path, set at pool time


def sandbox_layout() -> python_layout.Layout:
    """What of the host a python sandbox sees (the zygote builds every root from this)."""
    project = os.path.dirname(_RUNTIME_DIR.rstrip("/"))
    return python_layout.layout(sys.base_prefix, sys.prefix, project)


def prepare_zygote(path_map: Mapping[str, str]) -> None:
    """Zygote, after the preloads: what every sandbox would otherwise redo (and copy)."""
    _path_map.update(path_map)
    python_layout.relocate_modules_in_zygote(path_map)
    python_layout.plan_isolation()


def _relocate(path: str) -> str:
    return python_layout.relocate_path(path, _path_map)


def error_shape(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error object for an exception raised by user code: the runtime's leading
    frames dropped (awslambdaric drops its bootstrap.py's), paths as the sandbox sees them."""
    frames = traceback.extract_tb(exc.__traceback__)
    # Code file names may already be the sandbox's (the zygote renames them): both forms.
    runtime = (_RUNTIME_DIR, _relocate(_RUNTIME_DIR))
    while frames and frames[0].filename.startswith(runtime):
        del frames[0]
    for frame in frames:
        frame.filename = _relocate(frame.filename)
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(frames),
    }


def load_handler(handler: str) -> Callable[[Any, Any], Any]:
    """Import ``module.func`` (``dir/module.func`` allowed) as awslambdaric's ``_get_handler``
    does, with its error types and messages. Raises ``_InitError``."""
    module_name, _, func_name = handler.rpartition(".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise _InitError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name} as a handler module",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        trace = [f'  File "{_relocate(str(exc.filename))}" Line {exc.lineno}\n    {exc.text}']
        raise _InitError(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{module_name}': {exc}",
            trace,
        ) from exc
    except Exception as exc:
        # Lambda reports an exception raised by the module's top level as itself.
        raise _InitError(type(exc).__name__, str(exc), error_shape(exc)["stackTrace"]) from exc
    try:
        func = getattr(module, func_name)
    except AttributeError:
        raise _InitError(
            "Runtime.HandlerNotFound", f"Handler '{func_name}' missing on module '{module_name}'"
        ) from None
    return func  # type: ignore[no-any-return]


class _InitError(Exception):
    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error: dict[str, Any] = {
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": trace or [],
        }


def _warm_up() -> None:
    """Run the invocation machinery once, at pool time.

    A sandbox is a fork of the zygote: the first time any code path runs in it, every page it
    writes (reference counts, caches) is copied. Doing that here, before the sandbox is ready,
    moves ~1 ms of page faults from the first invocation to the pool."""
    event = lambda_json.decode_event(b'{"a": [1, 2.5, "x", null, true, {"b": {}}]}')
    function = {
        "name": "warm-up",
        "version": "0",
        "memory_mb": 128,
        "timeout_s": 3,
        "env": {},
        "handler": "app.handler",
    }
    env = lambda_env.lambda_environment(function, "warm-up", TASK_ROOT)
    context = LambdaContext("00000000-0000-0000-0000-000000000000", env, "arn", 0)
    context.get_remaining_time_in_millis()
    lambda_json.encode_result({"event": event, "n": 1, "f": 1.5, "s": "x", "l": [None, True]})
    lambda_env.new_trace_id()
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
    os.environ.update(env)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            # print() from a handler should reach `lambdad logs -f` line by line, as on Lambda.
            stream.reconfigure(line_buffering=True)
    _reap_orphans()
    time.monotonic_ns()


def _warm_copy(env: Mapping[str, str], arn: str) -> None:
    """The runtime's side of an invocation, without the handler (see :func:`_warm_up`): in a
    template's copy, every page it writes is copied from the template on first touch."""
    event = lambda_json.decode_event(b'{"a": [1, 2.5, "x", null, true, {"b": {}}]}')
    context = LambdaContext("00000000-0000-0000-0000-000000000000", env, arn, 0)
    context.get_remaining_time_in_millis()
    lambda_json.encode_result({"event": event, "n": 1, "f": 1.5, "s": "x", "l": [None, True]})
    lambda_env.new_trace_id()
    lambda_logging.set_request("00000000-0000-0000-0000-000000000000")
    messages.encode(messages.Result(result=b"null", duration_us=1.0, maxrss_kb=1))
    resource.getrusage(resource.RUSAGE_SELF)
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


def _replace_environ(env: Mapping[str, str]) -> None:
    """``os.environ = env`` in as few putenv/unsetenv calls as possible: most of Lambda's
    variables already have their value from the warm-up (each call costs a few µs on the cold
    path)."""
    environ = os.environ
    for key in [k for k in environ if k not in env]:
        del environ[key]
    for key, value in env.items():
        if environ.get(key) != value:
            environ[key] = value


def _log_error(error: Mapping[str, Any], json_logs: bool, init: bool = False) -> None:
    """Lambda's runtime logs every error result it reports, Init's after a warning."""
    if init:
        logging.getLogger().warning(lambda_logging.UNHANDLED_WARNING)
    sys.stdout.write(lambda_logging.error_lines(error, json_logs))


def client_context(raw: str | None) -> dict[str, Any] | None:
    """The invocation's ``ClientContext`` (base64 JSON, as the caller sent it) as the map
    ``context.client_context`` is built from; None when absent or not a JSON object."""
    if not raw:
        return None
    try:
        value = lambda_json.decode_event(base64.b64decode(raw, validate=True))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


class PythonRuntime:
    """The :class:`sandbox.agent.Runtime` for python3: the handler runs in this process."""

    def __init__(self) -> None:
        self.handler: Callable[[Any, Any], Any] | None = None
        self.env: Mapping[str, str] = {}
        self.arn = ""
        self.json_logs = False
        self.private_root = False  # a mount namespace: Lambda's paths, lambdad's hidden

    def prepare(
        self, isolation: contain.Isolation, path_map: Mapping[str, str], warm_up: bool = True
    ) -> None:
        _path_map.update(path_map)
        self.private_root = isolation.namespaces
        if isolation.namespaces:
            python_layout.relocate_modules(path_map)
            python_layout.warm_path_cache(python_layout.function_sys_path(TASK_ROOT))
            python_layout.plan_isolation()
        lambda_logging.prepare(_relocate)
        if warm_up:
            _warm_up()

    def init(self, init: messages.Init, task_root: str, phases: dict[str, int]) -> None:
        function = init.function
        t_env = time.monotonic_ns()
        env = lambda_env.lambda_environment(
            function, init.log_stream, task_root, init.region, init.initialization_type
        )
        _replace_environ(env)
        if self.private_root:
            python_layout.isolate_imports(task_root, env.get("PYTHONPATH", ""))
        else:  # no private root: the host's paths, the function's code first
            # Lambda's order: the function, then layers' site-packages, then layers' /opt/python.
            layer_site = f"/opt/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}"
            sys.path[:0] = [task_root, layer_site + "/site-packages", "/opt/python"]
        os.chdir(task_root)
        json_logs = lambda_logging.setup(env, _relocate)
        if init.template:
            snapshot_hooks.install()
        t_import = time.monotonic_ns()
        phases["runtime_env"] = (t_import - t_env) // 1000
        try:
            handler = load_handler(str(function["handler"]))
        except _InitError as exc:
            phases["import"] = (time.monotonic_ns() - t_import) // 1000
            _log_error(exc.error, json_logs, init=True)
            sys.stdout.flush()
            sys.stderr.flush()
            raise InitFailure(exc.error) from None
        phases["import"] = (time.monotonic_ns() - t_import) // 1000
        if init.template:
            t_hooks = time.monotonic_ns()
            try:
                snapshot_hooks.run("before_snapshot")
            except Exception as exc:
                error = error_shape(exc)
                _log_error(error, json_logs, init=True)
                sys.stdout.flush()
                sys.stderr.flush()
                raise InitFailure(error) from None
            phases["before_snapshot"] = (time.monotonic_ns() - t_hooks) // 1000
        sys.stdout.flush()
        sys.stderr.flush()
        self.handler, self.env, self.json_logs = handler, env, json_logs
        self.arn = lambda_env.function_arn(init.region, str(function["name"]))
        signal.signal(signal.SIGCHLD, _on_sigchld)

    def after_restore(self) -> None:
        """In a template's copy, before its first invocation: the invocation machinery run
        once (its pages become the copy's own now, not during the first invocation), then the
        function's after-restore hooks (an exception ends the copy; its restore fails)."""
        os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        _warm_copy(self.env, self.arn)
        try:
            snapshot_hooks.run("after_restore")
        except Exception as exc:
            _log_error(error_shape(exc), self.json_logs)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    def invoke(self, msg: messages.Invoke) -> messages.Result:
        handler = self.handler
        assert handler is not None
        request_id = msg.request_id
        received = time.monotonic_ns()
        try:
            event = lambda_json.decode_event(msg.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return messages.Result(bad_payload=f"Could not parse request body into json: {exc}")
        # The X-Ray trace header: the daemon's (the caller's, or one it made up and logged),
        # else a fresh one (Lambda generates one for every invocation, sampled or not).
        os.environ["_X_AMZN_TRACE_ID"] = msg.trace_id or lambda_env.new_trace_id()
        lambda_logging.set_request(request_id)
        context = LambdaContext(
            request_id,
            self.env,
            f"{self.arn}:{msg.qualifier}" if msg.qualifier else self.arn,
            received + msg.timeout_ms * 1_000_000,
            client_context(msg.client_context),
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
                reply["result"] = lambda_json.encode_result(result)
                if len(reply["result"]) > MAX_RESULT:
                    del reply["result"]
                    reply["error"] = {
                        "errorMessage": "Response payload size exceeded maximum allowed "
                        f"payload size ({MAX_RESULT} bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                        "stackTrace": [],
                    }
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                reply["error"] = {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError",
                    "stackTrace": [],
                }
        if "error" in reply:
            _log_error(reply["error"], self.json_logs)
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
