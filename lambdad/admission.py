"""Admission: the asyncio side of :mod:`lambdad.scheduler` (which is pure logic).

``admit`` gets a ticket from the scheduler; over a limit it waits, bounded by
``queue_timeout_s``, for a release to admit it, and otherwise raises ``TooManyRequests`` with
Lambda's reason. Every change of a limit or release wakes the tickets the scheduler admitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from lambdad.errors import TooManyRequests
from lambdad.scheduler import Scheduler, Ticket, TicketState


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Admission:
    def __init__(self, scheduler: Scheduler, queue_timeout_s: float) -> None:
        self.scheduler = scheduler
        self.queue_timeout_s = queue_timeout_s
        self._waiting: dict[Ticket, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def admit(self, function: str) -> Ticket:
        """An admitted ticket for one invocation of ``function``; release it when done.

        Raises:
            TooManyRequests: over a limit for longer than the queue allows, or the queue full.
        """
        ticket = self.request(function)
        if ticket.state is not TicketState.ADMITTED:
            await self.wait(ticket)
        return ticket

    def request(self, function: str) -> Ticket:
        """A ticket, admitted at once when a limit allows (the common case, and no await:
        this is on every invocation's path); else :meth:`wait` for it."""
        return self.scheduler.request(function)

    async def wait(self, ticket: Ticket) -> None:
        """Wait, bounded by the queue timeout, for a WAITING ticket to be admitted.

        Raises:
            TooManyRequests: it was throttled (queue full, or it timed out waiting).
        """
        if ticket.state is TicketState.WAITING:
            # Every queued invocation comes here: asking for the running loop each time is a
            # getpid() system call on Python 3.11, so the loop is kept (until it is closed).
            loop = self._loop
            if loop is None or loop.is_closed():
                loop = self._loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiting[ticket] = waiter
            timer = loop.call_later(self.queue_timeout_s, _expire, waiter)
            try:
                await waiter
            except TimeoutError:
                self.scheduler.expire(ticket)
            finally:
                timer.cancel()
                self._waiting.pop(ticket, None)
        if ticket.state is TicketState.THROTTLED:
            raise TooManyRequests(
                f"Rate Exceeded: {ticket.reason}", reason=ticket.reason, function=ticket.function
            )

    def release(self, ticket: Ticket) -> None:
        self._wake(self.scheduler.release(ticket))

    def set_reserved(self, function: str, limit: int | None) -> None:
        self._wake(self.scheduler.set_reserved(function, limit))

    def max_reservation(self, function: str, keep_unreserved: int) -> int:
        return self.scheduler.max_reservation(function, keep_unreserved)

    def set_global_limit(self, limit: int) -> None:
        self._wake(self.scheduler.set_global_limit(limit))

    @property
    def global_limit(self) -> int:
        return self.scheduler.global_limit

    def _wake(self, tickets: Iterable[Ticket]) -> None:
        for ticket in tickets:
            waiter = self._waiting.get(ticket)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
