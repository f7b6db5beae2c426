"""Admission control: one example per rule, then a hypothesis state machine against a model."""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from lambdad.scheduler import (
    ACCOUNT_EXCEEDED,
    RESERVED_EXCEEDED,
    Scheduler,
    Ticket,
    TicketState,
)

ADMITTED = TicketState.ADMITTED
WAITING = TicketState.WAITING
THROTTLED = TicketState.THROTTLED
RELEASED = TicketState.RELEASED


def states(tickets: list[Ticket]) -> list[TicketState]:
    return [t.state for t in tickets]


# ---------------------------------------------------------------------------------------------
# Examples, one rule each


def test_reserved_function_runs_up_to_its_limit_then_waits() -> None:
    s = Scheduler(global_limit=100, queue_max=10)
    s.set_reserved("f", 2)

    tickets = [s.request("f") for _ in range(3)]

    assert states(tickets) == [ADMITTED, ADMITTED, WAITING]
    assert s.busy["f"] == 2
    assert s.unreserved_busy == 0
    assert list(s.queue) == [tickets[2]]


def test_reserved_limit_ignores_other_functions_load() -> None:
    s = Scheduler(global_limit=3, queue_max=10)
    s.set_reserved("f", 1)
    others = [s.request("g") for _ in range(3)]  # the unreserved share is 3 - 1 = 2

    f = s.request("f")

    assert states(others) == [ADMITTED, ADMITTED, WAITING]
    assert f.state is ADMITTED


def test_zero_reserved_concurrency_throttles_immediately() -> None:
    s = Scheduler(global_limit=10, queue_max=10)
    s.set_reserved("off", 0)

    ticket = s.request("off")

    assert ticket.state is THROTTLED
    assert ticket.reason == RESERVED_EXCEEDED
    assert not s.queue
    assert s.busy["off"] == 0


def test_unreserved_functions_share_what_the_reservations_leave() -> None:
    s = Scheduler(global_limit=5, queue_max=0)
    s.set_reserved("r1", 2)
    s.set_reserved("r2", 1)
    assert s.unreserved_limit == 2

    a, b, c = s.request("a"), s.request("b"), s.request("a")

    assert states([a, b, c]) == [ADMITTED, ADMITTED, THROTTLED]
    assert c.reason == ACCOUNT_EXCEEDED
    assert s.unreserved_busy == 2


def test_max_reservation_keeps_the_unreserved_minimum_for_everyone_else() -> None:
    s = Scheduler(global_limit=1000, queue_max=10)
    assert s.max_reservation("a", keep_unreserved=100) == 900
    s.set_reserved("a", 600)
    assert s.max_reservation("b", keep_unreserved=100) == 300
    # A function's own current reservation does not count against its new one.
    assert s.max_reservation("a", keep_unreserved=100) == 900
    s.set_reserved("b", 300)
    assert s.max_reservation("c", keep_unreserved=100) == 0
    assert s.unreserved_limit == 100


def test_unreserved_limit_never_goes_negative() -> None:
    s = Scheduler(global_limit=2, queue_max=0)
    s.set_reserved("r", 5)
    assert s.unreserved_limit == 0
    assert s.request("u").state is THROTTLED


def test_release_admits_waiters_in_fifo_order() -> None:
    s = Scheduler(global_limit=1, queue_max=10)
    running = s.request("a")
    waiting = [s.request(name) for name in ("b", "c", "d")]
    assert states(waiting) == [WAITING] * 3

    admitted = s.release(running)

    assert running.state is RELEASED
    assert admitted == [waiting[0]]
    assert states(waiting) == [ADMITTED, WAITING, WAITING]
    assert s.release(waiting[0]) == [waiting[1]]
    assert s.release(waiting[1]) == [waiting[2]]
    assert s.release(waiting[2]) == []
    assert s.busy == collections.Counter()
    assert s.unreserved_busy == 0


def test_a_blocked_reserved_waiter_does_not_hold_up_other_pools() -> None:
    s = Scheduler(global_limit=2, queue_max=10)
    s.set_reserved("f", 1)
    f1 = s.request("f")
    g1, g2 = s.request("g"), s.request("g")
    f2, g3 = s.request("f"), s.request("g")
    assert states([f1, g1, g2, f2, g3]) == [ADMITTED, ADMITTED, WAITING, WAITING, WAITING]

    # g's slot frees: f2 is ahead in the queue but its own pool is still full.
    assert s.release(g1) == [g2]
    assert s.release(f1) == [f2]
    assert g3.state is WAITING


