"""``provided`` runtimes against the real daemon: the AWS tutorial's shell bootstrap, awslambdaric,
a compiled binary, and the Runtime API's answers to everything a bootstrap can get wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue
from tests.conftest import DaemonProcess
from tests.runtimes.conftest import FUNCTIONS

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    with shared_daemon.client(timeout=60) as c:
        yield c


def probe(c: Client, name: str, event: Any, **config: Any) -> Any:
    c.deploy(name, FUNCTIONS / "probe", handler="probe.handler", runtime="provided.al2023",
             timeout_s=config.pop("timeout_s", 10), **config)  # fmt: skip
    return c.invoke(name, event, log_tail=True)


def test_aws_tutorial_shell_bootstrap_runs_unmodified(client: Client) -> None:
    client.deploy("sh-tutorial", FUNCTIONS / "shell", handler="function.handler",
                  runtime="provided.al2023")  # fmt: skip
    first = client.invoke("sh-tutorial", {"n": 1}, log_tail=True)
    assert first.error is None, first.error
    assert first.result["echo"] == {"n": 1}
    assert first.result["uid"] != 0  # the sandbox's unprivileged uid
    assert first.report.cold and first.report.init_ms is not None
    assert '{"n": 1}' in (first.log_tail or "")  # the handler's stderr reached the log
    warm = client.invoke("sh-tutorial", {"n": 2})
    assert warm.result["echo"] == {"n": 2} and not warm.report.cold
    assert warm.report.init_ms is None and warm.report.duration_ms > 0
    assert warm.report.billed_ms >= warm.report.duration_ms


@pytest.mark.parametrize("runtime", ["provided", "provided.al2"])
def test_compiled_binary_bootstrap(client: Client, c_runtime: Path, runtime: str) -> None:
    name = f"cbin-{runtime.replace('.', '-')}"
    client.deploy(name, c_runtime, handler="ignored.handler", runtime=runtime)
    for count in (1, 2, 3):
        inv = client.invoke(name, {"k": [count]})
        assert inv.error is None, inv.error
        assert inv.result == {"from": "c", "count": count, "bytes": len(f'{{"k": [{count}]}}'),
                              "event": {"k": [count]}}  # fmt: skip


def test_awslambdaric_runs_a_python_handler(client: Client, ric_function: Path) -> None:
    client.deploy("ric", ric_function, handler="app.handler", runtime="provided.al2023")
    first = client.invoke("ric", {"a": 1}, log_tail=True)
    assert first.error is None, first.error
    assert first.result["event"] == {"a": 1} and first.result["count"] == 1
    assert first.result["request_id"] == first.request_id
    assert first.result["function"] == "ric" and first.result["uid"] != 0
    assert 0 < first.result["remaining"] <= 3000
    assert f"ric handler {first.request_id}" in (first.log_tail or "")
    second = client.invoke("ric", {"a": 2})
    assert second.result["count"] == 2 and not second.report.cold  # globals persist
    failed = client.invoke("ric", {"fail": True})
    assert failed.error is not None
    assert failed.error["errorType"] == "ValueError"
    assert failed.error["errorMessage"] == "ric says no"
    assert failed.function_error is not None
    assert client.invoke("ric", {"a": 3}).result["count"] == 4  # the runtime carried on


def test_next_has_lambdas_headers_and_wrong_requests_get_lambdas_4xx(client: Client) -> None:
    inv = probe(client, "probe", {"act": "probe"})
    assert inv.error is None, inv.error
    out = inv.result
    assert out["content_type"] == "application/json"
    assert out["headers"] == [
        "Lambda-Runtime-Aws-Request-Id",
        "Lambda-Runtime-Deadline-Ms",
        "Lambda-Runtime-Invoked-Function-Arn",
        "Lambda-Runtime-Trace-Id",
    ]
    assert out["deadline_in_future"] and out["arn"].endswith(":function:probe")
    assert out["trace"].startswith("Root=1-")
    assert out["wrong_id"] == 400
    assert out["wrong_method"] == 405
    assert out["unknown_path"] == 404
    assert out["late_init_error"] == 403
    assert out["next_again"] == 403  # before this invocation was answered
    assert out["garbage"] == 400 and out["http2"] == 505
    # Nothing of the agent is inherited: stdin, stdout, stderr (and the fd listing itself).
    assert out["fds"] == [0, 1, 2, 3]
    assert out["env"]["_HANDLER"] == "probe.handler"
    assert out["env"]["LAMBDA_TASK_ROOT"] == "/var/task"
    assert "/opt/bin" in out["env"]["PATH"] and "/opt/lib" in out["env"]["LD_LIBRARY_PATH"]
    # The bootstrap runs confined exactly as a Python handler does.
    status = out["status"]
    assert out["uid"] != 0
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    second = client.invoke("probe", {"act": "second"})
    assert second.result["second_response"] == 403  # the last invocation was answered already


def test_response_over_6_mb_is_function_response_size_too_large(client: Client) -> None:
    for act in ("oversize", "expect-oversize"):
        inv = probe(client, "probe-big", {"act": act})
        assert inv.error is not None and inv.error["errorType"] == "Function.ResponseSizeTooLarge"
        assert inv.function_error == "Unhandled"
    after = client.invoke("probe-big", {"act": "probe"})
    assert after.error is None, after.error  # the runtime was told 413 and carried on


def test_chunked_response_and_error_posts(client: Client) -> None:
    assert probe(client, "probe-err", {"act": "chunked"}).result == {"chunked": True}
    err = client.invoke("probe-err", {"act": "error"}, log_tail=True)
    assert err.error == {"errorType": "MyError", "errorMessage": "it went wrong",
                         "stackTrace": ["line 1"]}  # fmt: skip
    after = client.invoke("probe-err", {"act": "probe"})
    assert after.result["last_post"] == 202  # the error post was accepted
    only = client.invoke("probe-err", {"act": "header-error"})
    assert only.error is not None and only.error["errorType"] == "Custom.OnlyHeader"


def test_a_response_that_is_not_json_reaches_the_caller_as_text(client: Client) -> None:
    inv = probe(client, "probe-text", {"act": "text"})
    assert inv.error is None
    assert inv.result == "Echoing request: 'hi' ✓"
    assert inv.raw_result == "Echoing request: 'hi' ✓".encode()


def test_bootstrap_exiting_during_an_invocation_is_runtime_exit_error(client: Client) -> None:
    inv = probe(client, "probe-exit", {"act": "exit", "status": 3})
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in inv.error["errorMessage"]
    assert inv.function_error == "Unhandled"
    again = client.invoke("probe-exit", {"act": "probe"})
    assert again.error is None and again.report.cold  # a fresh sandbox


def test_bootstrap_hanging_times_out(client: Client) -> None:
    inv = probe(client, "probe-hang", {"act": "hang"}, timeout_s=1)
    assert inv.error is not None and inv.error["errorType"] == "Sandbox.Timedout"
    assert inv.error["errorMessage"] == "Task timed out after 1.00 seconds"
    assert client.invoke("probe-hang", {"act": "probe"}).error is None


def test_init_failures(client: Client) -> None:
    exited = probe(client, "probe-init-exit", {"act": "probe"}, env={"MODE": "init-exit"})
    assert exited.error is not None and exited.error["errorType"] == "Runtime.ExitError"
    assert "exit status 2" in exited.error["errorMessage"]
    posted = probe(client, "probe-init-error", {"act": "probe"}, env={"MODE": "init-error"})
    assert posted.error is not None
    assert posted.error["errorType"] == "Custom.InitFailed"
    assert posted.error["errorMessage"] == "no config"


def test_bootstrap_that_never_asks_for_an_event_hits_the_init_timeout(client: Client) -> None:
    inv = probe(client, "probe-never", {"act": "probe"}, env={"MODE": "never-next"})
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError"
    assert "init did not finish" in inv.error["errorMessage"]


def test_missing_or_not_executable_bootstrap(client: Client, tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "README").write_text("no bootstrap here\n")
    client.deploy("no-bootstrap", tmp_path / "none", runtime="provided")
    inv = client.invoke("no-bootstrap", {})
    assert inv.error is not None and inv.error["errorType"] == "Runtime.InvalidEntrypoint"
    assert "/var/task/bootstrap" in inv.error["errorMessage"]
    (tmp_path / "noexec").mkdir()
    (tmp_path / "noexec" / "bootstrap").write_text("#!/bin/sh\n")
    (tmp_path / "noexec" / "bootstrap").chmod(0o644)
    client.deploy("noexec-bootstrap", tmp_path / "noexec", runtime="provided")
    inv = client.invoke("noexec-bootstrap", {})
    assert inv.error is not None and "permission denied" in inv.error["errorMessage"]


def test_unknown_runtime_is_refused_naming_the_choices(client: Client) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        client.deploy("bad-runtime", FUNCTIONS / "probe", runtime="provided.al1")
    assert "provided.al2023" in str(info.value)
