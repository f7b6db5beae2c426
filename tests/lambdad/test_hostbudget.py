"""The host-wide budgets across live sandboxes (lambdad/hostbudget.py): pure logic."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdad.errors import TooManyRequests
from lambdad.hostbudget import (
    MAX_PIDS_PER_SANDBOX,
    Budget,
    Claim,
    HostLimits,
    make_room,
    pids_budget,
)
from lambdad.scheduler import ACCOUNT_EXCEEDED
from sandbox.rlimits import MAX_NPROC


def test_the_daemon_and_the_sandbox_agree_on_the_per_sandbox_cap() -> None:
    assert MAX_PIDS_PER_SANDBOX == MAX_NPROC


def test_host_limits_are_read_from_proc_sys(tmp_path: Path) -> None:
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "pid_max").write_text("32768\n")
    (tmp_path / "kernel" / "threads-max").write_text("95000\n")
    assert HostLimits.read(str(tmp_path)) == HostLimits(pid_max=32768, threads_max=95000)
    assert HostLimits.read().pid_max > 0  # this host's


def test_the_budget_is_a_share_of_the_smaller_limit() -> None:
    assert pids_budget(HostLimits(32768, 95000)) == 16384
    assert pids_budget(HostLimits(4194304, 60000), share=0.25) == 15000
    with pytest.raises(ValueError, match="share"):
        pids_budget(HostLimits(32768, 95000), share=1.0)


def test_the_reported_attack_is_throttled_before_it_exhausts_pid_max() -> None:
    """Issue 12: nine sandboxes at pids_max 4096 held all of a 32,768 pid_max. Even at the
    per-sandbox cap, warm busy sandboxes stop at the budget, half of pid_max."""
    budget = Budget(memory_mb=10**9, pids=pids_budget(HostLimits(32768, 10**6)))
    claims: list[Claim] = []
    with pytest.raises(TooManyRequests, match="process budget of 16384") as info:
        for i in range(64):
            make_room(claims, 128, MAX_PIDS_PER_SANDBOX, budget)
            claims.append(Claim(f"s{i}", 128, MAX_PIDS_PER_SANDBOX, False, float(i)))
    assert info.value.details["reason"] == ACCOUNT_EXCEEDED
    assert sum(c.pids for c in claims) == 16384 and len(claims) == 16


def test_idle_sandboxes_are_retired_least_recently_used_first() -> None:
    claims = [
        Claim("busy", 128, 600, False, 0.0),
        Claim("idle-new", 128, 300, True, 9.0),
        Claim("idle-old", 128, 300, True, 1.0),
    ]
    budget = Budget(memory_mb=4096, pids=1300)
    assert make_room(claims, 128, 100, budget) == []
    assert make_room(claims, 128, 300, budget) == ["idle-old"]
    assert make_room(claims, 128, 700, budget) == ["idle-old", "idle-new"]
    with pytest.raises(TooManyRequests, match="process budget"):
        make_room(claims, 128, 701, budget)


def test_the_memory_budget_keeps_its_message() -> None:
    with pytest.raises(TooManyRequests, match="memory budget of 256 MB is in use"):
        make_room([Claim("a", 200, 64, False, 0.0)], 128, 64, Budget(256, 10_000))


claims_strategy = st.lists(
    st.builds(Claim, key=st.uuids().map(str), memory_mb=st.integers(64, 10240),
              pids=st.integers(8, 1024), idle=st.booleans(),
              last_used=st.floats(0, 1e6, allow_nan=False)),
    max_size=30, unique_by=lambda c: c.key,
)


@given(claims=claims_strategy, memory_mb=st.integers(64, 10240), pids=st.integers(8, 1024),
       budget_mb=st.integers(0, 100_000), budget_pids=st.integers(0, 20_000))
def test_a_plan_is_the_shortest_lru_prefix_of_idle_sandboxes_that_makes_room(
    claims: list[Claim], memory_mb: int, pids: int, budget_mb: int, budget_pids: int
) -> None:
    budget = Budget(budget_mb, budget_pids)
    idle = sorted((c for c in claims if c.idle), key=lambda c: c.last_used)

    def fits_without(keys: set[str]) -> bool:
        kept = [c for c in claims if c.key not in keys]
        return (sum(c.memory_mb for c in kept) + memory_mb <= budget_mb
                and sum(c.pids for c in kept) + pids <= budget_pids)

    try:
        plan = make_room(claims, memory_mb, pids, budget)
    except TooManyRequests:
        assert not fits_without({c.key for c in idle})
        return
    assert plan == [c.key for c in idle[: len(plan)]]
    assert fits_without(set(plan))
    assert not plan or not fits_without(set(plan[:-1]))
