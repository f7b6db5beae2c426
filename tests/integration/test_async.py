"""Async (Event) invocations: durable acceptance, retries, dead letters, kill -9."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from lambdad.client import AsyncClient
from tests.conftest import EXAMPLES, DaemonProcess, wait_for, write_function

START_RE = re.compile(r"^START RequestId: ([0-9a-f-]{36}) ", re.M)


def _started(daemon: DaemonProcess, name: str) -> set[str]:
    """Request ids that started, read from the function's whole log (cursor {} = from 0)."""
    with daemon.client() as c:
        text, _ = c.logs(name, cursor={})
    return set(START_RE.findall(text))


def test_async_invoke_runs_in_the_background(shared_daemon: DaemonProcess) -> None:
    with shared_daemon.client() as c:
        c.deploy("hello-async", EXAMPLES / "hello")
        inv = c.invoke("hello-async", {"name": "later"}, type="async")
        assert inv.status == 202 and inv.event_id
        wait_for(lambda: inv.event_id in _started(shared_daemon, "hello-async"))
        wait_for(lambda: c.stats()["async"]["done"] >= 1)


def test_failures_are_retried_twice_then_dead_lettered(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("always-fails", EXAMPLES / "raises")
        inv = c.invoke("always-fails", {"amount": 1}, type="async")
        dead = wait_for(lambda: c.dead_letters("always-fails"), timeout=30)
        assert isinstance(dead, list) and len(dead) == 1
        assert dead[0]["event_id"] == inv.event_id
        assert dead[0]["attempts"] == 3  # the first try and Lambda's 2 retries
        assert "InsufficientFunds" in dead[0]["error"]
        starts = re.findall(rf"START RequestId: {inv.event_id} ", c.logs("always-fails", {})[0])
        assert len(starts) == 3
        # Fix the function, re-drive the dead letter: it runs again and succeeds.
        code = write_function(tmp_path / "fixed", "def handler(e, c):\n    return 'ok'\n")
        c.deploy("always-fails", code)
        assert c.redrive("always-fails") == 1
        wait_for(lambda: not c.dead_letters("always-fails"))
        wait_for(
            lambda: (
                len(re.findall(rf"START RequestId: {inv.event_id} ", c.logs("always-fails", {})[0]))
                == 4
            )
        )


def test_accepted_events_survive_kill_9(daemon: DaemonProcess, tmp_path: Path) -> None:
    """1,000 events accepted, the daemon SIGKILLed, restarted: every event runs at least once."""
    code = write_function(
        tmp_path / "slowish", "import time\ndef handler(e, c):\n    time.sleep(0.02)\n"
    )
    with daemon.client() as c:
        c.deploy("durable", code)

    async def accept() -> list[str]:
        async with AsyncClient(daemon.socket) as ac:
            invs = await asyncio.gather(
                *(ac.invoke("durable", {"i": i}, type="async") for i in range(1000))
            )
        return [str(i.event_id) for i in invs]

    accepted = asyncio.run(accept())
    assert len(set(accepted)) == 1000
    assert daemon.proc is not None
    daemon.stop(signal.SIGKILL)
    daemon.start()
    with daemon.client() as c:
        # Every accepted event is a row of the store (the ids are its primary key) and a row
        # only becomes "done" after the function returned successfully for it: 1,000 done
        # rows = every accepted event ran to completion, at least once. (The function's log
        # cannot prove it: lines still buffered at the SIGKILL are lost, as on any host.)
        counts = wait_for(
            lambda: (n := c.stats()["async"]) and n["done"] + n["dead"] >= 1000 and n,
            timeout=180,
            interval=0.5,
        )
    assert counts == {"pending": 0, "running": 0, "done": 1000, "dead": 0}
    # And what ran after the restart shows up in the log under its event id.
    assert _started(daemon, "durable") <= set(accepted)
