"""Scheduling and scale against the real daemon: scale-out, limits, timeouts, crashes,
zygote death, provisioned concurrency, idle reaping, the memory budget and SIGHUP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import AsyncClient, Invocation
from lambdad.errors import TooManyRequests
from lambdad.scheduler import ACCOUNT_EXCEEDED, RESERVED_EXCEEDED
from tests.conftest import EXAMPLES, DaemonProcess, running_daemon, wait_for, write_function

STREAM_AFTER_SLEEP = (
    "import time\n"
    "def handler(event, context):\n"
    "    time.sleep(event.get('ms', 100) / 1000)\n"
    "    return context.log_stream_name\n"
)


def _gather(socket: str, name: str, payloads: list[object]) -> list[Invocation | BaseException]:
    async def main() -> list[Invocation | BaseException]:
        async with AsyncClient(socket) as c:
            return await asyncio.gather(
                *(c.invoke(name, p) for p in payloads), return_exceptions=True
            )

    return asyncio.run(main())


@pytest.fixture
def custom_daemon(request: pytest.FixtureRequest) -> Iterator[DaemonProcess]:
    """A daemon with the configuration given by ``@pytest.mark.parametrize(indirect=True)``."""
    yield from running_daemon(request.param)


def test_200_concurrent_invocations_run_in_parallel_sandboxes(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    code = write_function(tmp_path / "par", STREAM_AFTER_SLEEP)
    with shared_daemon.client() as c:
        c.deploy("par", code, timeout_s=60)
    results = _gather(shared_daemon.socket, "par", [{"ms": 400}] * 200)
    failures = [r for r in results if isinstance(r, BaseException) or r.error]
    assert failures == []
    streams = {r.result for r in results if isinstance(r, Invocation)}
    assert len(streams) == 200  # every invocation had a sandbox of its own
    sources = {r.report.source for r in results if isinstance(r, Invocation) and r.report}
    assert sources <= {"pool", "fork"}
    with shared_daemon.client() as c:
        st = c.stats("par")
    assert st["max_concurrent"] == 200 and st["cold_starts"] == 200


def test_reserved_concurrency_throttles_beyond_queue(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    code = write_function(tmp_path / "limited", STREAM_AFTER_SLEEP)
    with shared_daemon.client() as c:
        c.deploy("limited", code, concurrency=5, timeout_s=30)
    # Each call holds its slot for 2 s; the queue lets a request wait 0.5 s: so exactly the
    # first 5 run and the other 15 are throttled.
    results = _gather(shared_daemon.socket, "limited", [{"ms": 2000}] * 20)
    ok = [r for r in results if isinstance(r, Invocation) and r.error is None]
    throttled = [r for r in results if isinstance(r, TooManyRequests)]
    assert len(ok) == 5 and len(throttled) == 15, results
    assert {t.details["reason"] for t in throttled} == {RESERVED_EXCEEDED}
    with shared_daemon.client() as c:
        st = c.stats("limited")
    assert st["throttles"] == 15 and st["max_concurrent"] == 5


def test_queue_admits_waiters_within_the_deadline(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    code = write_function(tmp_path / "single", STREAM_AFTER_SLEEP)
    with shared_daemon.client() as c:
        c.deploy("single", code, concurrency=1)
        c.invoke("single", {"ms": 1})
    results = _gather(shared_daemon.socket, "single", [{"ms": 50}] * 3)
    assert all(isinstance(r, Invocation) and r.error is None for r in results), results
    waits = sorted(r.report.queue_us for r in results if isinstance(r, Invocation) and r.report)
    assert waits[-1] >= 50_000  # the last one waited for the two before it


def test_zero_concurrency_throttles_everything(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("off", EXAMPLES / "hello", concurrency=0)
        with pytest.raises(TooManyRequests) as info:
            c.invoke("off", {})
    assert info.value.details["reason"] == RESERVED_EXCEEDED


@pytest.mark.parametrize(
    "custom_daemon", ["[daemon]\nglobal_concurrency = 2\nqueue_timeout_s = 0.2\n"], indirect=True
)
def test_global_limit(custom_daemon: DaemonProcess, tmp_path: Path) -> None:
    code = write_function(tmp_path / "g", STREAM_AFTER_SLEEP)
    with custom_daemon.client() as c:
        c.deploy("g", code)
    results = _gather(custom_daemon.socket, "g", [{"ms": 1500}] * 4)
    throttled = [r for r in results if isinstance(r, TooManyRequests)]
    assert len(throttled) == 2
    assert {t.details["reason"] for t in throttled} == {ACCOUNT_EXCEEDED}


def test_timeout_kills_the_sandbox_and_next_is_cold(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("slow", EXAMPLES / "sleeper", timeout_s=1)
        c.invoke("slow", {"ms": 1})
        inv = c.invoke("slow", {"ms": 10_000})
        after = c.invoke("slow", {"ms": 1})
    assert inv.function_error == "Unhandled"
    assert inv.error == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Task timed out after 1.00 seconds",
    }
    assert inv.report is not None and 1000 <= inv.report.duration_ms < 5000
    assert after.error is None and after.report is not None and after.report.cold


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import os\n    os._exit(3)", "exit status 3"),
        ("import ctypes\n    ctypes.string_at(0)", "signal: segmentation fault"),
        ("raise SystemExit(4)", "exit status 4"),
    ],
)
def test_crash_is_runtime_exit_error(
    shared_daemon: DaemonProcess, tmp_path: Path, body: str, expected: str
) -> None:
    name = "crash-" + expected.split()[-1]
    code = write_function(tmp_path / name, f"def handler(event, context):\n    {body}\n")
    with shared_daemon.client() as c:
        c.deploy(name, code)
        inv = c.invoke(name, {})
        again = c.invoke(name, {})
    assert inv.function_error == "Unhandled"
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError"
    assert inv.error["errorMessage"].endswith(f"Runtime exited with error: {expected}")
    assert again.report is not None and again.report.cold


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def _mountinfo(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/mountinfo").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _zygote_pid(daemon_pid: int) -> int:
    for pid in _children(daemon_pid):
        if b"sandbox.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError("no zygote")


def _sleeper_in_flight(
    daemon: DaemonProcess,
) -> tuple[int, threading.Thread, dict[str, Invocation]]:
    """Deploy the sleeper, start a 20 s invocation of it in a thread, wait until it is busy.

    Returns the zygote's pid, the thread and where the thread puts the invocation."""
    assert daemon.proc is not None
    with daemon.client() as c:
        c.deploy("sleeper", EXAMPLES / "sleeper", timeout_s=30)
        c.invoke("sleeper", {"ms": 1})
    zygote = _zygote_pid(daemon.proc.pid)
    outcome: dict[str, Invocation] = {}

    def inflight() -> None:
        with daemon.client() as c2:
            outcome["inv"] = c2.invoke("sleeper", {"ms": 20_000})

    t = threading.Thread(target=inflight)
    t.start()
    with daemon.client() as c:
        wait_for(lambda: c.stats("sleeper")["concurrent"] == 1)
    return zygote, t, outcome


