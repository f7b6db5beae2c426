"""The foundation, end to end: the real daemon, the real client, real sandboxes."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import msgpack
import pytest

from lambdad.client import AsyncClient, Client
from lambdad.errors import (
    DaemonUnreachable,
    FrameTooLarge,
    InvalidParameterValue,
    ProtocolError,
    RequestTooLarge,
    ResourceNotFound,
)
from tests.conftest import EXAMPLES, DaemonProcess, wait_for, write_function

REPORT_RE = re.compile(
    r"^REPORT RequestId: [0-9a-f-]{36}\tDuration: \d+\.\d{2} ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: \d+ MB\tMax Memory Used: \d+ MB(\tInit Duration: \d+\.\d{2} ms)?\t?$"
)


def test_cold_then_warm_keeps_module_state(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        fn = c.deploy("counter", EXAMPLES / "counter", memory_mb=256, timeout_s=5)
        assert fn["version"] == "1" and fn["memory_mb"] == 256
        first = c.invoke("counter", {})
        second = c.invoke("counter", {})
    assert first.error is None and second.error is None
    assert first.result["count"] == 1 and second.result["count"] == 2
    assert first.result["pid"] == second.result["pid"] == 1  # PID 1 of its own pid namespace
    assert first.report is not None and second.report is not None
    assert first.report.cold and first.report.init_ms is not None and first.report.init_ms > 0
    assert not second.report.cold and second.report.init_ms is None
    assert first.report.memory_mb == 256 and first.report.max_memory_used_mb >= 1
    assert first.report.billed_ms >= 1
    assert {"fork", "import"} <= set(first.report.phases_us)


def test_hello_result_and_lambda_context(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    code = write_function(
        tmp_path / "ctx",
        "import os\n"
        "def handler(event, context):\n"
        "    return {'event': event, 'name': context.function_name,\n"
        "            'version': context.function_version, 'mem': context.memory_limit_in_mb,\n"
        "            'arn': context.invoked_function_arn, 'rid': context.aws_request_id,\n"
        "            'group': context.log_group_name, 'stream': context.log_stream_name,\n"
        "            'remaining': context.get_remaining_time_in_millis(),\n"
        "            'env': {k: os.environ.get(k) for k in ('AWS_LAMBDA_FUNCTION_NAME',\n"
        "              'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_FUNCTION_VERSION',\n"
        "              'LAMBDA_TASK_ROOT', '_HANDLER', 'TZ', 'GREETING')}}\n",
    )
    with shared_daemon.client() as c:
        c.deploy("ctx", code, memory_mb=192, timeout_s=4, env={"GREETING": "hi"})
        inv = c.invoke("ctx", {"a": [1, 2, {"b": None}]})
    r = inv.result
    assert r["event"] == {"a": [1, 2, {"b": None}]}
    assert (r["name"], r["version"], r["mem"]) == ("ctx", "1", "192")  # a str, as on Lambda
    assert r["arn"].endswith(":function:ctx") and r["group"] == "/aws/lambda/ctx"
    assert r["rid"] == inv.request_id == inv.report.request_id  # type: ignore[union-attr]
    assert 0 < r["remaining"] <= 4000
    assert r["env"] == {
        "AWS_LAMBDA_FUNCTION_NAME": "ctx",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "192",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": "app.handler",
        "TZ": ":UTC",
        "GREETING": "hi",
    }


def test_logs_are_framed_in_lambdas_format(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("hello", EXAMPLES / "hello")
        cold = c.invoke("hello", {"name": "Ada"}, log_tail=True)
        warm = c.invoke("hello", {"name": "Bob"})
        assert cold.result["message"] == "Hello, Ada!"
        text = wait_for(lambda: (t := c.logs("hello")[0]) and warm.request_id in t and t)
    assert isinstance(text, str)
    lines = text.splitlines()
    reports = [line for line in lines if line.startswith("REPORT")]
    assert len(reports) == 2
    for line in reports:
        assert REPORT_RE.match(line), line
    assert "Init Duration" in reports[0] and "Init Duration" not in reports[1]
    start = lines.index(f"START RequestId: {cold.request_id} Version: 1")
    assert lines[start + 1] == "saying hello to Ada"
    assert lines[start + 2] == f"END RequestId: {cold.request_id}"
    # log_tail: this invocation's START .. REPORT, at most 4 KB
    assert cold.log_tail is not None and len(cold.log_tail.encode()) <= 4096
    assert "saying hello to Ada" in cold.log_tail and REPORT_RE.match(
        cold.log_tail.splitlines()[-1]
    )


def test_handler_exception_is_unhandled_error(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("raises", EXAMPLES / "raises")
        inv = c.invoke("raises", {"amount": 7})
        again = c.invoke("raises", {})
    assert inv.function_error == "Unhandled"  # today's Lambda, for a raised exception
    assert inv.error is not None
    assert inv.error["errorType"] == "InsufficientFunds"
    assert inv.error["errorMessage"] == "cannot withdraw 7"
    assert any("/var/task/app.py" in frame for frame in inv.error["stackTrace"])
    assert inv.report is not None and inv.report.cold
    assert again.report is not None and not again.report.cold  # the sandbox survives


@pytest.mark.parametrize(
    ("source", "error_type", "message"),
    [
        (
            "import no_such_module\n",
            "Runtime.ImportModuleError",
            "No module named 'no_such_module'",
        ),
        ("x = 1\n", "Runtime.HandlerNotFound", "Handler 'handler' missing on module 'app'"),
        ("def handler(e, c) return 1\n", "Runtime.UserCodeSyntaxError", "Syntax error"),
    ],
)
def test_init_errors(
    shared_daemon: DaemonProcess, tmp_path: Path, source: str, error_type: str, message: str
) -> None:
    name = "init-" + error_type.split(".")[1].lower()
    code = write_function(tmp_path / name, source)
    with shared_daemon.client() as c:
        c.deploy(name, code)
        inv = c.invoke(name, {})
        c.invoke(name, {})  # tried again from scratch, still failing, daemon fine
        ok = c.invoke("hello", {"name": "x"}) if "hello" in {f["name"] for f in c.list()} else None
    assert inv.function_error == "Unhandled"
    assert inv.error is not None and inv.error["errorType"] == error_type
    assert message in inv.error["errorMessage"]
    assert inv.report is not None and inv.report.init_ms is not None
    assert ok is None or ok.error is None


def test_missing_module_file(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    code = write_function(tmp_path / "other", "def handler(e, c): return 1\n", module="other")
    with shared_daemon.client() as c:
        c.deploy("nomodule", code)  # handler app.handler, but there is no app.py
        inv = c.invoke("nomodule")
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'app'" in inv.error["errorMessage"]


def test_unserialisable_result(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    code = write_function(tmp_path / "unser", "def handler(e, c):\n    return {1, 2}\n")
    with shared_daemon.client() as c:
        c.deploy("unser", code)
        inv = c.invoke("unser")
    assert inv.function_error == "Unhandled"
    assert inv.error is not None and inv.error["errorType"] == "Runtime.MarshalError"
    assert "not JSON serializable" in inv.error["errorMessage"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"name": "bad name!"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"handler": "nodot"}, "handler"),
        ({"memory_mb": 63}, "memory_mb"),
        ({"memory_mb": 10241}, "memory_mb"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": 901}, "timeout_s"),
        ({"env": {"AWS_REGION": "x"}}, "env"),
        ({"runtime": "cobol"}, "runtime"),
    ],
)
def test_deploy_validation_names_the_field(
    shared_daemon: DaemonProcess, args: dict[str, object], field: str
) -> None:
    full = {"name": "valid", "handler": "app.handler", "memory_mb": 128, "timeout_s": 3.0}
    full.update(args)
    with shared_daemon.client() as c, pytest.raises(InvalidParameterValue) as info:
        c.deploy(str(full.pop("name")), EXAMPLES / "hello", **full)  # type: ignore[arg-type]
    assert info.value.details["field"] == field


def test_deploy_missing_code_dir(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    with shared_daemon.client() as c, pytest.raises(FileNotFoundError):
        c.deploy("ghost", tmp_path / "does-not-exist")


def test_unknown_function_and_payload_limits(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("hello", EXAMPLES / "hello")
        with pytest.raises(ResourceNotFound) as info:
            c.invoke("no-such-function", {})
        assert "no-such-function" in info.value.message
        big = b'{"a": "' + b"x" * (6 * 1024 * 1024) + b'"}'  # just over 6 MB, under the frame
        with pytest.raises(RequestTooLarge):
            c.invoke("hello", big)
        with pytest.raises(RequestTooLarge):
            c.invoke("hello", b'"' + b"x" * (9 * 1024 * 1024) + b'"')  # over the frame limit
        with pytest.raises(RequestTooLarge):
            c.invoke("hello", b'"' + b"x" * (300 * 1024) + b'"', type="async")
        assert c.invoke("hello", {"name": "still here"}).result["message"] == "Hello, still here!"


def _raw_connection(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s


def _read_frames(s: socket.socket) -> list[dict[str, object]]:
    unpacker = msgpack.Unpacker(raw=False)
    frames = []
    while True:
        data = s.recv(65536)
        if not data:
            return frames
        unpacker.feed(data)
        frames.extend(unpacker)


def test_garbage_gets_an_error_then_close(shared_daemon: DaemonProcess) -> None:
    s = _raw_connection(shared_daemon.socket)
    s.sendall(b"\xc1\xc1 this is not msgpack")
    frames = _read_frames(s)  # returns at EOF: the daemon closed the connection
    s.close()
    assert len(frames) == 1
    assert frames[0]["id"] is None
    assert frames[0]["error"]["type"] == "ProtocolError"  # type: ignore[index]
    with shared_daemon.client() as c:
        assert c.call("ping") == {}


def test_oversized_frame_is_refused(shared_daemon: DaemonProcess) -> None:
    s = _raw_connection(shared_daemon.socket)
    header = b"\x82\xa2id\x01\xa2op\xc6" + (64 * 1024 * 1024).to_bytes(4, "big")
    s.sendall(header)
    try:
        s.sendall(b"\0" * (9 * 1024 * 1024))  # past the 8 MiB limit
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon may close before taking all of it
    frames = _read_frames(s)
    s.close()
    assert frames and frames[-1]["error"]["type"] == FrameTooLarge.type  # type: ignore[index]


def test_wrong_types_and_unknown_ops_keep_the_connection(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("hello", EXAMPLES / "hello")
        with pytest.raises(ProtocolError, match="unknown op"):
            c.call("explode")
        with pytest.raises(InvalidParameterValue):
            c.call("invoke", name="hello", payload=12)
        with pytest.raises(InvalidParameterValue):
            c.call("invoke", name="hello", type="sometimes")
        with pytest.raises(InvalidParameterValue):
            c.call("invoke", name=["hello"])
        # ... and the same connection still works
        assert c.invoke("hello", {"name": "same conn"}).result["message"] == "Hello, same conn!"


def test_request_before_hello_and_bad_version(shared_daemon: DaemonProcess) -> None:
    s = _raw_connection(shared_daemon.socket)
    s.sendall(msgpack.packb({"id": 1, "op": "list", "args": {}}))
    s.sendall(msgpack.packb({"id": 2, "op": "hello", "args": {"version": 99}}))
    s.sendall(msgpack.packb({"id": 3, "op": "hello", "args": {"version": 1}}))
    s.sendall(msgpack.packb({"id": 4, "op": "ping", "args": {}}))
    s.shutdown(socket.SHUT_WR)
    frames = {f["id"]: f for f in _read_frames(s)}
    s.close()
    assert frames[1]["error"]["type"] == "ProtocolError"  # type: ignore[index]
    assert frames[2]["error"]["type"] == "UnsupportedVersion"  # type: ignore[index]
    assert frames[3]["ok"]["version"] == 1  # type: ignore[index]
    assert frames[4]["ok"] == {}


def test_client_vanishing_mid_invocation(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("sleeper", EXAMPLES / "sleeper")
        c.invoke("sleeper", {"ms": 1})
    s = _raw_connection(shared_daemon.socket)
    s.sendall(msgpack.packb({"id": 0, "op": "hello", "args": {"version": 1}}))
    payload = b'{"ms": 300}'
    s.sendall(
        msgpack.packb({"id": 1, "op": "invoke", "args": {"name": "sleeper", "payload": payload}})
    )
    s.close()  # gone before the answer
    with shared_daemon.client() as c:
        # The abandoned invocation finishes; the function and the daemon carry on.
        results = [c.invoke("sleeper", {"ms": 1}) for _ in range(3)]
        assert all(r.error is None for r in results)
        stats = wait_for(lambda: (st := c.stats("sleeper")) and st["invocations"] >= 5 and st)
    assert stats["errors"] == 0  # type: ignore[index]


def test_many_requests_in_flight_on_one_connection(shared_daemon: DaemonProcess) -> None:
    async def main() -> list[int]:
        async with AsyncClient(shared_daemon.socket) as c:
            await c.deploy("counter2", EXAMPLES / "counter")
            invs = await asyncio.gather(*(c.invoke("counter2", {}) for _ in range(50)))
            return sorted(i.result["count"] for i in invs if i.error is None)

    counts = asyncio.run(main())
    assert len(counts) == 50


def test_trio_client(shared_daemon: DaemonProcess) -> None:
    trio = pytest.importorskip("trio")
    from lambdad.trio_client import TrioClient

    async def main() -> tuple[str, int]:
        async with TrioClient(shared_daemon.socket) as c:
            await c.deploy("hello", EXAMPLES / "hello")
            inv = await c.invoke("hello", {"name": "Trio"})
            names = [f["name"] for f in await c.list()]
            assert "hello" in names
            return inv.result["message"], (await c.stats("hello"))["invocations"]

    message, count = trio.run(main)
    assert message == "Hello, Trio!" and count >= 1


def test_redeploy_makes_a_new_version_and_retires_old_sandboxes(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    code = write_function(tmp_path / "v", "def handler(e, c):\n    return 'one'\n")
    with shared_daemon.client() as c:
        assert c.deploy("versioned", code)["version"] == "1"
        assert c.invoke("versioned").result == "one"
        assert c.deploy("versioned", code)["version"] == "1"  # same content, same version
        (code / "app.py").write_text("def handler(e, c):\n    return 'two'\n")
        fn = c.deploy("versioned", code)
        assert fn["version"] == "2" and fn["versions"] == ["1", "2"]
        inv = c.invoke("versioned")
        assert inv.result == "two" and inv.report is not None and inv.report.cold
        assert inv.report.version == "2"
        assert c.invoke("versioned", qualifier="1").result == "one"


def test_delete(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("doomed", EXAMPLES / "hello")
        c.invoke("doomed", {})
        c.delete("doomed")
        assert "doomed" not in {f["name"] for f in c.list()}
        with pytest.raises(ResourceNotFound):
            c.invoke("doomed", {})
        with pytest.raises(ResourceNotFound):
            c.delete("doomed")


def test_restart_keeps_functions(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        c.deploy("hello", EXAMPLES / "hello", memory_mb=256)
        c.deploy("counter", EXAMPLES / "counter")
        before = c.list()
    daemon.restart()
    with daemon.client() as c:
        after = c.list()
        assert after == before
        assert c.invoke("hello", {"name": "again"}).result["message"] == "Hello, again!"
        assert c.invoke("counter").result["count"] == 1


def test_sigterm_removes_the_socket_and_lets_inflight_finish(daemon: DaemonProcess) -> None:
    import threading

    with daemon.client() as c:
        c.deploy("sleeper", EXAMPLES / "sleeper")
        c.invoke("sleeper", {"ms": 1})
    outcome: dict[str, object] = {}

    def slow() -> None:
        with daemon.client() as c2:
            outcome["inv"] = c2.invoke("sleeper", {"ms": 800})

    t = threading.Thread(target=slow)
    t.start()
    with daemon.client() as c:
        wait_for(lambda: c.stats("sleeper")["concurrent"] == 1)
    assert daemon.stop() == 0
    t.join(30)
    inv = outcome["inv"]
    assert getattr(inv, "error", "missing") is None
    assert not Path(daemon.socket).exists()


def test_unreachable_daemon_is_one_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nobody.sock")
    with pytest.raises(DaemonUnreachable) as info, Client(path) as c:
        c.list()
    assert path in info.value.message and "lambdad serve" in info.value.message


def test_socket_mode(shared_daemon: DaemonProcess) -> None:
    mode = Path(shared_daemon.socket).stat().st_mode & 0o777
    assert mode == 0o660


def test_stats_count_everything(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("statful", EXAMPLES / "raises")
        for _ in range(3):
            c.invoke("statful", {})
        st = c.stats("statful")
        glob = c.stats()
    assert st["invocations"] == 3 and st["errors"] == 3 and st["cold_starts"] == 1
    assert st["duration_ms"]["p50"] >= 0 and st["gb_seconds"] > 0
    assert glob["invocations"] >= 3


def test_warm_sandbox_gets_frozen_and_thawed(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        c.deploy("counter", EXAMPLES / "counter")
        c.invoke("counter")
        wait_for(lambda: c.stats("counter")["sandboxes"]["frozen"] == 1, timeout=30)
        started = time.monotonic()
        inv = c.invoke("counter")
        assert time.monotonic() - started < 10
    assert inv.result["count"] == 2 and inv.report is not None and not inv.report.cold


def test_prometheus_endpoint(tmp_path: Path) -> None:
    import urllib.request

    from tests.conftest import make_daemon

    d = make_daemon(str(tmp_path), '[daemon]\nmetrics_address = "127.0.0.1:0"\n')
    d.start()
    try:
        with d.client() as c:
            c.deploy("hello", EXAMPLES / "hello")
            c.invoke("hello", {"name": "scraped"})
            address = c.stats()["metrics_address"]
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
            text = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain")
    finally:
        d.stop()
    assert 'lambdad_invocations_total{function="hello"} 1.0' in text
    assert 'lambdad_cold_starts_total{function="hello"} 1.0' in text
    assert 'lambdad_duration_milliseconds{function="hello",quantile="0.99"}' in text
    assert 'lambdad_generic_sandboxes{runtime="python3"}' in text
