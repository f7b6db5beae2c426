"""Cold start: a Python no-op with full isolation, as its client sees it.

Three modes, each over ``cold_n`` invocations that all pay a cold start (``force_cold``: the
daemon ignores warm sandboxes and retires the one it used):

* ``pool_ready`` — the generic pool is full before every invocation (the harness waits for it),
  so the cold start is a *specialization* of a pre-forked sandbox (SPEC §10 first row);
* ``pool_empty`` — a daemon with ``pool_size = pool_max = 0``: every sandbox is forked on
  demand, isolation set-up included (SPEC §10 second row);
* ``force_cold`` — back to back, no pause: the pool refills while the next request waits, so
  this is the sustained cold-start rate's latency, and the report's ``source`` says how many
  came from the pool and how many were forked on demand.

The client-observed time is from just before ``Client.invoke`` to its return. The phase
breakdown is the mean of the reports' ``phases_us``; phases before ``set_limits`` happen at
pool time (off the request path) when the source is ``pool``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from benchmarks.harness import EXAMPLES, BenchDaemon, Settings, note_problem, summarize
from lambdad.client import Client
from lambdad.testing import wait_for

POOL_SIZE = 4
TAIL_KEPT = 5  # the slowest invocations kept with their phases, per mode
SETTLE_S = 0.005  # pause between invocations (not in force_cold mode): the last one's teardown
WARMUP = 5
POOL_TIME_PHASES = ("fork", "cgroup", "namespaces", "network", "mounts")


def measure(client: Client, n: int, wait_pool: int | None, settle_s: float) -> dict[str, Any]:
    """``n`` force-cold no-op invocations. ``wait_pool``: wait for that many ready generic
    sandboxes before each one."""
    latencies: list[float] = []
    init_ms: list[float] = []
    outside_ms: list[float] = []  # client-observed minus the report's init and duration
    sources: Counter[str] = Counter()
    phases: dict[str, dict[str, list[int]]] = {}
    # Where the tail comes from: each measured invocation's latency, the time outside Init
    # and Duration, and its phases; the slowest few are kept beside the medians.
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    not_cold = 0
    for i in range(WARMUP + n):
        if wait_pool:
            try:
                wait_for(
                    lambda: client.stats()["sandboxes"]["generic"] >= wait_pool,
                    timeout=10,
                    interval=0.002,
                )
            except TimeoutError:
                note_problem(f"cold start: the generic pool did not refill to {wait_pool} in 10 s")
        if settle_s:
            time.sleep(settle_s)
        t0 = time.perf_counter_ns()
        inv = client.invoke("noop", None, force_cold=True)
        elapsed_ms = (time.perf_counter_ns() - t0) / 1e6
        if i < WARMUP:
            continue
        if inv.error is not None:
            errors.append(str(inv.error.get("errorMessage", inv.error))[:200])
            continue
        report = inv.report
        assert report is not None
        if not report.cold:
            not_cold += 1
            continue
        latencies.append(elapsed_ms)
        init_ms.append(report.init_ms or 0.0)
        outside_ms.append(elapsed_ms - (report.init_ms or 0.0) - report.duration_ms)
        sources[report.source] += 1
        by_phase = phases.setdefault(report.source, {})
        for phase, us in report.phases_us.items():
            by_phase.setdefault(phase, []).append(us)
        records.append(
            {"latency_ms": elapsed_ms, "outside_ms": outside_ms[-1],
             "init_ms": report.init_ms or 0.0, "phases_us": dict(report.phases_us)}
        )  # fmt: skip
    return {
        "latency_ms": summarize(latencies),
        "latencies_ms": latencies,
        "init_ms": summarize(init_ms),
        "outside_init_ms": summarize(outside_ms),
        "sources": dict(sources),
        "phases_us": {
            source: {phase: sum(v) / len(v) for phase, v in by_phase.items()}
            for source, by_phase in phases.items()
        },
        "phase_percentiles_us": {
            source: {phase: summarize(v) for phase, v in by_phase.items()}
            for source, by_phase in phases.items()
        },
        "slowest": sorted(records, key=lambda r: -float(r["latency_ms"]))[:TAIL_KEPT],
        "errors": len(errors),
        "error_samples": errors[:5],
        "not_cold": not_cold,
    }


def run(settings: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    common = {"idle_ttl_s": 3600.0}
    ready = {"pool_size": POOL_SIZE, **common}
    with BenchDaemon("cold", settings.work_dir, ready) as daemon, daemon.client() as c:
        c.deploy("noop", EXAMPLES / "noop")
        results["pool_ready"] = measure(c, settings.cold_n, POOL_SIZE, SETTLE_S)
        _print("pool ready", results["pool_ready"])
        results["force_cold"] = measure(c, settings.cold_n, None, 0.0)
        _print("force cold", results["force_cold"])
    empty = {"pool_size": 0, "pool_max": 0, **common}
    with BenchDaemon("fork", settings.work_dir, empty) as daemon, daemon.client() as c:
        c.deploy("noop", EXAMPLES / "noop")
        results["pool_empty"] = measure(c, settings.cold_n, None, SETTLE_S)
        _print("pool empty", results["pool_empty"])
    for mode, result in results.items():
        if result["errors"]:
            note_problem(
                f"cold start ({mode}): {result['errors']} of {settings.cold_n} invocations "
                f"failed, e.g. {result['error_samples'][0]}"
            )
        if result["not_cold"]:
            note_problem(
                f"cold start ({mode}): {result['not_cold']} force_cold invocations were served warm"
            )
    if set(results["pool_empty"]["sources"]) - {"fork"}:
        note_problem(
            "cold start: with pool_size = pool_max = 0 some cold starts still came from the "
            f"pool: {results['pool_empty']['sources']}"
        )
    results["pool_time_phases"] = list(POOL_TIME_PHASES)
    return results


def _print(label: str, result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    if not lat.get("n"):
        print(f"    {label:10s} no successful cold invocation", flush=True)
        return
    print(
        f"    {label:10s} p50 {lat['p50']:6.2f} ms  p99 {lat['p99']:6.2f} ms  "
        f"max {lat['max']:6.2f} ms  sources {result['sources']}",
        flush=True,
    )