def test_killed_zygote_is_restarted(daemon: DaemonProcess) -> None:
    zygote, t, outcome = _sleeper_in_flight(daemon)
    with daemon.client() as c:
        os.kill(zygote, signal.SIGKILL)
        t.join(30)
        inv = outcome["inv"]
        assert inv.function_error == "Unhandled"
        assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError"
        assert daemon.proc is not None
        daemon_pid = daemon.proc.pid
        new_zygote = wait_for(lambda: (z := _zygote_pid_or_0(daemon_pid)) != zygote and z)
        assert new_zygote
        after = wait_for(lambda: _try_invoke(c), timeout=30)
    assert isinstance(after, Invocation) and after.error is None


def _zygote_pid_or_0(daemon_pid: int) -> int:
    try:
        return _zygote_pid(daemon_pid)
    except (AssertionError, FileNotFoundError):
        return 0


def _try_invoke(c: object) -> Invocation | None:
    inv = c.invoke("sleeper", {"ms": 1})  # type: ignore[attr-defined]
    return inv if inv.error is None else None  # type: ignore[no-any-return]


def test_sigkill_of_a_busy_sandbox(daemon: DaemonProcess) -> None:
    zygote, t, outcome = _sleeper_in_flight(daemon)
    with daemon.client() as c:
        # The busy sandbox is the zygote's only specialized child: the only one with code
        # mounted at /var/task (the pooled ones are generic).
        busy = [p for p in _children(zygote) if " /var/task " in _mountinfo(p)]
        assert len(busy) == 1
        os.kill(busy[0], signal.SIGKILL)
        t.join(30)
        inv = outcome["inv"]
        assert inv.error is not None and "signal: killed" in inv.error["errorMessage"]
        after = c.invoke("sleeper", {"ms": 1})
    assert after.error is None and after.report is not None and after.report.cold


