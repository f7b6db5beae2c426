"""Node.js functions against the real daemon: CommonJS and ES modules, async and callback
handlers, Lambda's context, error shape and log lines, and the pool of pre-started node
processes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client, Invocation
from lambdad.errors import InvalidParameterValue
from sandbox import runtimes
from tests.conftest import DaemonProcess, wait_for
from tests.runtimes.conftest import FUNCTIONS

pytestmark = pytest.mark.root
NODE = FUNCTIONS / "node"
HOST_NODE = runtimes.host_node_name()
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t(?P<id>[0-9a-f-]{36}|undefined)\t"
    r"(?P<level>INFO|WARN|ERROR|DEBUG)\t(?P<msg>.*)$"
)


@pytest.fixture(scope="module")
def client(shared_daemon: DaemonProcess) -> Iterator[Client]:
    assert HOST_NODE is not None, "the test suite needs node (scripts/system-packages)"
    with shared_daemon.client(timeout=60) as c:
        yield c


def run(c: Client, name: str, code: Path, handler: str, event: Any, **config: Any) -> Invocation:
    c.deploy(name, code, handler=handler, runtime=config.pop("runtime", HOST_NODE), **config)
    return c.invoke(name, event, log_tail=True)


def test_commonjs_async_handler_with_lambdas_context(client: Client) -> None:
    first = run(client, "node-cjs", NODE / "cjs", "index.handler", {"x": 1},
                env={"MY_SETTING": "on"}, memory_mb=256)  # fmt: skip
    assert first.error is None, first.error
    r = first.result
    assert r["count"] == 1 and r["event"] == {"x": 1}
    assert r["awsRequestId"] == first.request_id
    assert r["functionName"] == "node-cjs" and r["functionVersion"] == "1"
    assert r["memoryLimitInMB"] == "256" and r["invokedFunctionArn"].endswith(":node-cjs")
    assert r["logGroupName"] == "/aws/lambda/node-cjs"
    assert 0 < r["remaining"] <= 3000 and r["waits"] is True
    assert r["traceId"].startswith("Root=1-")
    assert r["env"] == {
        "runtimeApi": "127.0.0.1:9001",
        "execEnv": f"AWS_Lambda_{HOST_NODE}",
        "taskRoot": "/var/task",
        "handler": "index.handler",
        "mine": "on",
    }
    assert r["uid"] != 0 and r["cwd"] == "/var/task"
    assert first.report.cold and first.report.init_ms is not None
    warm = client.invoke("node-cjs", {"x": 2})
    assert warm.result["count"] == 2 and not warm.report.cold  # module state persists
    nested = run(client, "node-nested", NODE / "cjs", "index.nested.deeper.handler", {})
    assert nested.result == "nested ok"


def test_console_lines_have_lambdas_prefix(client: Client) -> None:
    inv = run(client, "node-log", NODE / "cjs", "index.handler", {"y": 1})
    lines = [m for line in (inv.log_tail or "").split("\n") if (m := LOG_LINE.match(line))]
    assert [(m["id"], m["level"]) for m in lines] == [
        (inv.request_id, "INFO"),
        (inv.request_id, "WARN"),
    ], inv.log_tail
    assert lines[0]["msg"] == "event: { y: 1 }"
    # Newlines inside one entry become \r, as on Lambda (the tail shows it escaped: a
    # handler's control characters cannot drive the reader's terminal).
    assert lines[1]["msg"] == "two\\x0dlines"


@pytest.mark.parametrize(("code", "kind"), [("mjs", "mjs"), ("esm", "type-module")])
def test_es_modules(client: Client, code: str, kind: str) -> None:
    inv = run(client, f"node-{code}", NODE / code, "index.handler", {"e": code})
    assert inv.error is None, inv.error
    assert inv.result["esm"] == kind and inv.result["event"] == {"e": code}


def test_callback_handlers_and_the_empty_event_loop_rule(client: Client) -> None:
    waited = run(client, "node-cb", NODE / "cb", "index.handler", {"timerMs": 50})
    assert waited.error is None, waited.error
    assert waited.result["via"] == "callback"
    assert waited.result["timerFiredBefore"] == 0
    assert waited.report.duration_ms >= 45  # the answer waited for the timer
    quick = client.invoke("node-cb", {"timerMs": 1500, "noWait": True})
    assert quick.result["timerFiredBefore"] == 1 and quick.report.duration_ms < 1000
    failed = client.invoke("node-cb", {"fail": True, "noWait": True})
    assert failed.error is not None and failed.error["errorMessage"] == "callback failure"
    legacy = run(client, "node-legacy", NODE / "cb", "index.legacy", {})
    assert legacy.result == {"via": "context.succeed"}


def test_errors_in_lambdas_node_shape(client: Client) -> None:
    inv = run(client, "node-err", NODE / "errors", "index.throws", {})
    err = inv.error
    assert err is not None
    assert err["errorType"] == "CustomError" and err["errorMessage"] == "something broke"
    assert err["trace"][0] == "CustomError: something broke"
    assert any("/var/task/index.js" in frame for frame in err["trace"])
    assert inv.function_error is not None
    assert "\tERROR\tInvoke Error \t" in (inv.log_tail or "")
    s = run(client, "node-err-str", NODE / "errors", "index.rejectsString", {}).error
    assert s is not None and (s["errorType"], s["errorMessage"]) == ("string", "plain string")
    t = run(client, "node-err-sync", NODE / "errors", "index.syncThrow", {}).error
    assert t is not None and t["errorType"] == "TypeError"
    m = run(client, "node-err-cycle", NODE / "errors", "index.unmarshalable", {}).error
    assert m is not None and m["errorType"] == "Runtime.MarshalError"
    u = run(client, "node-err-uncaught", NODE / "errors", "index.uncaught", {}).error
    assert u is not None and u["errorType"] == "RangeError"
    assert client.invoke("node-err", {}).error is not None  # the process is still serving


@pytest.mark.parametrize(
    ("code", "handler", "error_type"),
    [
        (NODE / "cjs", "missing.handler", "Runtime.ImportModuleError"),
        (NODE / "errors", "index.notAFunction", "Runtime.HandlerNotFound"),
        (NODE / "errors", "index.nothing", "Runtime.HandlerNotFound"),
        (FUNCTIONS / "node-syntax", "index.handler", "Runtime.UserCodeSyntaxError"),
    ],
)
def test_init_errors(client: Client, code: Path, handler: str, error_type: str) -> None:
    name = "node-init-" + handler.replace(".", "-")
    inv = run(client, name, code, handler, {})
    assert inv.error is not None and inv.error["errorType"] == error_type, inv.error
    assert inv.function_error == "Unhandled"


def test_a_node_version_the_host_lacks_is_refused_naming_what_it_has(client: Client) -> None:
    other = next(v for v in runtimes.NODE_VERSIONS if v != HOST_NODE)
    with pytest.raises(InvalidParameterValue) as info:
        client.deploy("node-other", NODE / "cjs", handler="index.handler", runtime=other)
    assert other in str(info.value) and str(HOST_NODE) in str(info.value)


def _node_processes() -> list[dict[str, str]]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if not any(part.endswith(b"runtime.mjs") for part in cmdline):
                continue
            text = Path(f"/proc/{pid}/status").read_text()
            status = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        except OSError:
            continue
        found.append({"pid": pid, "cmd": cmdline[-2].decode(), **status})
    return found


def test_pooled_sandboxes_hold_a_started_and_confined_node(client: Client) -> None:
    # The nodejs zygote starts with the first node function; from then on the generic pool's
    # sandboxes already run node before a function is given them: as an unprivileged uid, no
    # capabilities, seccomp filter on, the runtime client where Lambda keeps it.
    assert run(client, "node-pool", NODE / "cjs", "index.handler", {}).error is None
    procs = wait_for(_node_processes, timeout=60)
    for p in procs:
        assert p["cmd"] == "/var/runtime/runtime.mjs"
        assert p["Uid"].split()[0] != "0"
        assert p["CapEff"].strip() == "0000000000000000"
        assert p["Seccomp"].strip() == "2" and p["NoNewPrivs"].strip() == "1"
