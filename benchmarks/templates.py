"""Function templates (issue 17 item 1): what forking a copy of an initialized template saves.

Two figures, each beside the same run's non-template number (same daemon, same functions but
for ``template = true``):

* **new sandbox of an initialized function**, client-observed: sequential invocations with
  ``force_cold`` (each needs a new sandbox, retired after it) of a function that was already
  invoked once. Without a template that is a pooled sandbox specialized and Init run; with one,
  a copy forked from the template. Two functions: ``stamp`` (trivial Init) and ``heavyinit``
  (imports a batch of the standard library, as a function imports its SDK).
* **scale-out**: N concurrent cold invocations of ``stamp`` that each hold their sandbox, as
  in the ``scale`` scenario (bring-up = latest handler start - burst sent; rate = N / that).
  N = 200 by default: a burst of 1,000 takes minutes on this 2-core VM shared with other work
  (and needs holds of ~15 s each), too long for a scenario run beside the others.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

from benchmarks.harness import FUNCTIONS, BenchDaemon, Settings, note_problem, summarize
from benchmarks.scale import _burst, _error_kind, hold_ms
from lambdad.errors import LambdadError

DAEMON_SETTINGS = {
    "pool_size": 4,
    "pool_max": 64,
    "global_concurrency": 4096,
    "memory_budget_mb": 1_000_000,
    "idle_ttl_s": 3600.0,
}


def new_sandbox_latency(
    daemon: BenchDaemon, function: str, template: bool, n: int
) -> dict[str, Any]:
    name = f"{function}-{'tpl' if template else 'plain'}"
    lat_ms: list[float] = []
    sources: Counter[str] = Counter()
    restore_ms: list[float] = []
    init_ms: list[float] = []
    with daemon.client() as c:
        c.deploy(name, FUNCTIONS / function, timeout_s=30, template=template)
        first = c.invoke(name, {"ms": 0})  # Init once (the template is made here)
        if first.error is not None:
            raise RuntimeError(f"{name}: {first.error}")
        for _ in range(n):
            t0 = time.perf_counter()
            inv = c.invoke(name, {"ms": 0}, force_cold=True)
            lat_ms.append((time.perf_counter() - t0) * 1000)
            assert inv.report is not None
            if inv.error is not None:
                note_problem(f"templates {name}: {inv.error}")
            sources[inv.report.source] += 1
            if inv.report.restore_ms is not None:
                restore_ms.append(inv.report.restore_ms)
            if inv.report.init_ms is not None:
                init_ms.append(inv.report.init_ms)
    out = {
        "client_ms": summarize(lat_ms),
        "sources": dict(sources),
        "restore_ms": summarize(restore_ms),
        "init_ms": summarize(init_ms),
    }
    print(
        f"    {name:18s} new sandbox p50 {out['client_ms']['p50']:7.2f} ms "
        f"p99 {out['client_ms']['p99']:7.2f} ms (sources {dict(sources)})",
        flush=True,
    )
    return out


def scale_out(daemon: BenchDaemon, n: int, template: bool) -> dict[str, Any]:
    name = f"burst{n}-{'tpl' if template else 'plain'}"
    hold = hold_ms(n) * (3 if template else 1)
    with daemon.client() as c:
        c.deploy(name, FUNCTIONS / "stamp", timeout_s=hold / 1000 + 60, template=template)
        c.invoke(name, {"ms": 0})  # initialized (with a template: made) before the burst
        # That sandbox stays warm; retire it so every invocation of the burst is cold.
        c.deploy(name, FUNCTIONS / "stamp", timeout_s=hold / 1000 + 61, template=template)
        if template:
            c.invoke(name, {"ms": 0}, force_cold=True)  # the new version's template
    t0, results = asyncio.run(_burst(daemon.socket, name, n, hold))
    starts_ms: list[float] = []
    sources: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for outcome, _done in results:
        if isinstance(outcome, LambdadError):
            errors[_error_kind(type(outcome).__name__, outcome.message)] += 1
            continue
        if outcome.error is not None:
            error = outcome.error
            errors[_error_kind(str(error.get("errorType")), str(error.get("errorMessage")))] += 1
            continue
        assert outcome.report is not None
        sources[outcome.report.source if outcome.report.cold else "warm"] += 1
        starts_ms.append((int(outcome.result["started_ns"]) - t0) / 1e6)
    starts_ms.sort()
    up_s = starts_ms[-1] / 1000 if starts_ms else math.nan
    rate = len(starts_ms) / up_s if starts_ms and up_s > 0 else 0.0
    print(
        f"    N={n} {'template' if template else 'plain':8s}: {len(starts_ms)} up in "
        f"{up_s:.3f} s = {rate:.0f}/s (sources {dict(sources)}, errors {dict(errors)})",
        flush=True,
    )
    if errors:
        note_problem(f"templates scale-out {name}: {dict(errors)}")
    return {
        "n": n,
        "hold_ms": hold,
        "started": len(starts_ms),
        "bring_up_s": up_s,
        "sandboxes_per_s": rate,
        "time_to_start_ms": summarize(starts_ms),
        "sources": dict(sources),
        "errors": dict(errors),
    }


def run(settings: Settings) -> dict[str, Any]:
    n_seq = 10 if settings.quick else 60
    n_burst = 50 if settings.quick else 200
    result: dict[str, Any] = {"new_sandbox": {}, "scale_out": {}}
    with BenchDaemon("templates", settings.work_dir, DAEMON_SETTINGS) as daemon:
        for function in ("stamp", "heavyinit"):
            result["new_sandbox"][function] = {
                "plain": new_sandbox_latency(daemon, function, False, n_seq),
                "template": new_sandbox_latency(daemon, function, True, n_seq),
            }
        result["scale_out"] = {
            "plain": scale_out(daemon, n_burst, False),
            "template": scale_out(daemon, n_burst, True),
        }
    for function, pair in result["new_sandbox"].items():
        plain, tpl = pair["plain"]["client_ms"]["p50"], pair["template"]["client_ms"]["p50"]
        print(
            f"    {function}: template p50 {tpl:.2f} ms vs plain {plain:.2f} ms = "
            f"{plain / tpl:.2f}x (target <= 1 ms: {'met' if tpl <= 1 else 'missed'})",
            flush=True,
        )
    plain_rate = result["scale_out"]["plain"]["sandboxes_per_s"]
    tpl_rate = result["scale_out"]["template"]["sandboxes_per_s"]
    ratio = tpl_rate / plain_rate if plain_rate else math.nan
    print(
        f"    scale-out N={n_burst}: template {tpl_rate:.0f}/s vs plain {plain_rate:.0f}/s = "
        f"{ratio:.2f}x (target >= 1,000/s at N = 1,000: "
        f"{'met' if tpl_rate >= 1000 else 'missed'}, measured at N = {n_burst})",
        flush=True,
    )
    return result
