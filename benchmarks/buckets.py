"""Object-event latency: a file renamed into a bucket → the handler starts, p50/p99, beside a
same-run bare inotify loop that calls the handler in-process.

* lambdad: a bucket with an s3 trigger; the function writes ``time.time()`` at its start to a
  second bucket it mounts. One object at a time (the next after the last handler started), so
  the figure is the path's latency, not a queue's: inotify → index check and MD5 → the
  durable store (fsync) → the async worker → a warm sandbox → the handler.
* reference: the same handler invoked asynchronously over the socket (``type = async``) with
  the same record: the durable store and async worker's share, without the bucket's;
* baseline: the floor of the idea — an ``inotify_simple`` loop on the same kind of directory
  (``IN_CLOSE_WRITE | IN_MOVED_TO``), calling the same handler function in its own process on
  each event, no store, no sandbox.

Issue 16's target: object event p50 ≤ 5 ms over the bare loop. Printed, nothing asserted.

``python -m benchmarks --only buckets --out DIR`` (or ``python -m benchmarks.buckets [--quick]``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import inotify_simple

from benchmarks.harness import BenchDaemon, Settings, note_problem, percentile

TARGET_OVER_BARE_MS = 5.0
HANDLER = """
import os, time, urllib.parse
def handler(event, context):
    started = time.time()
    key = urllib.parse.unquote_plus(event["Records"][0]["s3"]["object"]["key"])
    with open(os.path.join("/mnt/out", key + ".t"), "w") as f:
        f.write(repr(started))
    return {}
"""
PAYLOAD = os.urandom(16 * 1024)  # a small photo's size


def _count(settings: Settings) -> int:
    return 30 if settings.quick else 300


def _put(directory: Path, key: str) -> float:
    """Write ``key`` as tools do (a dot-file, renamed into place); the time of the rename."""
    partial = directory / f".{key}.part"
    partial.write_bytes(PAYLOAD)
    t0 = time.time()
    os.rename(partial, directory / key)
    return t0


def _wait_file(path: Path, deadline_s: float) -> str | None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            text = path.read_text()
            if text:
                return text
        except FileNotFoundError:
            pass
        time.sleep(0.0005)  # the poll's resolution does not enter the figure: the handler
        # wrote its own start time
    return None


def _stats(latencies_ms: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    return {
        "p50_ms": round(percentile(ordered, 0.50), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
        "mean_ms": round(sum(ordered) / len(ordered), 3),
        "n": len(ordered),
    }


def _lambdad(settings: Settings) -> tuple[list[float], list[float]]:
    code = settings.work_dir / "bucket-handler"
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(HANDLER)
    latencies: list[float] = []
    direct: list[float] = []
    config = {"idle_ttl_s": 3600.0}
    with BenchDaemon("buckets", settings.work_dir, config) as daemon, daemon.client() as c:
        inbox = Path(c.create_bucket("bench-in")["path"])
        outbox = Path(c.create_bucket("bench-out")["path"])
        c.deploy("on-object", code, mounts=["bucket:bench-out:/mnt/out"], min_warm=1)
        c.trigger_add("s3", "bench", "on-object", bucket="bench-in")
        for i in range(-3, _count(settings)):  # 3 warm-up objects
            key = f"o{i + 3:05d}.bin"
            t0 = _put(inbox, key)
            text = _wait_file(outbox / f"{key}.t", 30.0)
            if text is None:
                note_problem(f"buckets: no handler start for {key} within 30 s")
                break
            if i >= 0:
                latencies.append((float(text) - t0) * 1000)
        # The same handler invoked asynchronously over the socket with the same record: the
        # durable store and async worker's share of the figure, without the bucket's.
        for i in range(_count(settings)):
            key = f"a{i:05d}.bin"
            payload = json.dumps({"Records": [{"s3": {"object": {"key": key}}}]}).encode()
            t0 = time.time()
            c.call("invoke", name="on-object", payload=payload, type="async")
            text = _wait_file(outbox / f"{key}.t", 30.0)
            if text is None:
                note_problem(f"buckets: no handler start for async invoke {key} within 30 s")
                break
            direct.append((float(text) - t0) * 1000)
    return latencies, direct


def _bare(settings: Settings) -> list[float]:
    """The same handler, called in-process by a bare inotify loop."""
    namespace: dict[str, Any] = {}
    root = settings.work_dir / "bare"
    inbox, outbox = root / "in", root / "out"
    inbox.mkdir(parents=True, exist_ok=True)
    outbox.mkdir(parents=True, exist_ok=True)
    exec(HANDLER.replace('"/mnt/out"', repr(str(outbox))), namespace)
    handler = namespace["handler"]
    inotify = inotify_simple.INotify()
    inotify.add_watch(str(inbox), inotify_simple.flags.CLOSE_WRITE | inotify_simple.flags.MOVED_TO)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for event in inotify.read(timeout=100):
                if event.name.startswith("."):
                    continue
                record = {"s3": {"object": {"key": event.name}}}
                handler({"Records": [record]}, None)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    latencies: list[float] = []
    try:
        for i in range(_count(settings) + 3):
            key = f"o{i:05d}.bin"
            t0 = _put(inbox, key)
            text = _wait_file(outbox / f"{key}.t", 10.0)
            if text is None:
                note_problem(f"buckets: the bare loop missed {key}")
                break
            if i >= 3:
                latencies.append((float(text) - t0) * 1000)
    finally:
        stop.set()
        thread.join()
        inotify.close()
    return latencies


def run(settings: Settings) -> dict[str, Any]:
    objects, direct = _lambdad(settings)
    lam, via_async = _stats(objects), _stats(direct)
    bare = _stats(_bare(settings))
    over = lam["p50_ms"] - bare["p50_ms"]
    result: dict[str, Any] = {
        "lambdad": lam,
        "bare_inotify_loop": bare,
        "async_invoke_reference": via_async,
        "p50_over_bare_ms": round(over, 3),
        "target_p50_over_bare_ms": TARGET_OVER_BARE_MS,
        "target_met": over <= TARGET_OVER_BARE_MS,
    }
    print(
        f"    object event → handler start: lambdad p50 {lam['p50_ms']:.2f} ms p99 "
        f"{lam['p99_ms']:.2f} ms | bare inotify loop p50 {bare['p50_ms']:.3f} ms p99 "
        f"{bare['p99_ms']:.3f} ms | p50 over bare {over:.2f} ms (target ≤ "
        f"{TARGET_OVER_BARE_MS:.0f})",
        flush=True,
    )
    print(
        f"    reference: async invoke over the socket → handler start p50 "
        f"{via_async['p50_ms']:.2f} ms p99 {via_async['p99_ms']:.2f} ms (the store's share)",
        flush=True,
    )
    return result


if __name__ == "__main__":
    import sys
    import tempfile

    quick = "--quick" in sys.argv[1:]
    work = Path(tempfile.mkdtemp(prefix="lambdad-bench-buckets-"))
    print(run(Settings.make(quick, work / "out", work)))
