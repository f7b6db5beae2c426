"""Async invocations: a durable event queue with Lambda's retry policy and a dead-letter store.

Why SQLite (stdlib ``sqlite3``) in WAL mode with ``synchronous=FULL``, rather than an append-only
log of our own: an event changes state several times (pending -> running -> done / retry /
dead), needs queries by due time and by function for the dead-letter listing, and must survive
``kill -9`` at any instant. SQLite gives atomic, fsync'd transactions for all of that; an
append-only log would need its own compaction and index to do the same. WAL keeps readers
from blocking the writer.

An event is acknowledged to the client only after the transaction that stored it committed
(fsync'd). Accepts are *group-committed*: puts that arrive while a commit is in progress share
the next one, so accepting many events costs a few fsyncs, not one each. All database work runs
in one worker thread, never on the event loop.

The queue is bounded (issue 13, point 3): events not yet finished (pending or running) and
their payload bytes are counted per function and in total, in memory (recounted from the
database at start and after a redrive), and a put beyond a cap is refused with
``TooManyRequests`` and a reason, as Lambda's async queue throttles; nothing is written.

Delivery is at least once: an event that was running when the daemon died is pending again at
the next start. The request id of every attempt is the event id, so the function's log shows
each run of an event under the same id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lambdad.errors import LambdadError, ResourceNotFound, TooManyRequests

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,            -- pending | running | done | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS events_due ON events (state, next_at);
"""
DONE_KEEP_S = 24 * 3600.0
THROTTLE_RETRY_S = 1.0


class QueueCaps(Protocol):
    """The async queue's caps (``DaemonConfig.async_queue_*``)."""

    @property
    def async_queue_max_events(self) -> int: ...
    @property
    def async_queue_max_bytes(self) -> int: ...
    @property
    def async_queue_function_max_events(self) -> int: ...
    @property
    def async_queue_function_max_bytes(self) -> int: ...


class RetryPolicy(Protocol):
    @property
    def async_retry_delays_s(self) -> tuple[float, ...]: ...
    @property
    def async_max_age_s(self) -> float: ...
    @property
    def async_workers(self) -> int: ...


