"""Placement: which warm sandbox serves an invocation, and the bookkeeping behind it.

:class:`WarmPool` owns every specialized sandbox's place: the per-function set of live
sandboxes and the idle list (most recently used last: LIFO keeps the hottest caches). Nothing
else edits those collections; callers ``take``, ``put_back``, ``add``, ``discard``,
``evict_lru`` and ``sweep``. The generic (unspecialized) pools are
:class:`lambdad.sandboxes.GenericPool`.

It works on anything shaped like :class:`WarmSandbox` (the daemon's
:class:`~lambdad.sandboxes.Sandbox`, or a fake in unit tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from lambdad.hostbudget import Budget, Claim, make_room
from lambdad.metering import FunctionStats
from lambdad.sandboxes import State

INITIALIZED = frozenset({State.IDLE, State.BUSY, State.FROZEN})


class WarmSandbox(Protocol):
    id: str
    state: State
    memory_mb: int
    pids_max: int
    last_used: float

    @property
    def version(self) -> object:
        """What it is specialized for: a version's ``key`` (number and content address)."""

    @property
    def alive(self) -> bool: ...
    def move(self, new: State) -> None: ...
    def retire(self) -> None: ...
    def kill(self) -> None: ...
    def freeze(self) -> bool: ...
    def thaw(self) -> bool: ...


S = TypeVar("S", bound=WarmSandbox)


@dataclass
class FunctionState(Generic[S]):
    """Run-time state of one function (the registry holds its configuration)."""

    name: str
    idle: list[S] = field(default_factory=list)  # warm and waiting, most recent last
    sandboxes: set[S] = field(default_factory=set)  # every specialized, live sandbox
    provisioning: int = 0  # min_warm specializations in flight
    provision_failures: int = 0  # consecutive min_warm Init failures (for the backoff)
    provision_after: float = 0.0  # monotonic time before which min_warm is not retried
    stats: FunctionStats = field(default_factory=FunctionStats)

    def counts(self) -> tuple[int, int, int, int]:
        """(warm, initializing, idle, frozen)."""
        return (
            sum(1 for s in self.sandboxes if s.state in INITIALIZED),
            sum(1 for s in self.sandboxes if s.state is State.SPECIALIZING),
            len(self.idle),
            sum(1 for s in self.idle if s.state is State.FROZEN),
        )


class WarmPool(Generic[S]):
    """Every function's specialized sandboxes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.functions: dict[str, FunctionState[S]] = {}
        self.clock = clock

    def state(self, name: str) -> FunctionState[S]:
        """The function's run-time state, created on first use."""
        state = self.functions.get(name)
        if state is None:
            state = self.functions[name] = FunctionState(name)
        return state

    def current(self, state: FunctionState[S]) -> bool:
        """False once the function was deleted (its state is no longer ours)."""
        return self.functions.get(state.name) is state

    def __iter__(self) -> Iterator[FunctionState[S]]:
        return iter(list(self.functions.values()))

    # -- one sandbox -------------------------------------------------------------------

    def add(self, state: FunctionState[S], sandbox: S) -> None:
        """A sandbox being specialized for this function counts from now on."""
        state.sandboxes.add(sandbox)

    def discard(self, state: FunctionState[S], sandbox: S) -> None:
        """Forget a sandbox (dead, retired, or never to be reused)."""
        state.sandboxes.discard(sandbox)
        if sandbox in state.idle:
            state.idle.remove(sandbox)

    def take(self, state: FunctionState[S], version: object) -> S | None:
        """The most recently used live idle sandbox of ``version`` (a version's key), now
        BUSY; None if none.

        Dead ones are forgotten and frozen ones thawed on the way; idle sandboxes of the
        function's other live versions (an alias routes between two) stay where they are —
        :meth:`retire_idle_except` retires the ones no version needs any more."""
        idle = state.idle
        index = len(idle)
        while index:
            index -= 1
            sandbox = idle[index]
            if not sandbox.alive:
                del idle[index]
                state.sandboxes.discard(sandbox)
                continue
            if sandbox.version != version:
                continue
            del idle[index]
            if sandbox.state is State.FROZEN and not sandbox.thaw():
                sandbox.kill()
                state.sandboxes.discard(sandbox)
                continue
            sandbox.move(State.BUSY)
            return sandbox
        return None

    def put_back(self, state: FunctionState[S], sandbox: S, coldest: bool = False) -> None:
        """An initialized sandbox is idle again. ``coldest``: provisioned, not just used, so
        it goes to the far end (the hottest sandboxes are taken first)."""
        sandbox.move(State.IDLE)
        sandbox.last_used = self.clock()
        if coldest:
            state.idle.insert(0, sandbox)
        else:
            state.idle.append(sandbox)

    def retire(self, state: FunctionState[S], sandbox: S) -> None:
        self.discard(state, sandbox)
        sandbox.retire()

    # -- many --------------------------------------------------------------------------

    def retire_idle_except(self, state: FunctionState[S], live: Container[object]) -> None:
        """The function's versions changed: idle sandboxes of versions not in ``live`` (keys)
        retire now (busy ones when their invocation ends)."""
        for sandbox in [s for s in state.idle if s.version not in live]:
            self.retire(state, sandbox)

    def drop(self, name: str) -> None:
        """The function was deleted: retire what is not busy; busy sandboxes retire when
        their invocation ends (their state is no longer current)."""
        state = self.functions.pop(name, None)
        if state is None:
            return
        for sandbox in list(state.sandboxes):
            if sandbox.state is not State.BUSY:
                sandbox.retire()

    def memory_in_use(self) -> int:
        return sum(s.memory_mb for st in self.functions.values() for s in st.sandboxes)

    def evict_lru(self, memory_mb: int, pids: int, budget: Budget) -> None:
        """Make room for a sandbox of ``memory_mb`` and ``pids`` tasks within ``budget`` by
        retiring least recently used idle sandboxes; nothing is retired when even retiring all
        of them would not be enough.

        Raises:
            TooManyRequests: busy sandboxes fill the budget (the message names which one).
        """
        states = {s.id: st for st in self.functions.values() for s in st.sandboxes}
        idle = {s.id for st in self.functions.values() for s in st.idle}
        claims = [
            Claim(s.id, s.memory_mb, s.pids_max, s.id in idle, s.last_used)
            for st in self.functions.values()
            for s in st.sandboxes
        ]
        for key in make_room(claims, memory_mb, pids, budget):
            st = states[key]
            self.retire(st, next(s for s in st.idle if s.id == key))

    def sweep(
        self, idle_ttl_s: float, freeze_after_s: float, min_warm: Callable[[str], int]
    ) -> None:
        """Forget dead idle sandboxes, retire the expired ones (keeping ``min_warm``), freeze
        the ones idle longer than ``freeze_after_s``."""
        now = self.clock()
        for state in list(self.functions.values()):
            keep = len(state.sandboxes)
            floor = min_warm(state.name)
            for sandbox in list(state.idle):
                idle_for = now - sandbox.last_used
                if not sandbox.alive:
                    self.discard(state, sandbox)
                elif idle_for > idle_ttl_s and keep > floor:
                    self.retire(state, sandbox)
                    keep -= 1
                elif idle_for > freeze_after_s and sandbox.state is State.IDLE and sandbox.freeze():
                    sandbox.move(State.FROZEN)

    def busy_count(self) -> int:
        return sum(s.stats.concurrent for s in self.functions.values())