def test_min_warm_keeps_sandboxes_initialized(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("provisioned", EXAMPLES / "counter", min_warm=2)
        wait_for(lambda: c.stats("provisioned")["sandboxes"]["warm"] == 2, timeout=30)
        inv = c.invoke("provisioned", {})
    assert inv.report is not None and not inv.report.cold


@pytest.mark.parametrize(
    "custom_daemon", ["[daemon]\nidle_ttl_s = 0.5\nfreeze_after_s = 0.1\n"], indirect=True
)
def test_idle_sandboxes_are_reaped_after_the_ttl(custom_daemon: DaemonProcess) -> None:
    with custom_daemon.client() as c:
        c.deploy("counter", EXAMPLES / "counter")
        assert c.invoke("counter").result["count"] == 1
        wait_for(lambda: c.stats("counter")["sandboxes"]["warm"] == 0, timeout=30)
        inv = c.invoke("counter")
    assert inv.result["count"] == 1 and inv.report is not None and inv.report.cold


@pytest.mark.parametrize("custom_daemon", ["[daemon]\nmemory_budget_mb = 512\n"], indirect=True)
def test_memory_budget_reaps_least_recently_used(custom_daemon: DaemonProcess) -> None:
    with custom_daemon.client() as c:
        for i in range(4):
            c.deploy(f"f{i}", EXAMPLES / "counter", memory_mb=128)
            c.invoke(f"f{i}")
        c.deploy("f4", EXAMPLES / "counter", memory_mb=128)
        c.invoke("f4")  # over the 512 MB budget: the least recently used (f0) makes room
        warm = {f"f{i}": c.stats(f"f{i}")["sandboxes"]["warm"] for i in range(5)}
        assert warm == {"f0": 0, "f1": 1, "f2": 1, "f3": 1, "f4": 1}
        c.deploy("big", EXAMPLES / "counter", memory_mb=1024)
        with pytest.raises(TooManyRequests):
            c.invoke("big")  # cannot fit even with every idle sandbox reaped


def test_dryrun_validates_without_running(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("dry", EXAMPLES / "hello")
        inv = c.invoke("dry", {}, type="dryrun")
        assert inv.status == 204 and inv.report is None
        assert c.stats("dry")["invocations"] == 0


@pytest.mark.parametrize("custom_daemon", ["[daemon]\npool_size = 2\n"], indirect=True)
def test_sighup_reloads_the_configuration(custom_daemon: DaemonProcess) -> None:
    assert custom_daemon.proc is not None and custom_daemon.config is not None
    Path(custom_daemon.config).write_text("[daemon]\nglobal_concurrency = 7\n")
    custom_daemon.proc.send_signal(signal.SIGHUP)
    with custom_daemon.client() as c:
        wait_for(lambda: c.stats()["global_concurrency_limit"] == 7)
        assert c.invoke("hello", {}) if False else True  # daemon still serving
        assert c.call("ping") == {}


def test_min_warm_with_a_failing_init_backs_off(daemon: DaemonProcess, tmp_path: Path) -> None:
    code = write_function(tmp_path / "broken", "import no_such_module\n")
    with daemon.client() as c:
        c.deploy("broken-warm", code, min_warm=1)
        retries = wait_for(
            lambda: (
                (
                    r := re.findall(
                        r"min_warm for broken-warm: .*retrying in ([\d.]+) s", daemon.output()
                    )
                )
                and len(r) >= 3
                and r
            ),
            timeout=60,
        )
        assert c.call("ping") == {}
    # Exponential backoff, not a fork loop every sweep (250 ms).
    assert [float(x) for x in retries[:3]] == [1.0, 2.0, 4.0]  # type: ignore[index]
