"""Lambda's error taxonomy: what each way an invocation can end looks like to the caller.

Pure functions, no I/O. Every function error is ``Unhandled``, as today's Lambda answers for
a raised exception too (``Handled`` is kept for clients that read it); the platform's verdicts (a
timeout, a crash, an OOM kill, an Init failure, a malformed or oversized answer) also cost the
sandbox, except for a result the runtime itself refused to marshal. The runtime logs the errors
it reports itself, in the function's log format (``sandbox/runtimes/lambda_logging.py``); the
daemon logs only what no runtime saw: the sandbox's own set-up failing
(:func:`logged_by_runtime`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

HANDLED: Final = "Handled"
UNHANDLED: Final = "Unhandled"

EXIT_ERROR: Final = "Runtime.ExitError"
TIMED_OUT: Final = "Sandbox.Timedout"
INVALID_RESPONSE: Final = "Runtime.InvalidResponse"
UNKNOWN: Final = "Runtime.Unknown"
SETUP_ERROR: Final = "Sandbox.SetupError"  # the agent's: specialization failed, no runtime ran
OUT_OF_MEMORY: Final = "Runtime.OutOfMemory"  # the REPORT's Error Type for an OOM kill
# Error types that are the platform's verdict (a REPORT with Status: error), not the handler's.
PLATFORM_ERROR_PREFIXES: Final = ("Runtime.", "Sandbox.", "Function.")


def function_error(error: Mapping[str, Any] | None) -> str | None:
    """``Unhandled`` for any error a runtime reports (the handler's exception included, as on
    Lambda today); None for none."""
    if error is None:
        return None
    return UNHANDLED


def logged_by_runtime(error: Mapping[str, Any]) -> bool:
    """Whether the runtime has already written ``error`` to the log stream (every Init and
    invocation error it reports), so that the daemon must not write it again."""
    return error.get("errorType") != SETUP_ERROR


def init_exit_error(description: str) -> dict[str, Any]:
    """Init could not finish: the sandbox died, timed out or could not be set up."""
    return {"errorType": EXIT_ERROR, "errorMessage": f"Runtime exited with error: {description}"}


def exit_error(request_id: str, description: str, oom: bool = False) -> dict[str, Any]:
    """The sandbox died during an invocation (crash, OOM kill, killed)."""
    error: dict[str, Any] = {
        "errorType": EXIT_ERROR,
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {description}",
    }
    if oom:
        error["oom"] = True
    return error


def timeout_message(timeout_s: float) -> str:
    return f"Task timed out after {timeout_s:.2f} seconds"


def timeout_error(timeout_s: float) -> dict[str, Any]:
    return {"errorType": TIMED_OUT, "errorMessage": timeout_message(timeout_s)}


def invalid_response(request_id: str, problem: str) -> dict[str, Any]:
    return {
        "errorType": INVALID_RESPONSE,
        "errorMessage": f"RequestId: {request_id} Error: the runtime sent a malformed result "
        f"({problem})",
    }


def report_status(
    error: Mapping[str, Any] | None, function_error: str | None
) -> tuple[str | None, str | None]:
    """(Status, Error Type) of Lambda's REPORT line: ``("timeout", None)`` for a timeout,
    ``("error", type)`` for every platform failure (``Runtime.*``, ``Sandbox.*``,
    ``Function.*``; ``Runtime.OutOfMemory`` for an OOM kill), ``(None, None)`` when the
    function answered — its own exception included, which is ``Unhandled`` but not a
    platform failure."""
    if error is None or function_error != UNHANDLED:
        return None, None
    error_type = str(error.get("errorType") or UNKNOWN)
    if error_type == TIMED_OUT:
        return "timeout", None
    if error.get("oom"):
        return "error", OUT_OF_MEMORY
    if not error_type.startswith(PLATFORM_ERROR_PREFIXES):
        return None, None
    return "error", error_type


def init_error(raw: Any) -> dict[str, Any]:
    """The error of an ``init-error`` message, bounded like any error a sandbox sends."""
    if not isinstance(raw, Mapping) or not raw:
        return {"errorType": UNKNOWN, "errorMessage": ""}
    return dict(raw)


def error_log_lines(error: Mapping[str, Any]) -> bytes:
    """What the log stream shows for a function error (Lambda's ``[ERROR]`` line + JSON)."""
    import json

    line = json.dumps({k: error.get(k) for k in ("errorMessage", "errorType", "stackTrace")})
    return f"[ERROR] {error.get('errorType')}: {error.get('errorMessage')}\n{line}\n".encode()