RunEvent = Callable[[str, str | None, bytes, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class FinalOutcome:
    """How an async event ended, for its destinations (lambdad/destinations.py)."""

    event_id: str
    function: str
    qualifier: str | None
    payload: bytes
    attempts: int
    condition: str  # Lambda's: "Success", "RetriesExhausted" or "EventAgeExceeded"
    result: dict[str, Any]  # what run_event returned (error, result, function_error, ...)
    hops: int  # links of the event chain that led to this event (recursive loop detection)
    origin: str | None  # the function that started the chain


# Per-function async settings (PutFunctionEventInvokeConfig): (max retries, max age s), None
# where the daemon's defaults apply.
InvokeConfigFor = Callable[[str], tuple[int | None, float | None]]


class EventStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="events")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_puts: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self._flushing = False
        self._flush_task: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self.running = 0
        # Set by lambdad.destinations: per-function retry settings, and what to do with an
        # event once it succeeded or failed for good.
        self.invoke_config: InvokeConfigFor | None = None
        self.on_final: Callable[[FinalOutcome], Awaitable[None]] | None = None
        # Unfinished (pending or running) events: [count, payload bytes], per function.
        self.queued: dict[str, list[int]] = {}
        self.queued_events = 0
        self.queued_bytes = 0

    # -- database thread ---------------------------------------------------------------

    def _open_db(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if "hops" not in columns:  # event chains (issue 16): added to older stores in place
            db.execute("ALTER TABLE events ADD COLUMN hops INTEGER NOT NULL DEFAULT 0")
            db.execute("ALTER TABLE events ADD COLUMN origin TEXT")
        now = time.time()
        # At-least-once: what was running when the daemon died runs again.
        db.execute("UPDATE events SET state='pending', updated=? WHERE state='running'", (now,))
        db.execute("DELETE FROM events WHERE state='done' AND updated < ?", (now - DONE_KEEP_S,))
        self._db = db

    def _count_unfinished(self) -> list[tuple[Any, ...]]:
        return self._db_call(
            "SELECT function, count(*), coalesce(sum(length(payload)), 0) FROM events"
            " WHERE state IN ('pending', 'running') GROUP BY function"
        )

    async def _recount(self) -> None:
        rows = await self._run(self._count_unfinished)
        self.queued = {str(fn): [int(n), int(size)] for fn, n, size in rows}
        self.queued_events = sum(n for n, _ in self.queued.values())
        self.queued_bytes = sum(size for _, size in self.queued.values())

    def _admit(self, function: str, size: int, caps: QueueCaps) -> None:
        """Count an event in, or refuse it (nothing counted) if it would pass a cap."""
        mine = self.queued.get(function, [0, 0])
        checks = (
            (mine[0] + 1 > caps.async_queue_function_max_events,
             f"function {function!r} has {mine[0]} async events queued, its limit "
             f"(async_queue_function_max_events)"),
            (mine[1] + size > caps.async_queue_function_max_bytes,
             f"function {function!r} has {mine[1]} bytes of async events queued; {size} more "
             f"would pass its limit of {caps.async_queue_function_max_bytes} "
             f"(async_queue_function_max_bytes)"),
            (self.queued_events + 1 > caps.async_queue_max_events,
             f"the async event queue holds {self.queued_events} events, its limit "
             f"(async_queue_max_events)"),
            (self.queued_bytes + size > caps.async_queue_max_bytes,
             f"the async event queue holds {self.queued_bytes} bytes; {size} more would pass "
             f"its limit of {caps.async_queue_max_bytes} (async_queue_max_bytes)"),
        )  # fmt: skip
        for full, why in checks:
            if full:
                raise TooManyRequests(
                    f"Rate exceeded: {why}; retry when queued events have run",
                    reason="AsyncEventQueueFull",
                )
        self._count(function, 1, size)

    def _count(self, function: str, events: int, size: int) -> None:
        mine = self.queued.setdefault(function, [0, 0])
        mine[0] += events
        mine[1] += size
        self.queued_events += events
        self.queued_bytes += size
        if mine[0] <= 0:
            del self.queued[function]

    def _db_call(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(sql, params).fetchall()

    def _db_exec(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        assert self._db is not None
        return self._db.execute(sql, params).rowcount

    def _insert_batch(self, rows: list[tuple[Any, ...]]) -> None:
        assert self._db is not None
        with self._db:  # one transaction, one fsync for the whole batch
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO events (id, function, qualifier, payload, state, attempts,"
                " next_at, created, updated, hops, origin)"
                " VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)",
                rows,
            )

    def _claim_due(self, limit: int) -> list[tuple[Any, ...]]:
        assert self._db is not None
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rows = self._db.execute(
                "SELECT id, function, qualifier, payload, attempts, created, hops, origin"
                " FROM events"
                " WHERE state='pending' AND next_at <= ? ORDER BY next_at LIMIT ?",
                (now, limit),
            ).fetchall()
            self._db.executemany(
                "UPDATE events SET state='running', updated=? WHERE id=?",
                [(now, r[0]) for r in rows],
            )
        return rows

    # -- loop side ---------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    async def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        await self._run(self._open_db)
        await self._recount()

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def put(
        self,
        function: str,
        qualifier: str | None,
        payload: bytes,
        caps: QueueCaps,
        event_id: str | None = None,
        hops: int = 0,
        origin: str | None = None,
    ) -> str:
        """Store an event durably; returns its id once the commit is on disk.

        ``event_id``: an idempotency key (a schedule's trigger + scheduled time): a put with
        an id already stored changes nothing (and counts nothing against the caps). ``hops``
        and ``origin``: the event chain it continues (a destination's or a trigger's event).

        Raises:
            TooManyRequests: (``reason="AsyncEventQueueFull"``) the event would pass one of
                the queue's caps; the message names it.
        """
        assert self._loop is not None
        if event_id is not None and await self.state(event_id) is not None:
            return event_id
        self._admit(function, len(payload), caps)
        event_id = event_id or str(uuid.uuid4())
        now = time.time()
        done: asyncio.Future[None] = self._loop.create_future()
        row = (event_id, function, qualifier, payload, now, now, now, hops, origin)
        self._pending_puts.append((row, done))
        if not self._flushing:
            self._flushing = True
            self._flush_task = asyncio.ensure_future(self._flush_puts())
        await done
        return event_id

    async def _flush_puts(self) -> None:
        try:
            while self._pending_puts:
                batch, self._pending_puts = self._pending_puts, []
                try:
                    await self._run(self._insert_batch, [row for row, _ in batch])
                except Exception as exc:
                    for row, fut in batch:
                        self._count(row[1], -1, -len(row[3]))  # not stored: not queued
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
                self._wake.set()
        finally:
            self._flushing = False

    async def state(self, event_id: str) -> str | None:
        """An event's state (pending, running, done, dead), None when not stored."""
        rows = await self._run(self._db_call, "SELECT state FROM events WHERE id=?", (event_id,))
        return str(rows[0][0]) if rows else None

    def wake(self) -> None:
        self._wake.set()

    async def counts(self) -> dict[str, int]:
        rows = await self._run(self._db_call, "SELECT state, count(*) FROM events GROUP BY state")
        counts = {"pending": 0, "running": 0, "done": 0, "dead": 0}
        counts.update({str(state): int(n) for state, n in rows})
        return counts

    async def dead_letters(self, function: str | None) -> list[dict[str, Any]]:
        sql = "SELECT id, function, attempts, created, last_error FROM events WHERE state='dead'"
        params: tuple[Any, ...] = ()
        if function is not None:
            sql += " AND function=?"
            params = (function,)
        rows = await self._run(self._db_call, sql + " ORDER BY created", params)
        return [
            {"event_id": r[0], "function": r[1], "attempts": r[2], "created": r[3], "error": r[4]}
            for r in rows
        ]

    async def redrive(self, function: str | None, event_id: str | None) -> int:
        """Move dead letters back to pending (all of a function's, or one)."""
        now = time.time()
        sql = (
            "UPDATE events SET state='pending', attempts=0, next_at=?, created=?"
            " WHERE state='dead' AND " + ("id=?" if event_id is not None else "function=?")
        )
        params = (now, now, event_id if event_id is not None else function)
        changed: int = await self._run(self._db_exec, sql, params)
        if changed:
            await self._recount()
        self._wake.set()
        return changed

    async def _finish(
        self,
        event_id: str,
        state: str,
        attempts: int,
        next_at: float,
        error: str | None,
        function: str = "",
        size: int = 0,
    ) -> None:
        await self._run(
            self._db_call,
            "UPDATE events SET state=?, attempts=?, next_at=?, updated=?, last_error=? WHERE id=?",
            (state, attempts, next_at, time.time(), error, event_id),
        )
        if state in ("done", "dead"):
            self._count(function, -1, -size)

    async def run(self, run_event: RunEvent, policy: RetryPolicy) -> None:
        """Forever: claim due events, run them (bounded concurrency), apply the retry policy."""
        tasks: set[asyncio.Task[None]] = set()
        while True:
            free = policy.async_workers - len(tasks)
            rows = await self._run(self._claim_due, free) if free > 0 else []
            for row in rows:
                task = asyncio.ensure_future(self._attempt(run_event, policy, row))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _t: self._wake.set())
            if not rows or free <= len(rows):
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.2)
                except TimeoutError:
                    pass

    async def _attempt(
        self, run_event: RunEvent, policy: RetryPolicy, row: tuple[Any, ...]
    ) -> None:
        event_id, function, qualifier, payload, attempts, created, hops, origin = row
        size = len(payload)
        now = time.time()
        retries, max_age = (None, None)
        if self.invoke_config is not None:
            retries, max_age = self.invoke_config(function)

        async def final(condition: str, result: dict[str, Any], attempts: int) -> None:
            if self.on_final is not None:
                outcome = FinalOutcome(event_id, function, qualifier, bytes(payload), attempts,
                                       condition, result, hops, origin)  # fmt: skip
                try:
                    await self.on_final(outcome)
                except Exception:
                    traceback.print_exc()

        if now - created > (max_age if max_age is not None else policy.async_max_age_s):
            await self._finish(
                event_id, "dead", attempts, now, "maximum event age exceeded", function, size
            )
            await final("EventAgeExceeded", {"error": None}, attempts)
            return
        try:
            result = await run_event(function, qualifier, bytes(payload), event_id)
        except TooManyRequests:
            # Throttles do not count as attempts (Lambda retries them until the max age).
            await self._finish(event_id, "pending", attempts, now + THROTTLE_RETRY_S, "throttled")
            return
        except ResourceNotFound as exc:
            await self._finish(event_id, "dead", attempts + 1, now, exc.message, function, size)
            return
        except LambdadError as exc:
            result = {"error": {"errorType": exc.type, "errorMessage": exc.message}}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            traceback.print_exc()
            result = {"error": {"errorType": "ServiceError", "errorMessage": repr(exc)}}
        error = result.get("error")
        attempts += 1
        if not error:
            await self._finish(event_id, "done", attempts, now, None, function, size)
            await final("Success", result, attempts)
            return
        message = f"{error.get('errorType')}: {error.get('errorMessage')}"
        delays = policy.async_retry_delays_s
        if retries is not None:
            delays = delays[:retries] + (delays[-1:] * max(0, retries - len(delays)))
        if attempts <= len(delays):
            await self._finish(
                event_id, "pending", attempts, time.time() + delays[attempts - 1], message
            )
        else:
            await self._finish(event_id, "dead", attempts, time.time(), message, function, size)
            await final("RetriesExhausted", result, attempts)