def test_queue_is_bounded() -> None:
    s = Scheduler(global_limit=1, queue_max=2)
    s.request("a")
    w1, w2, over = s.request("a"), s.request("a"), s.request("a")

    assert states([w1, w2, over]) == [WAITING, WAITING, THROTTLED]
    assert over.reason == ACCOUNT_EXCEEDED
    assert len(s.queue) == 2


def test_queue_bound_applies_to_reserved_functions_with_their_reason() -> None:
    s = Scheduler(global_limit=10, queue_max=1)
    s.set_reserved("f", 1)
    s.request("f")
    s.request("f")

    over = s.request("f")

    assert over.state is THROTTLED
    assert over.reason == RESERVED_EXCEEDED


def test_expire_throttles_a_waiting_ticket_only() -> None:
    s = Scheduler(global_limit=1, queue_max=5)
    running = s.request("a")
    waiting = s.request("a")

    s.expire(waiting)

    assert waiting.state is THROTTLED
    assert waiting.reason == ACCOUNT_EXCEEDED
    assert not s.queue
    assert s.release(running) == []  # the expired ticket is not admitted later

    # Expiring a decided ticket changes nothing.
    for ticket in (running, waiting):
        before = (ticket.state, ticket.reason)
        s.expire(ticket)
        assert (ticket.state, ticket.reason) == before
    admitted = s.request("a")
    s.expire(admitted)
    assert admitted.state is ADMITTED
    assert s.busy["a"] == 1


@pytest.mark.parametrize("state", ["waiting", "throttled", "released"])
def test_release_of_a_ticket_that_is_not_running_raises(state: str) -> None:
    s = Scheduler(global_limit=1, queue_max=1)
    running = s.request("a")
    ticket = {
        "waiting": lambda: s.request("a"),
        "throttled": lambda: (s.request("a"), s.request("a"))[1],
        "released": lambda: (s.release(running), running)[1],
    }[state]()
    assert ticket.state.value == state
    busy_before = dict(s.busy)

    with pytest.raises(ValueError, match=f"release of a {state} ticket"):
        s.release(ticket)

    assert ticket.state.value == state
    assert dict(s.busy) == busy_before


def test_raising_a_reservation_admits_its_waiters() -> None:
    s = Scheduler(global_limit=10, queue_max=10)
    s.set_reserved("f", 1)
    s.request("f")
    w1, w2 = s.request("f"), s.request("f")

    admitted = s.set_reserved("f", 2)

    assert admitted == [w1]
    assert w2.state is WAITING


def test_clearing_a_reservation_moves_its_busy_count_to_the_shared_pool() -> None:
    s = Scheduler(global_limit=3, queue_max=10)
    s.set_reserved("f", 2)
    f1, f2 = s.request("f"), s.request("f")
    assert s.unreserved_busy == 0

    s.set_reserved("f", None)

    assert s.unreserved_busy == 2
    assert s.unreserved_limit == 3
    g1, g2 = s.request("g"), s.request("g")
    assert states([g1, g2]) == [ADMITTED, WAITING]
    assert s.release(f1) == [g2]  # f's slot was a shared one now
    assert s.unreserved_busy == 3
    assert s.release(f2) == []
    assert s.unreserved_busy == 2


def test_reserving_a_busy_function_takes_its_count_out_of_the_shared_pool() -> None:
    s = Scheduler(global_limit=4, queue_max=10)
    f1 = s.request("f")
    g1 = s.request("g")

    s.set_reserved("f", 1)

    assert s.unreserved_busy == 1
    assert s.unreserved_limit == 3
    s.release(f1)
    assert s.unreserved_busy == 1
    s.release(g1)
    assert s.unreserved_busy == 0


def test_lowering_a_reservation_admits_nothing_until_below_it() -> None:
    s = Scheduler(global_limit=10, queue_max=10)
    s.set_reserved("f", 3)
    running = [s.request("f") for _ in range(3)]
    waiter = s.request("f")

    assert s.set_reserved("f", 1) == []
    assert s.release(running[0]) == []  # 2 busy, limit 1
    assert s.release(running[1]) == []  # 1 busy, limit 1
    assert s.release(running[2]) == [waiter]


