"""Metering accuracy: the report's duration against the handler's own measurement.

``examples/sleeper`` times itself with ``time.monotonic_ns()`` and returns ``slept_ms``; the
report's ``duration_ms`` is measured by the runtime around the handler call. Their difference
is the metering error (SPEC §10: within 0.2 ms). Billing is checked on every invocation:
``billed_ms == max(1, ceil(duration_ms))`` for the duration the report states.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks.harness import EXAMPLES, BenchDaemon, Settings, note_problem, summarize

CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("sleep 10 ms", {"ms": 10}),
    ("sleep 50 ms", {"ms": 50}),
    ("sleep 100 ms", {"ms": 100}),
    ("spin 20 ms", {"ms": 20, "spin": True}),
)


def expected_billed(duration_ms: float) -> int:
    # The reported duration has three decimals; tolerate float noise below that.
    return max(1, math.ceil(duration_ms - 1e-9))


def run(settings: Settings) -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    all_abs: list[float] = []
    mismatches: list[dict[str, Any]] = []
    config = {"idle_ttl_s": 3600.0}
    with BenchDaemon("metering", settings.work_dir, config) as daemon, daemon.client() as c:
        c.deploy("sleeper", EXAMPLES / "sleeper", timeout_s=10)
        c.invoke("sleeper", {"ms": 1})
        for label, event in CASES:
            errors_ms: list[float] = []
            durations: list[float] = []
            failures = 0
            for _ in range(settings.metering_n):
                inv = c.invoke("sleeper", event)
                if inv.error is not None or inv.report is None:
                    failures += 1
                    continue
                report = inv.report
                own = float(inv.result["slept_ms"])
                errors_ms.append(report.duration_ms - own)
                durations.append(report.duration_ms)
                if report.billed_ms != expected_billed(report.duration_ms):
                    mismatches.append(
                        {
                            "case": label,
                            "duration_ms": report.duration_ms,
                            "billed_ms": report.billed_ms,
                            "expected_billed_ms": expected_billed(report.duration_ms),
                        }
                    )
            abs_err = [abs(e) for e in errors_ms]
            all_abs += abs_err
            abs_stats = summarize(abs_err)
            case: dict[str, Any] = {
                "case": label,
                "event": event,
                "error_ms": summarize(errors_ms),
                "abs_error_ms": abs_stats,
                "duration_ms": summarize(durations),
                "failures": failures,
            }
            cases.append(case)
            print(
                f"    {label:13s} |reported - own| p50 {abs_stats.get('p50', 0):.3f} ms "
                f"p99 {abs_stats.get('p99', 0):.3f} ms max {abs_stats.get('max', 0):.3f} ms",
                flush=True,
            )
            if failures:
                note_problem(f"metering: {failures} invocations of {label} failed")
    if mismatches:
        note_problem(
            f"metering: billed_ms != ceil(duration_ms) on {len(mismatches)} invocations, "
            f"e.g. {mismatches[0]}"
        )
    return {
        "cases": cases,
        "abs_error_ms": summarize(all_abs),
        "billing_checked": sum(c["duration_ms"].get("n", 0) for c in cases),
        "billing_mismatches": mismatches[:20],
        "billing_mismatch_count": len(mismatches),
    }
