"""Admission control: concurrency limits and the bounded wait queue, as pure logic.

No asyncio and no clock in here, so it can be tested exhaustively with fakes (a hypothesis state
machine drives it in tests/lambdad/test_scheduler.py). The daemon wraps each waiting
:class:`Ticket` in a future and calls :meth:`Scheduler.expire` when its deadline passes.

Lambda's model: a function with *reserved* concurrency R may have at most R invocations
running, and those R are carved out of the account limit; every other function shares what is
left (``global_limit - sum(R)``). Over a limit, a request waits in a bounded FIFO queue; when it
cannot wait (queue full, R == 0) or waits too long, it is throttled with Lambda's reason.
"""

from __future__ import annotations

import collections
import enum
import itertools
from dataclasses import dataclass, field
from typing import Final

RESERVED_EXCEEDED: Final = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_EXCEEDED: Final = "ConcurrentInvocationLimitExceeded"


class TicketState(enum.Enum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    THROTTLED = "throttled"
    RELEASED = "released"


@dataclass(eq=False)
class Ticket:
    id: int
    function: str
    state: TicketState = TicketState.WAITING
    reason: str = ""
    extra: dict[str, object] = field(default_factory=dict)


class Scheduler:
    """Tracks busy invocations per function and decides admission.

    Invariants (checked by the tests): for a function with reserved R, ``busy[f] <= R``; the
    unreserved functions together never exceed ``global_limit - sum(R)``; every ticket ends
    ADMITTED-then-RELEASED or THROTTLED, exactly once.
    """

    def __init__(self, global_limit: int, queue_max: int) -> None:
        self.global_limit = global_limit
        self.queue_max = queue_max
        self.reserved: dict[str, int] = {}
        self.busy: collections.Counter[str] = collections.Counter()
        self.unreserved_busy = 0
        # Waiting tickets, one FIFO per function: a release then looks at the head of each
        # function's queue (few), not at every waiting ticket (up to queue_max). Scanning the
        # whole queue cost 65 us per release with 1,000 waiting (measured).
        self._waiting: dict[str, collections.deque[Ticket]] = {}
        self._waiting_count = 0
        self._ids = itertools.count(1)

    @property
    def queue(self) -> list[Ticket]:
        """Every waiting ticket, oldest first (for inspection; O(n))."""
        return sorted((t for q in self._waiting.values() for t in q), key=lambda t: t.id)

    # -- configuration -------------------------------------------------------------------

    def set_reserved(self, function: str, limit: int | None) -> list[Ticket]:
        """Set or clear a function's reserved concurrency; returns newly admitted tickets.

        Lowering a limit below what is busy admits nothing new until enough are released.

        Raises:
            ValueError: ``limit`` is negative.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"reserved concurrency of {function!r} must be >= 0, got {limit}")
        was_reserved = function in self.reserved
        if was_reserved and limit is None:
            self.unreserved_busy += self.busy[function]
        elif not was_reserved and limit is not None:
            self.unreserved_busy -= self.busy[function]
        if limit is None:
            self.reserved.pop(function, None)
        else:
            self.reserved[function] = limit
        return self._admit_waiting()

    def set_global_limit(self, limit: int) -> list[Ticket]:
        """Change the host-wide limit; returns newly admitted tickets.

        Lowering it below what is busy admits nothing new until enough are released.
        """
        self.global_limit = limit
        return self._admit_waiting()

    def max_reservation(self, function: str, keep_unreserved: int) -> int:
        """The most concurrency ``function`` may reserve while ``keep_unreserved`` stays shared.

        Lambda's rule: reservations are carved out of the account limit, and the functions that
        reserve nothing always keep at least 100 between them — otherwise one tenant's
        reservation throttles every other tenant, warm ones included.
        """
        others = sum(v for f, v in self.reserved.items() if f != function)
        return max(0, self.global_limit - keep_unreserved - others)

    @property
    def unreserved_limit(self) -> int:
        return max(0, self.global_limit - sum(self.reserved.values()))

    # -- decisions -----------------------------------------------------------------------

    def can_admit(self, function: str) -> bool:
        limit = self.reserved.get(function)
        if limit is not None:
            return self.busy[function] < limit
        return self.unreserved_busy < self.unreserved_limit

    def reason(self, function: str) -> str:
        return RESERVED_EXCEEDED if function in self.reserved else ACCOUNT_EXCEEDED

    def request(self, function: str) -> Ticket:
        """A new invocation asks to run: ADMITTED, WAITING (queued) or THROTTLED."""
        ticket = Ticket(next(self._ids), function)
        if self.can_admit(function):
            self._admit(ticket)
        elif self.reserved.get(function) == 0 or self._waiting_count >= self.queue_max:
            self._throttle(ticket)
        else:
            self._waiting.setdefault(function, collections.deque()).append(ticket)
            self._waiting_count += 1
        return ticket

    def release(self, ticket: Ticket) -> list[Ticket]:
        """An admitted invocation finished; returns the waiting tickets admitted in its place."""
        if ticket.state is not TicketState.ADMITTED:
            raise ValueError(f"release of a {ticket.state.value} ticket")
        ticket.state = TicketState.RELEASED
        self.busy[ticket.function] -= 1
        if self.busy[ticket.function] == 0:
            del self.busy[ticket.function]
        if ticket.function not in self.reserved:
            self.unreserved_busy -= 1
        return self._admit_waiting(ticket.function)

    def expire(self, ticket: Ticket) -> None:
        """A waiting ticket's deadline passed: throttle it (no-op if already decided)."""
        if ticket.state is TicketState.WAITING:
            queue = self._waiting[ticket.function]
            queue.remove(ticket)
            if not queue:
                del self._waiting[ticket.function]
            self._waiting_count -= 1
            self._throttle(ticket)

    # -- internals -----------------------------------------------------------------------

    def _admit(self, ticket: Ticket) -> None:
        ticket.state = TicketState.ADMITTED
        self.busy[ticket.function] += 1
        if ticket.function not in self.reserved:
            self.unreserved_busy += 1

    def _throttle(self, ticket: Ticket) -> None:
        ticket.state = TicketState.THROTTLED
        ticket.reason = self.reason(ticket.function)

    def _admit_waiting(self, released: str | None = None) -> list[Ticket]:
        """Admit waiting tickets while there is room, oldest admissible first.

        ``released``: the function whose invocation just ended. If it has reserved
        concurrency, only its own queue can have gained room.
        """
        admitted: list[Ticket] = []
        if not self._waiting_count:
            return admitted
        if released is not None and released in self.reserved:
            queue = self._waiting.get(released)
            while queue and self.can_admit(released):
                admitted.append(self._admit_head(released, queue))
            return admitted
        while True:
            # Within a function the head is its oldest ticket, so the oldest admissible
            # ticket overall is the oldest admissible head.
            best: tuple[int, str] | None = None
            for function, queue in self._waiting.items():
                if (best is None or queue[0].id < best[0]) and self.can_admit(function):
                    best = (queue[0].id, function)
            if best is None:
                return admitted
            admitted.append(self._admit_head(best[1], self._waiting[best[1]]))

    def _admit_head(self, function: str, queue: collections.deque[Ticket]) -> Ticket:
        ticket = queue.popleft()
        if not queue:
            del self._waiting[function]
        self._waiting_count -= 1
        self._admit(ticket)
        return ticket