def test_raising_the_global_limit_admits_waiters() -> None:
    s = Scheduler(global_limit=1, queue_max=10)
    s.request("a")
    w1, w2 = s.request("b"), s.request("c")

    assert s.set_global_limit(3) == [w1, w2]
    assert s.unreserved_busy == 3


def test_lowering_the_global_limit_admits_nothing_until_below_it() -> None:
    s = Scheduler(global_limit=2, queue_max=10)
    a, b = s.request("a"), s.request("a")
    waiter = s.request("a")

    assert s.set_global_limit(1) == []
    assert s.release(a) == []
    assert s.release(b) == [waiter]


def test_a_negative_reservation_is_refused() -> None:
    s = Scheduler(global_limit=2, queue_max=10)
    with pytest.raises(ValueError, match="must be >= 0"):
        s.set_reserved("f", -1)
    assert s.reserved == {}


def test_tickets_have_increasing_ids() -> None:
    s = Scheduler(global_limit=1, queue_max=0)
    ids = [s.request("a").id for _ in range(4)]
    assert ids == sorted(set(ids))


# ---------------------------------------------------------------------------------------------
# The state machine: every operation checked against an independent model

FUNCTIONS = ["a", "b", "c", "d"]


class SchedulerMachine(RuleBasedStateMachine):
    """Drives a Scheduler and a model side by side.

    The model keeps its own reserved limits, global limit and FIFO of waiting tickets, and
    computes busy counts from the tickets it saw admitted. At every admission it checks the
    admission happened while the ticket's pool was below its limit *at that moment*: after a
    limit is lowered busy may stay above it, but nothing new gets in until it drops below.
    """

    @initialize(
        global_limit=st.integers(0, 6),
        queue_max=st.integers(0, 5),
    )
    def start(self, global_limit: int, queue_max: int) -> None:
        self.s = Scheduler(global_limit, queue_max)
        self.global_limit = global_limit
        self.queue_max = queue_max
        self.reserved: dict[str, int] = {}
        self.waiting: list[Ticket] = []
        self.running: list[Ticket] = []
        self.history: dict[int, list[TicketState]] = {}
        self.tickets: list[Ticket] = []
        # Per pool ("*" is the shared one): busy may exceed the limit only by what was
        # already running when a limit changed; this allowance shrinks as those finish.
        self.allowance: dict[str, int] = {}

    # -- the model ------------------------------------------------------------------------

    def pool(self, function: str) -> str:
        return function if function in self.reserved else "*"

    def busy(self, pool: str) -> int:
        return sum(1 for t in self.running if self.pool(t.function) == pool)

    def limit(self, pool: str) -> int:
        if pool == "*":
            return max(0, self.global_limit - sum(self.reserved.values()))
        return self.reserved[pool]

    def can_admit(self, function: str) -> bool:
        pool = self.pool(function)
        return self.busy(pool) < self.limit(pool)

    def record(self, ticket: Ticket) -> None:
        self.history.setdefault(ticket.id, []).append(ticket.state)

    def admit(self, ticket: Ticket) -> None:
        assert self.can_admit(ticket.function), "admitted while its pool was full"
        self.running.append(ticket)
        self.record(ticket)

    def expected_admissions(self) -> list[Ticket]:
        """What the scheduler must admit now: waiters in FIFO order whose pool has room."""
        admitted = []
        for ticket in list(self.waiting):
            if self.can_admit(ticket.function):
                self.waiting.remove(ticket)
                self.admit(ticket)
                admitted.append(ticket)
        return admitted

    def check_admissions(self, admitted: list[Ticket]) -> None:
        expected_order = [t for t in self.waiting if t in admitted]
        expected = self.expected_admissions()
        assert admitted == expected
        assert admitted == expected_order  # FIFO among those admitted
        assert all(t.state is ADMITTED for t in admitted)

    def reset_allowances(self) -> None:
        for pool in ["*", *self.reserved]:
            self.allowance[pool] = self.busy(pool)

    # -- rules ----------------------------------------------------------------------------

    @rule(function=st.sampled_from(FUNCTIONS))
    def request(self, function: str) -> None:
        admissible = self.can_admit(function)
        queue_full = len(self.waiting) >= self.queue_max
        reserved_zero = self.reserved.get(function) == 0

        ticket = self.s.request(function)

        self.tickets.append(ticket)
        assert ticket.function == function
        if admissible:
            assert ticket.state is ADMITTED
            self.admit(ticket)
        elif reserved_zero or queue_full:
            assert ticket.state is THROTTLED
            expected = RESERVED_EXCEEDED if function in self.reserved else ACCOUNT_EXCEEDED
            assert ticket.reason == expected
            self.record(ticket)
        else:
            assert ticket.state is WAITING
            self.waiting.append(ticket)
            self.record(ticket)

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(self.running), label="release")

        admitted = self.s.release(ticket)

        assert ticket.state is RELEASED
        self.running.remove(ticket)
        self.record(ticket)
        self.check_admissions(admitted)

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(self.waiting), label="expire")

        self.s.expire(ticket)

        assert ticket.state is THROTTLED
        expected = RESERVED_EXCEEDED if ticket.function in self.reserved else ACCOUNT_EXCEEDED
        assert ticket.reason == expected
        self.waiting.remove(ticket)
        self.record(ticket)

    @precondition(lambda self: any(t.state is not WAITING for t in self.tickets))
    @rule(data=st.data())
    def expire_a_decided_ticket(self, data: st.DataObject) -> None:
        decided = [t for t in self.tickets if t.state is not WAITING]
        ticket = data.draw(st.sampled_from(decided), label="expire decided")
        before = (ticket.state, ticket.reason)

        self.s.expire(ticket)

        assert (ticket.state, ticket.reason) == before

    @precondition(lambda self: any(t.state is not ADMITTED for t in self.tickets))
    @rule(data=st.data())
    def release_a_ticket_that_is_not_running(self, data: st.DataObject) -> None:
        others = [t for t in self.tickets if t.state is not ADMITTED]
        ticket = data.draw(st.sampled_from(others), label="bad release")
        state = ticket.state

        with pytest.raises(ValueError, match="release of a"):
            self.s.release(ticket)

        assert ticket.state is state

    @rule(function=st.sampled_from(FUNCTIONS), limit=st.none() | st.integers(0, 3))
    def set_reserved(self, function: str, limit: int | None) -> None:
        admitted = self.s.set_reserved(function, limit)

        if limit is None:
            self.reserved.pop(function, None)
        else:
            self.reserved[function] = limit
        self.reset_allowances()
        self.check_admissions(admitted)
        self.reset_allowances()

    @rule(limit=st.integers(0, 6))
    def set_global_limit(self, limit: int) -> None:
        admitted = self.s.set_global_limit(limit)

        self.global_limit = limit
        self.reset_allowances()
        self.check_admissions(admitted)
        self.reset_allowances()

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def counters_match_the_tickets(self) -> None:
        expected = collections.Counter(t.function for t in self.running)
        assert {f: n for f, n in self.s.busy.items() if n} == dict(expected)
        assert all(n > 0 for n in self.s.busy.values())
        assert self.s.unreserved_busy == self.busy("*")
        assert self.s.reserved == self.reserved
        assert self.s.unreserved_limit == self.limit("*")

    @invariant()
    def queue_is_the_models_fifo(self) -> None:
        assert list(self.s.queue) == self.waiting
        assert len(self.s.queue) <= self.queue_max
        assert all(t.state is WAITING for t in self.s.queue)

    @invariant()
    def no_waiter_could_run(self) -> None:
        # Work-conserving: a ticket never waits while its pool has room.
        assert not [t for t in self.waiting if self.can_admit(t.function)]

    @invariant()
    def busy_within_limits(self) -> None:
        for pool in ["*", *self.reserved]:
            busy = self.busy(pool)
            allowance = min(self.allowance.get(pool, 0), busy)
            self.allowance[pool] = allowance
            assert busy <= max(self.limit(pool), allowance), pool

    @invariant()
    def every_ticket_has_one_lawful_history(self) -> None:
        lawful = {
            (ADMITTED,),
            (ADMITTED, RELEASED),
            (THROTTLED,),
            (WAITING,),
            (WAITING, THROTTLED),
            (WAITING, ADMITTED),
            (WAITING, ADMITTED, RELEASED),
        }
        for ticket in self.tickets:
            path = tuple(self.history[ticket.id])
            assert path in lawful, (ticket, path)
            assert ticket.state is path[-1]
            # Terminal outcomes are exclusive: never both throttled and admitted.
            assert not (THROTTLED in path and ADMITTED in path)
            assert bool(ticket.reason) == (ticket.state is THROTTLED)


SchedulerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_scheduler_state_machine = SchedulerMachine.TestCase
