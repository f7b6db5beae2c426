"""kill -9 of the daemon at random points during queue delivery loses no message.

A counter function appends the id of every message it processed to a file on the host (and
fsyncs it before it returns, so the record is on disk before the mapping may delete the
message). The daemon runs with isolation disabled for that reason only: the function must
see and write a host path, which no isolated sandbox can. 1,000 messages; the daemon is
SIGKILLed three times at random points of the delivery and restarted; in the end every
message was processed at least once (duplicates are allowed, losses never) and the queue is
empty.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import AsyncClient
from tests.conftest import TEST_CONFIG, DaemonProcess, make_daemon, wait_for, write_function

pytestmark = [pytest.mark.root, pytest.mark.slow]

TOTAL = 1000
NO_ISOLATION = 'disable_isolation = ["namespaces", "credentials", "seccomp", "cgroups"]\n'

COUNTER = """
import os
SEEN = os.environ["SEEN_FILE"]
def handler(event, context):
    ids = "".join(r["messageId"] + "\\n" for r in event["Records"])
    fd = os.open(SEEN, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, ids.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return {}
"""


@pytest.fixture
def host_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-kill9-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG + NO_ISOLATION)
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


async def send_all(socket_path: str, queue: str, n: int) -> list[str]:
    client = AsyncClient(socket_path)
    try:
        return list(
            await asyncio.gather(*(client.send_message(queue, f"m{i}") for i in range(n)))
        )
    finally:
        await client.close()


def seen(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def test_kill_9_during_delivery_loses_no_message(host_daemon: DaemonProcess) -> None:
    d = host_daemon
    shared = Path(tempfile.mkdtemp(prefix="lambdad-seen-"))
    seen_file = shared / "seen.log"
    try:
        code = write_function(shared / "code", COUNTER)
        with d.client() as c:
            c.deploy("kcount", code, env={"SEEN_FILE": str(seen_file)}, timeout_s=10)
            c.create_queue("kq", visibility_timeout_s=2)
        ids = asyncio.run(send_all(d.socket, "kq", TOTAL))
        assert len(set(ids)) == TOTAL
        with d.client() as c:
            c.create_mapping("kmap", "kcount", "kq", batch_size=10, max_concurrency=4)
        rng = random.Random(os.getpid())
        for kill in range(3):
            target = rng.randrange(50 + kill * 250, 250 + kill * 250)
            wait_for(lambda t=target: len(set(seen(seen_file))) >= t, timeout=120)  # type: ignore[misc]
            d.stop(signal.SIGKILL)
            d.start()
        wait_for(lambda: set(ids) <= set(seen(seen_file)), timeout=180)
        with d.client() as c:
            wait_for(lambda: _empty(c), timeout=60)
        processed = seen(seen_file)
        assert set(processed) == set(ids)  # nothing lost, nothing invented
        assert len(processed) >= TOTAL  # duplicates allowed
    finally:
        import shutil

        shutil.rmtree(shared, ignore_errors=True)


def _empty(c: object) -> bool:
    queues = c.list_queues()  # type: ignore[attr-defined]
    q = next(q for q in queues if q["name"] == "kq")
    return bool(q["visible"] + q["in_flight"] + q["delayed"] == 0)
