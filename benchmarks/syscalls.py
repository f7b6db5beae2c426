"""``python -m benchmarks.syscalls [1x1 1x32 64x32 ...]``: the daemon's system calls per
invocation, by call, under loads of (connections x requests in flight) no-op invocations.

For each point a daemon of its own (the throughput scenario's settings) runs the load from
:mod:`benchmarks.loadgen` while ``strace -c`` counts its calls for :data:`TRACE_S` seconds.
Every invocation reads its sandbox's ``memory.peak`` exactly once (one ``pread64``), so that
count is the number of invocations the trace saw; the table divides by it. Counts, unlike
times, barely depend on how busy the machine is. strace slows the daemon (each call stops it
twice), so the rates it prints are not throughput figures. Needs root and strace.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import EXAMPLES, BenchDaemon
from benchmarks.throughput import DAEMON_SETTINGS, SANDBOXES, load_point

TRACE_S = 3.0
PER_INVOCATION = "pread64"  # one memory.peak read per invocation


def parse_summary(text: str) -> dict[str, int]:
    """``strace -c`` output: calls per system call name."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        name = fields[-1] if fields else ""
        if len(fields) >= 5 and fields[3].isdigit() and name.isidentifier() and name != "total":
            calls[name] = int(fields[3])
    return calls


def measure(work_dir: Path, connections: int, depth: int) -> dict[str, Any]:
    strace = shutil.which("strace")
    if strace is None:
        raise RuntimeError("strace is not installed")
    out = work_dir / f"strace-{connections}x{depth}.txt"
    with BenchDaemon("syscalls", work_dir, DAEMON_SETTINGS) as daemon:
        with daemon.client() as c:
            c.deploy("noop", EXAMPLES / "noop", concurrency=SANDBOXES)
            c.invoke("noop")
        load_point(daemon.socket, "noop", 2, SANDBOXES, 0.3, 0.3)  # every sandbox up
        assert daemon.proc is not None
        result: dict[str, Any] = {}
        window = TRACE_S + 2.0
        load = threading.Thread(
            target=lambda: result.update(
                load_point(daemon.socket, "noop", connections, depth, 0.5, window)
            )
        )
        load.start()
        time.sleep(1.0)
        tracer = subprocess.Popen(
            [strace, "-c", "-p", str(daemon.proc.pid), "-o", str(out)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(TRACE_S)
        tracer.send_signal(2)
        tracer.wait(timeout=30)
        load.join()
    calls = parse_summary(out.read_text())
    n = max(1, calls.get(PER_INVOCATION, 0))
    return {
        "point": f"{connections}x{depth}",
        "invocations": calls.get(PER_INVOCATION, 0),
        "per_invocation": {k: v / n for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
        "total_per_invocation": sum(calls.values()) / n,
        "errors": result.get("errors"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.syscalls")
    parser.add_argument("points", nargs="*", default=["1x1", "1x32", "64x32"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lambdad-syscalls-") as tmp:
        for point in args.points:
            connections, depth = (int(x) for x in point.split("x"))
            r = measure(Path(tmp), connections, depth)
            calls = " ".join(f"{k} {v:.2f}" for k, v in r["per_invocation"].items() if v >= 0.05)
            print(f"{r['point']:>6}: {r['total_per_invocation']:5.2f} calls/invocation "
                  f"({r['invocations']} traced): {calls}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
