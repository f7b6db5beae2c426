"""Metering: the per-invocation report (Lambda's REPORT line) and per-function statistics."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final


@dataclass(frozen=True)
class Report:
    """What one invocation cost. Times in milliseconds unless the name says otherwise."""

    request_id: str
    duration_ms: float  # handler start to end, measured inside the sandbox (monotonic clock)
    billed_ms: int  # duration rounded up to the millisecond (at least 1)
    memory_mb: int  # the function's memory size
    max_memory_used_mb: int  # the sandbox cgroup's peak (the whole environment, as on Lambda)
    init_ms: float | None  # specialization + handler import; None when warm
    cold: bool
    source: str  # "warm", "pool" (specialized a pre-forked sandbox) or "fork" (forked on demand)
    version: str
    queue_us: int = 0  # time spent waiting for concurrency
    phases_us: dict[str, int] = field(default_factory=dict)  # cold start anatomy

    def to_wire(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "duration_ms": self.duration_ms,
            "billed_ms": self.billed_ms,
            "memory_mb": self.memory_mb,
            "max_memory_used_mb": self.max_memory_used_mb,
            "init_ms": self.init_ms,
            "cold": self.cold,
            "source": self.source,
            "version": self.version,
            "queue_us": self.queue_us,
            "phases_us": self.phases_us,
        }

    def line(self) -> str:
        """Lambda's tab-separated REPORT line."""
        text = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB\t"
        )
        if self.init_ms is not None:
            text += f"Init Duration: {self.init_ms:.2f} ms\t"
        return text


PENDING_DURATIONS_MAX: Final = 100_000


def billed(duration_ms: float) -> int:
    return max(1, math.ceil(round(duration_ms, 6)))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class FunctionStats:
    invocations: int = 0
    errors: int = 0  # function errors (Handled + Unhandled)
    throttles: int = 0
    cold_starts: int = 0
    concurrent: int = 0  # busy sandboxes right now
    max_concurrent: int = 0
    gb_seconds: float = 0.0
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    # Durations not yet rolled up into the persisted per-minute histogram (lambdad/rollups.py
    # takes them every few seconds; bounded in case nothing does).
    pending_durations: list[float] = field(default_factory=list)

    def record(self, report: Report | None, error: bool) -> None:
        self.invocations += 1
        if error:
            self.errors += 1
        if report is not None:
            self.cold_starts += report.cold
            self.durations.append(report.duration_ms)
            if len(self.pending_durations) < PENDING_DURATIONS_MAX:
                self.pending_durations.append(report.duration_ms)
            self.gb_seconds += report.billed_ms / 1000 * report.memory_mb / 1024

    def to_wire(self) -> dict[str, Any]:
        d = sorted(self.durations)
        return {
            "invocations": self.invocations,
            "errors": self.errors,
            "throttles": self.throttles,
            "cold_starts": self.cold_starts,
            "concurrent": self.concurrent,
            "max_concurrent": self.max_concurrent,
            "gb_seconds": round(self.gb_seconds, 6),
            "duration_ms": {
                "p50": percentile(d, 0.5),
                "p90": percentile(d, 0.9),
                "p99": percentile(d, 0.99),
                "max": d[-1] if d else 0.0,
            },
        }


def merge(stats: list[FunctionStats]) -> dict[str, Any]:
    """Host-wide statistics: counters summed, percentiles over every function's durations."""
    # Unbounded: a bounded deque would keep only the last functions' samples and skew the
    # percentiles towards them.
    total = FunctionStats(durations=deque())
    for s in stats:
        total.invocations += s.invocations
        total.errors += s.errors
        total.throttles += s.throttles
        total.cold_starts += s.cold_starts
        total.concurrent += s.concurrent
        total.max_concurrent = max(total.max_concurrent, s.max_concurrent)
        total.gb_seconds += s.gb_seconds
        total.durations.extend(s.durations)
    return total.to_wire()
