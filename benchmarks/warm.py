"""Warm latency: one client, sequential no-op invocations, against the floor of this design.

The floor is the echo relay of :mod:`benchmarks.relay` — client -> relay -> echo and back, two
Unix-socket hops like client -> daemon -> sandbox — answering with the body of a real no-op
invoke response, so the same :class:`lambdad.client.Client` sends and decodes the same bytes.
Both are measured in interleaved blocks (lambdad, relay, lambdad, ...) so that noise from the
shared machine lands on both alike; the ratio of their medians is the figure SPEC §10 bounds.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import EXAMPLES, BenchDaemon, Settings, note_problem, summarize
from benchmarks.relay import EchoRelay
from lambdad.client import Client

BLOCK = 1000  # invocations per interleaved block
WARMUP = 500


def _timed(client: Client, n: int, sink: list[float]) -> int:
    """``n`` sequential no-op invocations; appends µs each; returns how many were not warm."""
    cold = 0
    for _ in range(n):
        t0 = time.perf_counter_ns()
        inv = client.invoke("noop")
        sink.append((time.perf_counter_ns() - t0) / 1000)
        if inv.report is not None and inv.report.cold:
            cold += 1
    return cold


def run(settings: Settings) -> dict[str, Any]:
    lambdad_us: list[float] = []
    relay_us: list[float] = []
    config = {"idle_ttl_s": 3600.0}
    with BenchDaemon("warm", settings.work_dir, config) as daemon, daemon.client() as c:
        c.deploy("noop", EXAMPLES / "noop")
        c.invoke("noop")
        body = c.call("invoke", name="noop", payload=b"null", type="sync")
        with EchoRelay(settings.work_dir, body) as relay, Client(relay.path, 60) as rc:
            _timed(c, WARMUP, [])
            _timed(rc, WARMUP, [])
            cold = 0
            remaining = settings.warm_n
            while remaining > 0:
                block = min(BLOCK, remaining)
                cold += _timed(c, block, lambdad_us)
                _timed(rc, block, relay_us)
                remaining -= block
        stats = c.stats("noop")
    if cold:
        note_problem(f"warm latency: {cold} of {settings.warm_n} sequential invocations were cold")
    lam = summarize(lambdad_us)
    rel = summarize(relay_us)
    result = {
        "n": settings.warm_n,
        "lambdad_us": lam,
        "relay_us": rel,
        "ratio_p50": lam["p50"] / rel["p50"],
        "ratio_p99": lam["p99"] / rel["p99"],
        "cold_during_run": cold,
        "lambdad_samples_us": lambdad_us,
        "relay_samples_us": relay_us,
        "function_stats": stats,
    }
    print(
        f"    lambdad p50 {lam['p50']:6.1f} us  p99 {lam['p99']:6.1f} us | relay p50 "
        f"{rel['p50']:6.1f} us  p99 {rel['p99']:6.1f} us | ratio {result['ratio_p50']:.2f}x",
        flush=True,
    )
    return result
