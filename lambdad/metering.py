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
    # handler start to end, measured inside the sandbox (monotonic clock), bounded by the
    # daemon's own round trip (bounded_duration)
    duration_ms: float
    billed_ms: int  # duration rounded up to the millisecond (at least 1)
    memory_mb: int  # the function's memory size
    max_memory_used_mb: int  # the sandbox cgroup's peak (the whole environment, as on Lambda)
    init_ms: float | None  # specialization + handler import; None when warm
    cold: bool
    source: str  # "warm", "pool" (specialized a pre-forked sandbox) or "fork" (forked on demand)
    version: str
    queue_us: int = 0  # time spent waiting for concurrency
    phases_us: dict[str, int] = field(default_factory=dict)  # cold start anatomy
    trace_id: str = ""  # the X-Ray trace header the handler saw (_X_AMZN_TRACE_ID)
    # Lambda's fields for a failed invocation: "timeout" or "error" (with its error type,
    # e.g. Runtime.ExitError, Runtime.OutOfMemory); None when it ran to an answer.
    status: str | None = None
    error_type: str | None = None
    # A template's copy (source "template"): SnapStart's Restore Duration, billed like Init
    # Duration; init_ms is None then.
    restore_ms: float | None = None

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
            "trace_id": self.trace_id,
            **({"status": self.status, "error_type": self.error_type} if self.status else {}),
            **({"restore_ms": self.restore_ms} if self.restore_ms is not None else {}),
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
        if self.restore_ms is not None:
            text += (
                f"Restore Duration: {self.restore_ms:.2f} ms\t"
                f"Billed Restore Duration: {billed(self.restore_ms)} ms\t"
            )
        if self.status is not None:
            text += f"Status: {self.status}\t"
            if self.error_type is not None:
                text += f"Error Type: {self.error_type}\t"
        return text


PENDING_DURATIONS_MAX: Final = 100_000


def billed(duration_ms: float) -> int:
    return max(1, math.ceil(round(duration_ms, 6)))


# What a sandbox reports is a claim; the daemon's own round trip bounds it (docs/security.md,
# "Metering a function cannot forge"). The round trip holds the handler's interval plus the
# overhead around it: waking the sandbox, the runtime's JSON work, copying the messages both
# ways, waking the daemon.
LINK_SLACK_MS: Final = 1.0  # that overhead for small messages, with room: Lambda's granularity
# ... and for large ones, the copies between the daemon's transport and the runtime: measured
# 14 ns/byte p50, 20 max for 12 MB (6 MB each way) on a 2-core VM at load 17. The runtime's
# JSON work on a large payload can take longer (17 MB/s for many small objects): beyond this
# allowance it is billed, as on Lambda, where the platform times the runtime's next->response.
LINK_SLACK_NS_PER_BYTE: Final = 20.0


def link_slack_ms(message_bytes: int) -> float:
    """How much less than the daemon's round trip an honest sandbox may report, for an
    exchange that carried ``message_bytes`` of payload and result."""
    return LINK_SLACK_MS + message_bytes * LINK_SLACK_NS_PER_BYTE / 1e6


def bounded_duration(claimed_ms: float, roundtrip_ms: float, slack_ms: float) -> float:
    """The duration to report and bill: the sandbox's ``claimed_ms`` if it lies within
    [``roundtrip_ms`` - ``slack_ms``, ``roundtrip_ms``], else the nearer bound.

    The sandbox's interval is inside the daemon's round trip (the daemon's clock started
    before it sent the request and stopped after the answer came), so a claim above the round
    trip is impossible and one far below it is a lie: whatever the function does to its own
    clocks, it can shave at most ``slack_ms`` off what it is billed.
    """
    return min(max(claimed_ms, roundtrip_ms - slack_ms), roundtrip_ms)


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
