"""WarmPool: the idle/busy bookkeeping of specialized sandboxes, with fake sandboxes."""

from __future__ import annotations

import pytest

from lambdad.errors import TooManyRequests
from lambdad.hostbudget import Budget
from lambdad.placement import WarmPool
from lambdad.sandboxes import TRANSITIONS, IllegalTransition, State


class FakeSandbox:
    def __init__(self, id: str, version: int = 1, memory_mb: int = 128) -> None:
        self.id = id
        self.state = State.SPECIALIZING
        self.version: int | None = version
        self.memory_mb = memory_mb
        self.pids_max = 64
        self.last_used = 0.0
        self.retired = False
        self.freezable = True
        self.thaws = True

    @property
    def alive(self) -> bool:
        return self.state is not State.DEAD

    def move(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state} -> {new}")
        self.state = new

    def retire(self) -> None:
        self.retired = True
        self.state = State.DEAD

    def kill(self) -> None:
        self.state = State.DEAD

    def freeze(self) -> bool:
        return self.freezable

    def thaw(self) -> bool:
        return self.thaws


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock: Clock) -> WarmPool[FakeSandbox]:
    return WarmPool(clock)


def _warm(pool: WarmPool[FakeSandbox], name: str, *sandboxes: FakeSandbox) -> None:
    state = pool.state(name)
    for sandbox in sandboxes:
        pool.add(state, sandbox)
        sandbox.move(State.BUSY)
        pool.put_back(state, sandbox)


def test_take_is_lifo_and_marks_busy(pool: WarmPool[FakeSandbox], clock: Clock) -> None:
    a, b = FakeSandbox("a"), FakeSandbox("b")
    _warm(pool, "f", a, b)
    state = pool.state("f")
    assert pool.take(state, 1) is b and b.state is State.BUSY
    assert pool.take(state, 1) is a
    assert pool.take(state, 1) is None
    assert state.sandboxes == {a, b}  # busy ones still count


def test_take_skips_dead_keeps_other_versions_and_thaws(pool: WarmPool[FakeSandbox]) -> None:
    other, dead, frozen, broken = (FakeSandbox(n) for n in ("other", "dead", "frozen", "broken"))
    _warm(pool, "f", frozen, broken, other, dead)
    other.version = 0
    dead.kill()
    frozen.move(State.FROZEN)
    broken.move(State.FROZEN)
    broken.thaws = False
    state = pool.state("f")
    assert pool.take(state, 1) is frozen and frozen.state is State.BUSY
    assert dead not in state.sandboxes
    # Another version's sandbox (the other side of a weighted alias) stays warm and idle.
    assert not other.retired and other in state.sandboxes and state.idle == [other]
    assert broken.state is State.DEAD and broken not in state.sandboxes
    assert pool.take(state, 0) is other and state.idle == []


def test_take_tells_versions_apart_by_key_not_number(pool: WarmPool[FakeSandbox]) -> None:
    # Two unpublished $LATESTs are both number 0: their keys (number:content) differ.
    old = FakeSandbox("old")
    old.version = "0:aaa"  # type: ignore[assignment]
    _warm(pool, "f", old)
    state = pool.state("f")
    assert pool.take(state, "0:bbb") is None and state.idle == [old]
    pool.retire_idle_except(state, {"0:bbb"})
    assert old.retired and state.idle == []


def test_put_back_coldest_goes_to_the_far_end(pool: WarmPool[FakeSandbox]) -> None:
    hot, provisioned = FakeSandbox("hot"), FakeSandbox("provisioned")
    _warm(pool, "f", hot)
    state = pool.state("f")
    pool.add(state, provisioned)
    pool.put_back(state, provisioned, coldest=True)
    assert state.idle == [provisioned, hot]


