"""Metering: the REPORT line, billed rounding, percentiles, per-function and merged stats."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdad.metering import (
    LINK_SLACK_MS,
    FunctionStats,
    Report,
    billed,
    bounded_duration,
    link_slack_ms,
    merge,
    percentile,
)

# From the issue: Lambda's line, tab-separated, Init Duration only on cold starts.
REPORT_RE = re.compile(
    r"^REPORT RequestId: [0-9a-f-]{36}\tDuration: \d+\.\d{2} ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: \d+ MB\tMax Memory Used: \d+ MB(\tInit Duration: \d+\.\d{2} ms)?\t?$"
)
REQUEST_ID = "8f5b2f0e-3c1d-4a8e-9b7a-2d4c6e8f0a1b"


def report(
    duration_ms: float = 12.34,
    init_ms: float | None = None,
    memory_mb: int = 128,
    billed_ms: int | None = None,
    request_id: str = REQUEST_ID,
) -> Report:
    return Report(
        request_id=request_id,
        duration_ms=duration_ms,
        billed_ms=billed(duration_ms) if billed_ms is None else billed_ms,
        memory_mb=memory_mb,
        max_memory_used_mb=41,
        init_ms=init_ms,
        cold=init_ms is not None,
        source="warm" if init_ms is None else "pool",
        version="1",
    )


def test_warm_report_line() -> None:
    line = report().line()

    assert line == (
        f"REPORT RequestId: {REQUEST_ID}\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 41 MB\t"
    )
    match = REPORT_RE.match(line)
    assert match is not None
    assert match.group(1) is None
    assert "Init Duration" not in line


def test_cold_report_line_ends_with_init_duration() -> None:
    line = report(init_ms=4.214).line()

    assert line == (
        f"REPORT RequestId: {REQUEST_ID}\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 41 MB\tInit Duration: 4.21 ms\t"
    )
    match = REPORT_RE.match(line)
    assert match is not None
    assert match.group(1) == "\tInit Duration: 4.21 ms"


@settings(max_examples=200, deadline=None)
@given(
    duration=st.floats(0, 900_000, allow_nan=False),
    init=st.none() | st.floats(0, 60_000, allow_nan=False),
    memory=st.integers(64, 10240),
)
def test_every_report_line_matches_lambdas_format(
    duration: float, init: float | None, memory: int
) -> None:
    line = report(duration, init, memory, request_id=str(uuid.uuid4())).line()
    match = REPORT_RE.match(line)
    assert match is not None, line
    assert (match.group(1) is not None) == (init is not None)
    assert "\n" not in line


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (0.0, 1),  # nothing is free: at least 1 ms
        (0.01, 1),
        (0.999, 1),
        (1.0, 1),
        (1.0001, 2),
        (12.34, 13),
        (13.0, 13),
        (0.1 + 0.2 + 0.7, 1),  # 1.0000000000000002: float noise is not a millisecond
        (899_999.5, 900_000),
    ],
)
def test_billed_rounds_up_to_the_millisecond(duration: float, expected: int) -> None:
    assert billed(duration) == expected


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 10**7, allow_nan=False))
def test_billed_is_the_smallest_whole_millisecond_covering_the_duration(d: float) -> None:
    b = billed(d)
    assert b >= 1
    assert b >= d - 1e-6
    assert b - 1 < max(d, 1)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.9) == 90.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0
    assert percentile([], 0.5) == 0.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 2.0], 0.5) == 1.0
    assert percentile([1.0, 2.0], 0.51) == 2.0


def test_function_stats_record_and_wire() -> None:
    stats = FunctionStats()
    stats.record(report(10.0, init_ms=5.0, memory_mb=1024, billed_ms=1000), error=False)
    stats.record(report(20.0, memory_mb=1024, billed_ms=500), error=True)
    stats.record(None, error=True)  # a platform failure before any report
    stats.throttles = 2
    stats.concurrent = 1
    stats.max_concurrent = 3

    assert stats.to_wire() == {
        "invocations": 3,
        "errors": 2,
        "throttles": 2,
        "cold_starts": 1,
        "concurrent": 1,
        "max_concurrent": 3,
        "gb_seconds": 1.5,  # 1 s at 1 GB + 0.5 s at 1 GB
        "duration_ms": {"p50": 10.0, "p90": 20.0, "p99": 20.0, "max": 20.0},
    }


def test_empty_stats() -> None:
    wire = FunctionStats().to_wire()
    assert wire["invocations"] == 0
    assert wire["duration_ms"] == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}


def test_durations_are_a_bounded_window() -> None:
    stats = FunctionStats()
    for i in range(3000):
        stats.record(report(float(i)), error=False)

    assert stats.invocations == 3000
    assert len(stats.durations) == 2048
    assert stats.to_wire()["duration_ms"]["max"] == 2999.0
    assert min(stats.durations) == 3000 - 2048


def test_merge_sums_counters_and_pools_durations() -> None:
    a, b = FunctionStats(), FunctionStats()
    for d in (1.0, 2.0, 3.0):
        a.record(report(d), error=False)
    b.record(report(100.0, init_ms=1.0), error=True)
    a.throttles, b.throttles = 1, 4
    a.concurrent, b.concurrent = 2, 1
    a.max_concurrent, b.max_concurrent = 5, 3

    merged = merge([a, b])

    assert merged["invocations"] == 4
    assert merged["errors"] == 1
    assert merged["throttles"] == 5
    assert merged["cold_starts"] == 1
    assert merged["concurrent"] == 3
    assert merged["max_concurrent"] == 5
    assert merged["gb_seconds"] == round(a.gb_seconds + b.gb_seconds, 6)
    assert merged["duration_ms"] == {"p50": 2.0, "p90": 100.0, "p99": 100.0, "max": 100.0}
    assert merge([]) == FunctionStats().to_wire()


def test_merge_weighs_every_function_not_just_the_last_ones() -> None:
    fast, slow = FunctionStats(), FunctionStats()
    for _ in range(2048):
        fast.record(report(1.0), error=False)
        slow.record(report(100.0), error=False)

    merged = merge([fast, fast, slow])

    # 2/3 of all samples are 1 ms: the host-wide median is 1 ms, not 100.
    assert merged["duration_ms"]["p50"] == 1.0
    assert merged["duration_ms"]["p90"] == 100.0


def test_report_to_wire() -> None:
    r = report(init_ms=2.5)
    wire = r.to_wire()

    assert wire == {
        "request_id": REQUEST_ID,
        "duration_ms": 12.34,
        "billed_ms": 13,
        "memory_mb": 128,
        "max_memory_used_mb": 41,
        "init_ms": 2.5,
        "cold": True,
        "source": "pool",
        "version": "1",
        "queue_us": 0,
        "phases_us": {},
        "trace_id": "",
    }


def test_an_honest_claim_inside_the_round_trip_is_reported_as_is() -> None:
    assert bounded_duration(12.34, 12.40, LINK_SLACK_MS) == 12.34


def test_a_claim_far_below_the_round_trip_is_raised_to_it_less_the_slack() -> None:
    # The handler said 10 us for a 300 ms round trip: billed 299 ms, never 1.
    assert bounded_duration(0.01, 300.0, LINK_SLACK_MS) == 300.0 - LINK_SLACK_MS


def test_a_claim_above_the_round_trip_is_cut_to_it() -> None:
    assert bounded_duration(5000.0, 42.0, LINK_SLACK_MS) == 42.0


def test_the_slack_grows_with_what_was_copied() -> None:
    assert link_slack_ms(0) == LINK_SLACK_MS
    assert LINK_SLACK_MS < link_slack_ms(6 * 2**20) < LINK_SLACK_MS + 200


@given(
    claimed=st.floats(-1e9, 1e9),
    roundtrip=st.floats(0, 1e6),
    size=st.integers(0, 12 * 2**20),
)
def test_a_lie_gains_at_most_the_slack(claimed: float, roundtrip: float, size: int) -> None:
    slack = link_slack_ms(size)
    reported = bounded_duration(claimed, roundtrip, slack)
    assert roundtrip - slack <= reported <= roundtrip


def test_report_line_of_a_failed_invocation() -> None:
    """Lambda appends Status (and Error Type) to a failed invocation's REPORT, after Init."""
    failed = dataclasses.replace(
        report(init_ms=2.5), status="error", error_type="Runtime.ExitError"
    )
    assert failed.line().endswith(
        "Init Duration: 2.50 ms\tStatus: error\tError Type: Runtime.ExitError\t"
    )
    timed_out = dataclasses.replace(report(), status="timeout")
    assert timed_out.line().endswith("Max Memory Used: 41 MB\tStatus: timeout\t")
    assert failed.to_wire()["status"] == "error"
    assert failed.to_wire()["error_type"] == "Runtime.ExitError"
    assert "status" not in report().to_wire()
