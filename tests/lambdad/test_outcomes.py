"""lambdad.outcomes: Lambda's error taxonomy, one example per way an invocation ends."""

from __future__ import annotations

import json

import pytest

from lambdad import outcomes


@pytest.mark.parametrize(
    "error_type, expected",
    [
        # A raised exception is Unhandled too, as today's Lambda answers (issue 10).
        ("ValueError", "Unhandled"),
        ("KeyError", "Unhandled"),
        ("Runtime.MarshalError", "Unhandled"),
        ("Function.ResponseSizeTooLarge", "Unhandled"),
    ],
)
def test_function_error_of_a_runtime_error(error_type: str, expected: str) -> None:
    assert outcomes.function_error({"errorType": error_type, "errorMessage": ""}) == expected


def test_no_error_is_no_function_error() -> None:
    assert outcomes.function_error(None) is None


@pytest.mark.parametrize(
    "error_type, logged",
    [("ValueError", True), ("Runtime.ImportModuleError", True), ("Sandbox.SetupError", False)],
)
def test_the_daemon_logs_only_what_no_runtime_logged(error_type: str, logged: bool) -> None:
    assert outcomes.logged_by_runtime({"errorType": error_type}) is logged


def test_exit_error_is_lambdas_wording() -> None:
    error = outcomes.exit_error("r-1", "signal: killed")
    assert error == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "RequestId: r-1 Error: Runtime exited with error: signal: killed",
    }
    assert outcomes.exit_error("r-1", "signal: killed", oom=True)["oom"] is True


def test_init_exit_error_has_no_request_id() -> None:
    assert outcomes.init_exit_error("exit status 1") == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "Runtime exited with error: exit status 1",
    }


def test_timeout_is_lambdas_wording() -> None:
    assert outcomes.timeout_error(3.0) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Task timed out after 3.00 seconds",
    }


def test_invalid_response_names_the_problem() -> None:
    error = outcomes.invalid_response("r-2", "result is not bytes")
    assert error["errorType"] == "Runtime.InvalidResponse"
    assert (
        "RequestId: r-2" in error["errorMessage"] and "result is not bytes" in error["errorMessage"]
    )


def test_an_empty_init_error_is_unknown() -> None:
    assert outcomes.init_error({})["errorType"] == "Runtime.Unknown"
    assert outcomes.init_error(None)["errorType"] == "Runtime.Unknown"
    kept = {"errorType": "Runtime.ImportModuleError", "errorMessage": "no module"}
    assert outcomes.init_error(kept) == kept


def test_error_log_lines_are_the_error_line_and_its_json() -> None:
    error = {"errorType": "ValueError", "errorMessage": "boom", "stackTrace": ["  File a"]}
    first, second = outcomes.error_log_lines(error).decode().splitlines()
    assert first == "[ERROR] ValueError: boom"
    assert json.loads(second) == {"errorMessage": "boom", "errorType": "ValueError",
                                  "stackTrace": ["  File a"]}  # fmt: skip


def test_report_status_follows_lambda() -> None:
    status = outcomes.report_status
    assert status(None, None) == (None, None)
    assert status({"errorType": "ValueError"}, "Handled") == (None, None)
    # The handler's own exception is Unhandled, but the function answered: no Status.
    assert status({"errorType": "ValueError"}, "Unhandled") == (None, None)
    assert status({"errorType": "Runtime.ImportModuleError"}, "Unhandled") == (
        "error",
        "Runtime.ImportModuleError",
    )
    assert status(outcomes.timeout_error(3.0), "Unhandled") == ("timeout", None)
    assert status(outcomes.exit_error("r", "exit status 1"), "Unhandled") == (
        "error",
        "Runtime.ExitError",
    )
    assert status(outcomes.exit_error("r", "signal: killed", oom=True), "Unhandled") == (
        "error",
        "Runtime.OutOfMemory",
    )
    assert status(outcomes.invalid_response("r", "x"), "Unhandled") == (
        "error",
        "Runtime.InvalidResponse",
    )
    assert status({"errorType": "Runtime.MarshalError"}, "Unhandled") == (
        "error",
        "Runtime.MarshalError",
    )
    assert status({}, "Unhandled") == ("error", "Runtime.Unknown")
