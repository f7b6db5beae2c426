"""Queue throughput: messages/s through an event-source mapping at batch sizes 1, 10, 100, for
the embedded queue and for NATS JetStream, beside same-run raw baselines.

* lambdad: N messages are preloaded; the clock starts when the mapping is created and stops
  when the queue (or the consumer) has nothing left — every message received, handed to a
  no-op batch function in SQS's shape, and deleted (acked).
* baselines (the floor of each backend, no function): the embedded store's own
  receive + delete loop in this process (``QueueStore``, the same code the daemon runs), and a
  ``nats bench``-style JetStream pull consumer fetching and acking batches of the same size.

Issue 16's target: >= 10,000 messages/s at batch size 100 on the embedded queue. The ratios to
the baselines are printed beside it; nothing is asserted.

``python -m benchmarks --only queues`` (or ``python -m benchmarks.queues [--quick]``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchDaemon, Settings, note_problem
from lambdad.client import AsyncClient, Client
from lambdad.queues.store import OutgoingMessage, QueueSettings, QueueStore

BATCHES = (1, 10, 100)
TARGET_BATCH_100 = 10_000.0
NOOP_BATCH = 'def handler(event, context):\n    return {"n": len(event["Records"])}\n'
SEND_CHUNK = 500


def _counts(settings: Settings) -> dict[int, int]:
    if settings.quick:
        return {1: 200, 10: 1000, 100: 3000}
    return {1: 2000, 10: 10_000, 100: 40_000}


async def _preload(socket_path: str, queue: str, n: int) -> None:
    client = AsyncClient(socket_path)
    try:
        for start in range(0, n, SEND_CHUNK):
            await asyncio.gather(
                *(
                    client.send_message(queue, f"m{i}")
                    for i in range(start, min(n, start + SEND_CHUNK))
                )
            )
    finally:
        await client.close()


def _wait_empty(c: Client, queue: str, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        q = next(q for q in c.list_queues() if q["name"] == queue)
        if q["visible"] + q["in_flight"] + q["delayed"] == 0:
            return True
        time.sleep(0.01)  # a benchmark's polling resolution, not a wait for correctness
    return False


def _embedded_lambdad(settings: Settings, code: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    config = {"idle_ttl_s": 3600.0}
    with BenchDaemon("queues", settings.work_dir, config) as daemon, daemon.client() as c:
        c.deploy("qbatch", code)
        c.invoke("qbatch", {"Records": []})
        for batch, n in _counts(settings).items():
            queue = f"bench{batch}"
            c.create_queue(queue, visibility_timeout_s=60)
            asyncio.run(_preload(daemon.socket, queue, n))
            t0 = time.perf_counter()
            c.create_mapping(queue, "qbatch", queue, batch_size=batch,
                             window_s=1 if batch > 10 else 0, max_concurrency=4)  # fmt: skip
            if not _wait_empty(c, queue, 600):
                note_problem(f"queues: batch {batch}: the queue did not drain in 600 s")
            out[batch] = n / (time.perf_counter() - t0)
            c.delete_mapping(queue)
    return out


async def _embedded_raw(n: int, batch: int, directory: str) -> float:
    store = QueueStore(str(Path(directory) / f"raw{batch}.sqlite3"))
    await store.open(asyncio.get_running_loop())
    try:
        await store.create(QueueSettings.make("raw", 60))
        for start in range(0, n, SEND_CHUNK):
            await store.send_batch(
                "raw",
                [OutgoingMessage.make(f"m{i}") for i in range(start, min(n, start + SEND_CHUNK))],
            )
        t0 = time.perf_counter()
        done = 0
        while done < n:
            got = await store.receive("raw", batch)
            await store.delete([m.receipt for m in got])
            done += len(got)
        return n / (time.perf_counter() - t0)
    finally:
        await store.close()


class _Nats:
    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"nats://127.0.0.1:{self.port}"
        binary = shutil.which("nats-server")
        if binary is None:
            raise FileNotFoundError("nats-server not installed (scripts/system-packages)")
        self.log = open(directory / "nats.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(directory / "js")],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


async def _nats_publish(url: str, stream: str, n: int) -> None:
    import nats
    from nats.js import api

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(name=stream, subjects=[stream]))
        for start in range(0, n, SEND_CHUNK):
            await asyncio.gather(
                *(
                    js.publish(stream, f"m{i}".encode())
                    for i in range(start, min(n, start + SEND_CHUNK))
                )
            )
    finally:
        await nc.close()


async def _nats_drained(url: str, stream: str, durable: str) -> bool:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)
    except Exception:
        return False
    finally:
        await nc.close()


async def _nats_raw(url: str, stream: str, n: int, batch: int) -> float:
    import nats
    from nats.js import api

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(stream, "raw", config=api.ConsumerConfig(ack_wait=60))
        t0 = time.perf_counter()
        done = 0
        while done < n:
            msgs = await sub.fetch(batch, timeout=5)
            for m in msgs:
                await m.ack()
            done += len(msgs)
        return n / (time.perf_counter() - t0)
    finally:
        await nc.close()


def _nats(settings: Settings, code: Path) -> dict[str, Any]:
    lam: dict[int, float] = {}
    raw: dict[int, float] = {}
    server = _Nats(settings.work_dir)
    try:
        config = {"idle_ttl_s": 3600.0}
        with BenchDaemon("queues-nats", settings.work_dir, config) as daemon, daemon.client() as c:
            c.deploy("qbatch", code)
            for batch, n in _counts(settings).items():
                stream = f"bench{batch}"
                asyncio.run(_nats_publish(server.url, stream, n))
                t0 = time.perf_counter()
                c.create_mapping(stream, "qbatch", f"{server.url}/{stream}?visibility_timeout=60",
                                 batch_size=batch, window_s=1 if batch > 10 else 0,
                                 max_concurrency=4)  # fmt: skip
                end = time.monotonic() + 600
                while not asyncio.run(_nats_drained(server.url, stream, f"lambdad-{stream}")):
                    if time.monotonic() > end:
                        note_problem(f"queues: NATS batch {batch} did not drain in 600 s")
                        break
                    time.sleep(0.02)
                lam[batch] = n / (time.perf_counter() - t0)
                c.delete_mapping(stream)
                raw[batch] = asyncio.run(_nats_raw(server.url, stream, n, batch))
    finally:
        server.stop()
    return {"lambdad_msgs_per_s": lam, "raw_msgs_per_s": raw}


def run(settings: Settings) -> dict[str, Any]:
    code = settings.work_dir / "qbatch"
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(NOOP_BATCH)
    embedded = _embedded_lambdad(settings, code)
    with tempfile.TemporaryDirectory(dir=settings.work_dir) as tmp:
        raw = {b: asyncio.run(_embedded_raw(n, b, tmp)) for b, n in _counts(settings).items()}
    result: dict[str, Any] = {
        "counts": _counts(settings),
        "embedded": {"lambdad_msgs_per_s": embedded, "raw_msgs_per_s": raw},
        "target_batch_100_msgs_per_s": TARGET_BATCH_100,
    }
    try:
        result["nats"] = _nats(settings, code)
    except (FileNotFoundError, RuntimeError) as exc:
        result["nats"] = {"skipped": str(exc)}
    for backend in ("embedded", "nats"):
        part = result[backend]
        if "skipped" in part:
            print(f"    {backend}: skipped ({part['skipped']})", flush=True)
            continue
        for b in BATCHES:
            lam_rate = part["lambdad_msgs_per_s"][b]
            raw_rate = part["raw_msgs_per_s"][b]
            print(
                f"    {backend:8s} batch {b:3d}: lambdad {lam_rate:8.0f} msg/s | raw "
                f"{raw_rate:8.0f} msg/s | ratio {lam_rate / raw_rate:.2f}",
                flush=True,
            )
    got = embedded[100]
    result["target_met"] = got >= TARGET_BATCH_100
    print(
        f"    target: embedded batch 100 >= {TARGET_BATCH_100:.0f} msg/s: measured {got:.0f} "
        f"({got / TARGET_BATCH_100:.2f} of the target)",
        flush=True,
    )
    return result


if __name__ == "__main__":
    import sys

    work = Path(tempfile.mkdtemp(prefix="lambdad-bench-queues-"))
    try:
        run(Settings.make("--quick" in sys.argv, work / "out", work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
