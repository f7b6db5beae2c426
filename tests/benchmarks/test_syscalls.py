"""benchmarks.syscalls' reading of ``strace -c`` summaries (pure logic)."""

from __future__ import annotations

from benchmarks.syscalls import parse_summary

SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 32.44    0.031252           4      6336           write
 22.15    0.021336           3      6345      2109 read
  7.19    0.006929           3      2109           pread64
  0.62    0.000593           5       105         5 futex
------ ----------- ----------- --------- --------- ----------------
100.00    0.096338           3     27803      2114 total
"""


def test_calls_are_read_per_system_call_with_or_without_an_errors_column() -> None:
    assert parse_summary(SUMMARY) == {"write": 6336, "read": 6345, "pread64": 2109, "futex": 105}


def test_strace_chatter_and_an_empty_summary_give_nothing() -> None:
    assert parse_summary("strace: Process 11611 attached\nstrace: Process 11611 detached\n") == {}
    assert parse_summary("") == {}
