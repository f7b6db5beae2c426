"""Logs against the real daemon: each abuse of issue 13 (points 1, 3, 4, 5, 6) and issue 12
(point 5) tried, and the bound or the record checked.

The handler (``logsfn``) floods, forges platform lines, crashes, runs out of memory or sleeps
past its timeout on request; the tests read the records back through the ``logs`` op, the
CLI, or the files themselves (after a SIGKILL, before any restart can touch them).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import AsyncClient, Client
from lambdad.errors import InvalidParameterValue, LambdadError
from lambdad.logs import parse_records
from tests.conftest import ROOT, DaemonProcess, make_daemon, wait_for, write_function

HANDLER = r"""
import ctypes, os, sys, time

def handler(event, context):
    mode = event.get("mode")
    rid = context.aws_request_id
    if mode == "flood":  # two processes printing 64 KB lines
        line = b"x" * 65535 + b"\n"
        end = time.monotonic() + event["seconds"]
        pid = os.fork()
        while time.monotonic() < end:
            os.write(1, line)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return "flooded"
    if mode == "forge":
        sys.stdout.write(
            f"START RequestId: {rid} Version: 9\nEND RequestId: {rid}\n"
            f"REPORT RequestId: {rid}\tDuration: 0.01 ms\tBilled Duration: 1 ms\t"
            "Memory Size: 128 MB\tMax Memory Used: 1 MB\t\n"
            "P1700000000000 REPORT RequestId: " + rid + "\tDuration: 0.02 ms\t\n"
            "\x1b[2J\x1b]0;pwned\x07\u202eevil no newline at the end"
        )
        sys.stdout.flush()
        return "forged"
    if mode == "print":
        print(event["text"], flush=True)
        return "printed"
    if mode == "big":  # event["n"] lines of 1 KB
        for i in range(event["n"]):
            print(f"{event.get('tag', 'big')} {i:06d} " + "b" * 1000)
        sys.stdout.flush()
        return "big"
    if mode == "exit":
        print("about to exit", flush=True)
        os._exit(event.get("status", 3))
    if mode == "segv":
        print("about to crash", flush=True)
        ctypes.string_at(0)
    if mode == "oom":
        print("hoarding", flush=True)
        hoard = []
        while True:
            hoard.append(bytearray(8 << 20))
            for i in range(0, 8 << 20, 4096):
                hoard[-1][i] = 1
    if mode == "sleep":
        print("sleeping", end="", flush=True)  # no newline: the timeout line must not glue
        time.sleep(event["seconds"])
    return "ok"