def test_evict_lru_retires_least_recently_used_first(
    pool: WarmPool[FakeSandbox], clock: Clock
) -> None:
    a, b, c = (FakeSandbox(n, memory_mb=100) for n in "abc")
    for sandbox in (a, b, c):
        _warm(pool, sandbox.id, sandbox)
        clock.now += 1
    assert pool.memory_in_use() == 300
    budget = Budget(memory_mb=350, pids=10_000)
    pool.evict_lru(50, 64, budget)  # room already: nothing retired
    assert not any(s.retired for s in (a, b, c))
    pool.evict_lru(150, 64, budget)  # 300 + 150 > 350: one (the oldest) must go
    assert a.retired and not b.retired and not c.retired


def test_evict_lru_makes_room_in_the_task_budget_too(
    pool: WarmPool[FakeSandbox], clock: Clock
) -> None:
    a, b = (FakeSandbox(n, memory_mb=100) for n in "ab")
    for sandbox in (a, b):
        _warm(pool, sandbox.id, sandbox)
        clock.now += 1
    pool.evict_lru(100, 64, Budget(memory_mb=10_000, pids=3 * 64))
    assert not a.retired and not b.retired
    pool.evict_lru(100, 128, Budget(memory_mb=10_000, pids=3 * 64))  # 128 + 128 > 192
    assert a.retired and not b.retired


def test_evict_lru_fails_when_busy_sandboxes_fill_the_budget(pool: WarmPool[FakeSandbox]) -> None:
    busy = FakeSandbox("busy", memory_mb=300)
    _warm(pool, "f", busy)
    pool.take(pool.state("f"), 1)
    with pytest.raises(TooManyRequests, match="memory budget of 350 MB"):
        pool.evict_lru(100, 64, Budget(memory_mb=350, pids=10_000))
    assert not busy.retired


def test_sweep_expires_keeps_min_warm_and_freezes(
    pool: WarmPool[FakeSandbox], clock: Clock
) -> None:
    a, b, c = FakeSandbox("a"), FakeSandbox("b"), FakeSandbox("c")
    _warm(pool, "f", a, b)
    _warm(pool, "g", c)
    clock.now += 2  # past freeze_after (1 s), not past the TTL
    pool.sweep(idle_ttl_s=10, freeze_after_s=1, min_warm=lambda name: 0)
    assert {s.state for s in (a, b, c)} == {State.FROZEN}
    clock.now += 20  # past the TTL: f keeps its min_warm of 1, g keeps none
    pool.sweep(idle_ttl_s=10, freeze_after_s=1, min_warm=lambda name: 1 if name == "f" else 0)
    assert sum(s.retired for s in (a, b)) == 1 and len(pool.state("f").sandboxes) == 1
    assert c.retired and not pool.state("g").sandboxes


def test_sweep_forgets_dead_idle_sandboxes(pool: WarmPool[FakeSandbox]) -> None:
    a = FakeSandbox("a")
    _warm(pool, "f", a)
    a.kill()
    pool.sweep(idle_ttl_s=10, freeze_after_s=1, min_warm=lambda name: 0)
    assert not pool.state("f").sandboxes and not pool.state("f").idle


def test_new_version_retires_idle_old_ones(pool: WarmPool[FakeSandbox]) -> None:
    old, new = FakeSandbox("old", version=1), FakeSandbox("new", version=2)
    _warm(pool, "f", old, new)
    pool.retire_idle_except(pool.state("f"), {2})
    assert old.retired and not new.retired and pool.state("f").idle == [new]


def test_drop_retires_all_but_busy_and_forgets_the_function(pool: WarmPool[FakeSandbox]) -> None:
    idle, busy = FakeSandbox("idle"), FakeSandbox("busy")
    _warm(pool, "f", idle, busy)
    state = pool.state("f")
    assert pool.take(state, 1) is busy
    pool.drop("f")
    assert idle.retired and not busy.retired
    assert not pool.current(state)  # a busy sandbox's release sees the function is gone
    assert pool.state("f") is not state
