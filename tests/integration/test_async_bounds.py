"""The async queue and the disk are bounded (issue 13, point 3): queued events and bytes have
per-function and global caps (TooManyRequests with a reason, nothing stored), and below the
free-disk watermark the daemon refuses new deploys and async events instead of filling the
disk — while what it already accepted keeps running."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import Client
from lambdad.errors import CodeStorageExceeded, TooManyRequests
from tests.conftest import TEST_CONFIG, DaemonProcess, make_daemon, wait_for, write_function

SLEEPER = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return "slept"
"""

CAPS = """
async_workers = 1
shutdown_grace_s = 1
async_queue_function_max_events = 5
async_queue_max_events = 9
async_queue_function_max_bytes = 300000
async_queue_max_bytes = 350000
"""
BIG = "x" * 200_000  # a 200 KB event (JSON string)


@pytest.fixture
def capped() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG + CAPS)
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def refused(c: Client, name: str, payload: object) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as info:
        c.invoke(name, payload, type="async")
    return info.value


def queued(c: Client) -> int:
    counts = c.stats()["async"]
    return int(counts["pending"]) + int(counts["running"])


def test_the_async_queue_has_per_function_and_global_caps(
    capped: DaemonProcess, tmp_path: Path
) -> None:
    code = write_function(tmp_path / "sleeper", SLEEPER)
    with capped.client() as c:
        for name in ("a", "b", "c", "d"):
            c.deploy(name, code, timeout_s=60)
        # The one async worker is kept busy by the first event; the others wait in the queue.
        # (20 s: this phase takes a few; the event runs again, whole, after the restart.)
        c.invoke("a", {"sleep": 20}, type="async")
        wait_for(lambda: c.stats()["async"]["running"] == 1)
        for _ in range(4):
            assert c.invoke("a", {}, type="async").status == 202
        full = refused(c, "a", {})
        assert full.details["reason"] == "AsyncEventQueueFull"
        assert "function 'a' has 5 async events queued" in full.message
        assert "async_queue_function_max_events" in full.message

        assert c.invoke("c", BIG, type="async").status == 202
        full = refused(c, "c", BIG)
        assert "function 'c' has 200002 bytes of async events queued" in full.message
        assert "async_queue_function_max_bytes" in full.message

        full = refused(c, "d", BIG)  # d has nothing queued; the whole queue is too big
        assert "async_queue_max_bytes" in full.message and "function" not in full.message

        for _ in range(3):
            assert c.invoke("b", {}, type="async").status == 202
        full = refused(c, "b", {})
        assert "the async event queue holds 9 events" in full.message
        assert "async_queue_max_events" in full.message
        # Refused events were not stored: exactly what was accepted is queued.
        assert queued(c) == 9
        # Synchronous invocations are not queued and not refused.
        assert c.invoke("b", {}).result == "slept"
    # The counts are the database's: after a restart the queue is still full.
    capped.restart()
    with capped.client() as c:
        assert queued(c) == 9
        assert "async_queue_max_events" in refused(c, "b", {}).message
        # As the events run, they leave the queue: room again.
        wait_for(lambda: queued(c) == 0, timeout=120)
        assert c.invoke("b", {}, type="async").status == 202


def test_below_the_free_disk_watermark_deploys_and_async_events_are_refused(
    tmp_path: Path,
) -> None:
    code = write_function(tmp_path / "fn", "def handler(e, c):\n    return 'ok'\n")
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG)
        d.start()
        try:
            with d.client() as c:
                c.deploy("fn", code)
            d.stop()
            # A watermark above the free space there is: 100% of the file system.
            Path(d.config or "").write_text(TEST_CONFIG + "disk_min_free_percent = 100\n")
            d.start()
            with d.client() as c:
                with pytest.raises(CodeStorageExceeded) as deploy_refused:
                    c.deploy("other", code)
                assert "deploy refused: the file system of" in deploy_refused.value.message
                assert "disk_min_free_percent = 100" in deploy_refused.value.message
                with pytest.raises(TooManyRequests) as async_refused:
                    c.invoke("fn", {}, type="async")
                assert async_refused.value.details["reason"] == "InsufficientDiskSpace"
                assert "async event refused" in async_refused.value.message
                assert c.stats()["async"]["pending"] == 0
                # What does not grow the disk on request still works.
                assert c.invoke("fn", json.dumps({}).encode()).result == "ok"
                assert [f["name"] for f in c.list()] == ["fn"]
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