"""

REPORT_FIELDS = re.compile(
    r"^REPORT RequestId: (\S+)\tDuration: \d+\.\d{2} ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: \d+ MB\tMax Memory Used: \d+ MB\t(?:Init Duration: \d+\.\d{2} ms\t)?"
    r"(?:Status: (\w+)\t(?:Error Type: (\S+)\t)?)?$"
)

CONFIG = """
[daemon]
pool_size = 2
log_max_bytes = 262144
log_function_max_bytes = 8388608
"""


@pytest.fixture(scope="module")
def logs_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-logs-") as tmp:
        d = make_daemon(tmp, CONFIG)
        d.start()
        with d.client() as c:
            code = write_function(Path(tmp) / "code", HANDLER)
            c.deploy("logsfn", code, timeout_s=10)
            c.deploy("logsfn-short", code, timeout_s=1)
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


@pytest.fixture
def client(logs_daemon: DaemonProcess) -> Iterator[Client]:
    with logs_daemon.client() as c:
        yield c


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(li for li in f if li.startswith("VmRSS:")).split()[1]) / 1024


def records_of(c: Client, name: str, rid: str) -> list[tuple[str, str]]:
    page = c.log_events(name, request_id=rid)
    return [(e.source, e.message.decode("utf-8", "replace")) for e in page.events]


def platform_lines(c: Client, name: str, rid: str) -> list[str]:
    return [m for s, m in records_of(c, name, rid) if s == "platform"]


def cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdad", *args, "--socket", d.socket],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 13.1: --log-tail keeps a ring of the last 4 KB


def test_a_log_flood_with_log_tail_does_not_grow_the_daemon(
    logs_daemon: DaemonProcess, client: Client
) -> None:
    assert logs_daemon.proc is not None
    client.invoke("logsfn", {"mode": "print", "text": "warm up"}, log_tail=True)
    before = rss_mb(logs_daemon.proc.pid)

    inv = client.invoke("logsfn", {"mode": "flood", "seconds": 3}, log_tail=True)

    grown = rss_mb(logs_daemon.proc.pid) - before
    assert inv.result == "flooded", inv.error
    assert inv.log_tail is not None and len(inv.log_tail.encode()) <= 4096
    assert REPORT_FIELDS.match(inv.log_tail.splitlines()[-1]), inv.log_tail[-300:]
    assert grown < 50, f"the daemon grew by {grown:.0f} MB during a 3 s log flood"
    # And the flood stayed within the function's disk cap (8 MB here).
    logs_dir = Path(logs_daemon.state_dir, "logs", "logsfn")
    assert sum(p.stat().st_size for p in logs_dir.iterdir()) <= 8 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# 12.5: log lines cannot be forged


def test_handler_output_cannot_forge_platform_lines(
    logs_daemon: DaemonProcess, client: Client
) -> None:
    inv = client.invoke("logsfn", {"mode": "forge"})
    rid = inv.request_id
    assert inv.result == "forged"

    platform = platform_lines(client, "logsfn", rid)
    assert platform[0] == f"START RequestId: {rid} Version: 1"
    assert platform[-2] == f"END RequestId: {rid}"
    assert REPORT_FIELDS.match(platform[-1])
    assert sum(p.startswith("REPORT") for p in platform) == 1
    assert sum(p.startswith("END") for p in platform) == 1

    out = cli(logs_daemon, "logs", "logsfn", "--request-id", rid)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [li for li in lines if li.startswith("REPORT RequestId:")] == [platform[-1]]
    assert [li for li in lines if li.startswith("END RequestId:")] == [f"END RequestId: {rid}"]
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\u202e" not in out.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\u202eevil no newline at the end" in lines
    # The handler's last line had no newline: END still starts a line of its own.
    assert lines[lines.index(f"END RequestId: {rid}") - 1].endswith("no newline at the end")


def test_the_timeout_line_starts_on_its_own_line(client: Client) -> None:
    inv = client.invoke("logsfn-short", {"mode": "sleep", "seconds": 5})
    recs = records_of(client, "logsfn-short", inv.request_id)
    assert ("function", "sleeping") in recs
    assert any(s == "platform" and m.endswith("Task timed out after 1.00 seconds") for s, m in recs)


# ---------------------------------------------------------------------------------------------
# 13.5: every failed invocation has its error line, END and REPORT


@pytest.mark.parametrize(
    ("event", "status", "error_type", "error_line"),
    [
        ({"mode": "exit", "status": 3}, "error", "Runtime.ExitError", "exit status 3"),
        ({"mode": "segv"}, "error", "Runtime.ExitError", "signal: segmentation fault"),
        ({"mode": "oom"}, "error", "Runtime.OutOfMemory", "signal: killed"),
        ({"mode": "sleep", "seconds": 5}, "timeout", None, "Task timed out after 1.00 seconds"),
    ],
)
def test_a_failed_invocation_has_its_records(
    client: Client, event: dict[str, object], status: str, error_type: str | None, error_line: str
) -> None:
    name = "logsfn-short" if event["mode"] == "sleep" else "logsfn"
    inv = client.invoke(name, event)
    rid = inv.request_id
    assert inv.function_error == "Unhandled", inv.error
    assert inv.report is not None and inv.report.status == status
    assert inv.report.error_type == error_type

    platform = platform_lines(client, name, rid)
    assert platform[0].startswith(f"START RequestId: {rid} ")
    assert any(error_line in p for p in platform[1:-2]), platform
    assert platform[-2] == f"END RequestId: {rid}"
    m = REPORT_FIELDS.match(platform[-1])
    assert m and m.group(1) == rid and m.group(2) == status and m.group(3) == error_type, platform


@pytest.mark.parametrize(
    ("source", "error_type"),
    [
        ("raise ImportError('broken at import')\n", None),  # the runtime names the type
        ("import os\nos._exit(2)\n", "Runtime.ExitError"),
    ],
)
def test_a_failed_init_has_its_records(
    client: Client, tmp_path: Path, source: str, error_type: str | None
) -> None:
    name = "logs-init-" + ("raise" if "raise" in source else "exit")
    client.deploy(name, write_function(tmp_path / name, source + "def handler(e, c):\n    pass\n"))
    inv = client.invoke(name, {}, log_tail=True)
    rid = inv.request_id
    assert inv.function_error == "Unhandled" and inv.error is not None
    expected_type = error_type or inv.error["errorType"]
    assert inv.report is not None and inv.report.status == "error"
    assert inv.report.error_type == expected_type

    every = client.log_events(name).events
    init_report = [e.message.decode() for e in every if e.message.startswith(b"INIT_REPORT")]
    assert init_report and init_report[0].endswith(
        f"Phase: init\tStatus: error\tError Type: {expected_type}"
    ), init_report
    platform = platform_lines(client, name, rid)
    assert platform[0].startswith(f"START RequestId: {rid} ")
    assert platform[-2] == f"END RequestId: {rid}"
    m = REPORT_FIELDS.match(platform[-1])
    assert m and m.group(2) == "error" and m.group(3) == expected_type, platform
    assert inv.log_tail is not None and inv.log_tail.rstrip("\n").endswith(platform[-1])


# ---------------------------------------------------------------------------------------------
# 13.6: finding any line


def test_logs_reach_lines_older_than_the_last_64_kb(
    logs_daemon: DaemonProcess, client: Client
) -> None:
    first = client.invoke("logsfn", {"mode": "print", "text": "needle-in-the-old-part"})
    for _ in range(3):  # 3 x 400 KB after it: past 64 KB, and past a rotation (256 KB)
        client.invoke("logsfn", {"mode": "big", "n": 400})
    files = os.listdir(Path(logs_daemon.state_dir, "logs", "logsfn"))
    assert any(re.search(r"\.log\.\d+$", f) for f in files), files

    assert "needle-in-the-old-part" in client.logs("logsfn", request_id=first.request_id)[0]
    text, _ = client.logs("logsfn", filter="needle-in-the-old-part")
    assert text == "needle-in-the-old-part\n"
    out = cli(logs_daemon, "logs", "logsfn", "--filter", "needle-in-the-old-part", "--json")
    assert out.returncode == 0, out.stderr
    (record,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert record["source"] == "function" and record["request_id"] == first.request_id
    assert record["message"] == "needle-in-the-old-part"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])


def test_logs_by_time_and_limit(logs_daemon: DaemonProcess, client: Client) -> None:
    marker = f"stamp-{time.time_ns()}"
    inv = client.invoke("logsfn", {"mode": "print", "text": marker})
    after = time.time() + 0.001
    wait_for(lambda: time.time() > after + 0.01)

    assert marker in client.logs("logsfn", since="1m", filter=marker)[0]
    assert client.logs("logsfn", since=after, filter=marker)[0] == ""
    assert marker in client.logs("logsfn", until=after, filter=marker)[0]
    page = client.log_events("logsfn", limit=3)
    assert len(page.events) == 3 and page.truncated
    assert page.events[-1].message.startswith(b"REPORT RequestId: ")

    out = cli(logs_daemon, "logs", "logsfn", "--since", "10m", "--request-id", inv.request_id)
    assert out.returncode == 0 and marker in out.stdout, out.stderr
    out = cli(logs_daemon, "logs", "logsfn", "--limit", "2")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2
    assert "more records matched" in out.stderr
    out = cli(logs_daemon, "logs", "logsfn", "--since", "last tuesday")
    assert out.returncode != 0 and "not a time: 'last tuesday'" in out.stderr
    assert "Traceback" not in out.stderr


def test_follow_prints_new_records(logs_daemon: DaemonProcess, client: Client) -> None:
    marker = f"followed-{time.time_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambdad", "logs", "logsfn", "-f", "--filter", marker,
         "--socket", logs_daemon.socket],
        stdout=subprocess.PIPE, cwd=str(ROOT),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        seen = bytearray()

        def printed() -> bool:
            client.invoke("logsfn", {"mode": "print", "text": marker})
            try:
                seen.extend(os.read(fd, 65536))
            except BlockingIOError:
                pass
            return marker.encode() in seen

        wait_for(printed, timeout=30, interval=0.2)
    finally:
        proc.terminate()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


def test_bad_log_queries_get_precise_errors(client: Client) -> None:
    cases = [
        ({"limit": 0}, "limit must be 1..10000, not 0"),
        ({"limit": "ten"}, "limit must be a int"),
        ({"since": 2000, "until": 1000}, "since is after until"),
        ({"filter": "%(%"}, "bad regular expression"),
        ({"filter": " "}, "filter pattern is empty"),
        ({"request_id": 7}, "request_id must be a str"),
        ({"cursor": [1]}, "cursor must be a map"),
    ]
    for args, message in cases:
        with pytest.raises(InvalidParameterValue, match=re.escape(message)):
            client.call("logs", name="logsfn", **args)
    with pytest.raises(LambdadError, match="logs-nobody"):
        client.logs("logs-nobody")


# ---------------------------------------------------------------------------------------------
# 13.3: disk caps for logs


def test_crashing_invocations_cannot_exceed_the_log_caps(tmp_path: Path) -> None:
    cap = 512 * 1024
    d = make_daemon(
        str(tmp_path),
        f"[daemon]\npool_size = 2\nlog_max_bytes = 65536\nlog_function_max_bytes = {cap}\n"
        "log_function_max_files = 12\nlog_total_max_bytes = 786432\n",
    )
    d.start()
    try:
        with d.client() as c:
            code = write_function(tmp_path / "code", HANDLER)
            c.deploy("crasher", code, timeout_s=10)
            c.deploy("crasher2", code, timeout_s=10)
            for i in range(16):  # each crash: a fresh sandbox, so a new stream
                for name in ("crasher", "crasher2"):
                    c.invoke(name, {"mode": "big", "n": 90, "tag": f"c{i}"})
                    inv = c.invoke(name, {"mode": "exit"})
                    assert inv.report is not None and inv.report.error_type == "Runtime.ExitError"
            root = Path(d.state_dir, "logs")
            for name in ("crasher", "crasher2"):
                files = list((root / name).iterdir())
                assert sum(p.stat().st_size for p in files) <= cap
                assert len(files) <= 12
            assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) <= 786432
            # Oldest first: the newest crash's records are still there.
            assert platform_lines(c, "crasher2", inv.request_id)[-1].startswith("REPORT")
            assert "c0 000000" not in c.logs("crasher", filter="c0 000000")[0]
    finally:
        d.stop()


# ---------------------------------------------------------------------------------------------
# 13.4: a SIGKILL of the daemon loses no completed invocation's records


def test_sigkill_loses_no_completed_invocations_records(tmp_path: Path) -> None:
    d = make_daemon(str(tmp_path), "[daemon]\npool_size = 2\n")
    d.start()
    with d.client() as c:
        c.deploy("durable-logs", write_function(tmp_path / "code", HANDLER))

    async def run_until_killed() -> set[str]:
        completed: set[str] = set()
        async with AsyncClient(d.socket) as ac:

            async def worker() -> None:
                while True:
                    try:
                        inv = await ac.invoke("durable-logs", {"mode": "print", "text": "line"})
                    except LambdadError:
                        return  # the daemon is gone
                    completed.add(inv.request_id)
                    if len(completed) >= 1200 and d.proc is not None and d.proc.poll() is None:
                        d.proc.send_signal(signal.SIGKILL)  # invocations still in flight

            await asyncio.gather(*(worker() for _ in range(16)))
        return completed

    completed = asyncio.run(run_until_killed())
    assert d.proc is not None
    d.proc.wait(30)
    assert len(completed) >= 1200

    # Straight from the files, before a restart could write anything.
    reported: set[str] = set()
    for path in Path(d.state_dir, "logs", "durable-logs").iterdir():
        for e in parse_records(path.read_bytes()):
            if e.source == "platform" and e.message.startswith(b"REPORT RequestId: "):
                reported.add(e.message.split()[2].decode())
    missing = completed - reported
    assert not missing, f"{len(missing)} of {len(completed)} completed invocations lost REPORT"

    d.start()  # and the restarted daemon finds them
    try:
        with d.client() as c:
            page = c.log_events("durable-logs", filter="%^REPORT RequestId%", limit=10_000)
            assert completed <= {e.request_id for e in page.events}
    finally:
        d.stop()
