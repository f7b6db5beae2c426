"""Throughput: no-op invocations per second versus connections and requests in flight.

Load comes from separate processes (:mod:`benchmarks.loadgen`), at most
:data:`LOAD_PROCESSES` of them sharing the connections, so the measuring process stays out of the
way. Every point runs for a warm-up and then a measuring window; only responses that arrive
inside the window count.

Every invocation in flight needs a sandbox of its own (Lambda's model), so the function is
deployed with a reserved concurrency of :data:`SANDBOXES`: requests beyond it wait in the
daemon's admission queue (configured long and deep enough never to throttle) instead of
scaling the function to thousands of sandboxes on a 2-core machine. The same load against the
echo relay (:mod:`benchmarks.relay`) is the same-run baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import EXAMPLES, BenchDaemon, Settings, note_problem, summarize

LOAD_PROCESSES = 2  # load generator processes at most (the machine has 2 cores)
SANDBOXES = 32  # reserved concurrency of the benchmarked function
START_LEAD_S = 0.6  # time for the load processes to start and connect before the common start
DAEMON_SETTINGS = {
    "pool_size": 4,
    "global_concurrency": 4096,
    "memory_budget_mb": 1_000_000,
    "queue_max": 65_536,
    "queue_timeout_s": 60.0,
    "idle_ttl_s": 3600.0,
}


def load_point(
    socket_path: str,
    function: str,
    connections: int,
    depth: int,
    warmup: float,
    window: float,
) -> dict[str, Any]:
    """Run one (connections, depth) point; returns invocations/s, errors and latencies."""
    processes = min(LOAD_PROCESSES, connections)
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    start_at = time.monotonic() + START_LEAD_S
    common = [
        sys.executable, "-m", "benchmarks.loadgen", "--socket", socket_path,
        "--function", function, "--depth", str(depth),
        "--start-at", repr(start_at), "--warmup", repr(warmup), "--window", repr(window),
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*common, "--connections", str(share)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for share in shares
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=warmup + window + START_LEAD_S + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {err.decode(errors='replace')[-2000:]}")
        results.append(json.loads(out))
    completed = sum(r["completed"] for r in results)
    errors = sum(r["errors"] for r in results)
    error_types: dict[str, int] = {}
    for r in results:
        for k, v in r["error_types"].items():
            error_types[k] = error_types.get(k, 0) + v
    latencies = [x for r in results for x in r["latencies_us"]]
    return {
        "connections": connections,
        "depth": depth,
        "in_flight": connections * depth,
        "processes": processes,
        "invocations_per_s": completed / window,
        "completed": completed,
        "errors": errors,
        "error_types": error_types,
        "unanswered": sum(r["unanswered"] for r in results),
        "latency_us": summarize(latencies),
    }


def run(settings: Settings) -> dict[str, Any]:
    from benchmarks.relay import EchoRelay

    points: list[dict[str, Any]] = []
    with BenchDaemon("throughput", settings.work_dir, DAEMON_SETTINGS) as daemon:
        with daemon.client() as c:
            c.deploy("noop", EXAMPLES / "noop", concurrency=SANDBOXES)
            c.invoke("noop")
            body = c.call("invoke", name="noop", payload=b"null", type="sync")
        # Bring every sandbox up before measuring: scale-out is measured elsewhere.
        load_point(daemon.socket, "noop", 2, SANDBOXES, 0.3, 0.3)
        for connections in settings.throughput_connections:
            for depth in settings.throughput_depths:
                point = load_point(
                    daemon.socket,
                    "noop",
                    connections,
                    depth,
                    settings.throughput_warmup_s,
                    settings.throughput_window_s,
                )
                print(
                    f"    {connections:3d} conn x {depth:3d} in flight: "
                    f"{point['invocations_per_s']:9.0f} inv/s  errors {point['errors']}",
                    flush=True,
                )
                if point["errors"]:
                    note_problem(
                        f"throughput: {point['errors']} errors at {connections} connections x "
                        f"{depth} in flight: {point['error_types']}"
                    )
                points.append(point)
        with daemon.client() as c:
            stats = c.stats("noop")
        if not daemon.alive():
            raise RuntimeError(f"the daemon died during the throughput run:\n{daemon.log_tail()}")
    best = max(points, key=lambda p: p["invocations_per_s"])
    # The same load at the best point, against the echo relay (the floor of this design).
    relay_points = []
    with EchoRelay(settings.work_dir, body) as relay:
        for connections in sorted({1, best["connections"], max(settings.throughput_connections)}):
            relay_points.append(
                load_point(
                    relay.path,
                    "noop",
                    connections,
                    best["depth"],
                    settings.throughput_warmup_s,
                    settings.throughput_window_s,
                )
            )
    relay_best = max(relay_points, key=lambda p: p["invocations_per_s"])
    return {
        "function_concurrency": SANDBOXES,
        "load_processes": LOAD_PROCESSES,
        "window_s": settings.throughput_window_s,
        "warmup_s": settings.throughput_warmup_s,
        "points": points,
        "best": best,
        "relay_points": relay_points,
        "relay_best": relay_best,
        "function_stats": stats,
    }
