"""The embedded durable queue: SQS's semantics on SQLite, the store lambdad already trusts.

Same durability as the async store (:mod:`lambdad.events`): WAL, ``synchronous=FULL``, every
change one fsync'd transaction, all database work on one worker thread (never on the loop).
A ``send`` returns only after its commit is on disk; sends that arrive during a commit share
the next one (group commit).

SQS's model, as far as one host needs it:

* a message is *visible* when ``visible_at <= now``; ``receive`` hides it for the queue's
  visibility timeout, bumps its receive count and hands out a fresh receipt handle;
* ``delete`` by receipt handle (a stale handle — the message was received again since —
  deletes nothing, as on SQS);
* a message received more than ``max_receive_count`` times is moved, with its body, its
  attributes and its id, to the queue's dead-letter queue instead of being delivered
  (SQS's redrive policy);
* messages older than the retention period are dropped at receive time;
* ``delay`` (DelaySeconds) keeps a new message invisible for a while.

Kill -9 at any instant loses nothing: a received message that was never deleted becomes
visible again when its visibility timeout ends (at-least-once, duplicates allowed).

What is fsync'd before it returns, and what is not (``RELAXED``): a ``send`` (and queue
creation, purge) commits with ``synchronous=FULL`` — acknowledged means on disk, even across a
power cut. A ``receive`` and a ``delete`` commit with ``synchronous=NORMAL``: in WAL mode the
commit is in the OS's page cache when it returns (so a ``kill -9`` of the daemon loses
nothing), and reaches the disk with the next FULL commit or checkpoint. A power cut can undo
the last of them, and undoing either is harmless to at-least-once delivery: an undone receive
makes a message visible early (its receive count one lower), an undone delete delivers it
again. Measured with ``python -m benchmarks.queues --quick`` on this 2-core VM (shared), the
in-process receive + delete loop went from 56 / 541 / 3,631 messages/s at batch 1 / 10 / 100
(two fsyncs per batch) to 483 / 3,166 / 7,423; walking a queue by ``(queue, seq)`` instead of
sorting the visible messages by ``visible_at`` on every receive then took batch 100 to 15,096.

Besides SQS's fields, each message carries ``hops`` and ``origin``: how many links of an event
chain led to it and which function started the chain (recursive loop detection,
docs/triggers-queues.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from lambdad.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound

QUEUE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,80}")  # SQS's queue-name rule
REGION: Final = "us-east-1"
ACCOUNT_ID: Final = "000000000000"
MAX_BODY: Final = 256 * 1024  # SQS's message size limit
MAX_ATTRIBUTES: Final = 10  # SQS: at most 10 message attributes
MAX_RECEIVE: Final = 10_000  # a receive (a batch) takes at most this many messages
DEFAULT_VISIBILITY_S: Final = 30.0  # SQS's defaults
DEFAULT_RETENTION_S: Final = 4 * 24 * 3600.0
MAX_VISIBILITY_S: Final = 12 * 3600.0
MIN_RETENTION_S: Final = 60.0
MAX_RETENTION_S: Final = 14 * 24 * 3600.0
MAX_DELAY_S: Final = 900.0
MAX_RECEIVE_COUNT: Final = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    visibility_timeout REAL NOT NULL,
    retention REAL NOT NULL,
    max_receive_count INTEGER,       -- NULL: no redrive policy
    dead_letter TEXT,                -- the dead-letter queue's name
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    attributes TEXT NOT NULL,        -- JSON: name -> {DataType, StringValue | BinaryValue}
    sent REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_receive REAL,
    receipt TEXT,
    hops INTEGER NOT NULL DEFAULT 0,
    origin TEXT
);
-- Receives walk a queue in send order and skip what is invisible (few: in flight or delayed);
-- an index on visible_at would make every receive sort all the visible messages instead.
CREATE INDEX IF NOT EXISTS messages_order ON messages (queue, seq);
CREATE INDEX IF NOT EXISTS messages_sent ON messages (queue, sent);
CREATE INDEX IF NOT EXISTS messages_receipt ON messages (receipt);
"""


def queue_arn(name: str) -> str:
    """The ARN a queue has in events and in the Lambda API (``EventSourceArn``): SQS's form,
    so handler code that parses it works unchanged."""
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"


def parse_queue_ref(value: object) -> str:
    """A queue name, from a name or a queue ARN. Raises InvalidParameterValue."""
    if not isinstance(value, str):
        raise InvalidParameterValue(f"queue must be a queue name, got {value!r}", field="queue")
    name = value
    if value.startswith("arn:"):
        parts = value.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise InvalidParameterValue(
                f"{value!r} is not a queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)", field="queue"
            )
        name = parts[5]
    if not QUEUE_NAME_RE.fullmatch(name):
        raise InvalidParameterValue(
            f"queue name {name!r}: 1 to 80 letters, digits, '-' or '_'", field="queue"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """One queue's settings (SQS's queue attributes, the ones that matter here)."""

    name: str
    visibility_timeout_s: float = DEFAULT_VISIBILITY_S  # hidden this long after a receive
    retention_s: float = DEFAULT_RETENTION_S  # messages older than this are dropped
    max_receive_count: int | None = None  # redrive policy: receives before the dead-letter queue
    dead_letter: str | None = None  # the dead-letter queue (with max_receive_count)

    @classmethod
    def make(
        cls,
        name: object,
        visibility_timeout_s: object = DEFAULT_VISIBILITY_S,
        retention_s: object = DEFAULT_RETENTION_S,
        max_receive_count: object = None,
        dead_letter: object = None,
    ) -> QueueSettings:
        """Validated settings. Raises InvalidParameterValue naming the first bad field."""
        queue = parse_queue_ref(name)
        visibility = _number(visibility_timeout_s, "visibility_timeout_s", 0, MAX_VISIBILITY_S)
        retention = _number(retention_s, "retention_s", MIN_RETENTION_S, MAX_RETENTION_S)
        if (max_receive_count is None) != (dead_letter is None):
            raise InvalidParameterValue(
                "max_receive_count and dead_letter go together (SQS's redrive policy)",
                field="dead_letter" if dead_letter is None else "max_receive_count",
            )
        count = None
        dlq = None
        if max_receive_count is not None:
            count = int(_number(max_receive_count, "max_receive_count", 1, MAX_RECEIVE_COUNT))
            if isinstance(max_receive_count, float) and not max_receive_count.is_integer():
                raise InvalidParameterValue(
                    "max_receive_count must be an integer", field="max_receive_count"
                )
            dlq = parse_queue_ref(dead_letter)
            if dlq == queue:
                raise InvalidParameterValue(
                    "a queue cannot be its own dead-letter queue", field="dead_letter"
                )
        return cls(queue, visibility, retention, count, dlq)

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arn": queue_arn(self.name),
            "visibility_timeout_s": self.visibility_timeout_s,
            "retention_s": self.retention_s,
            "max_receive_count": self.max_receive_count,
            "dead_letter": self.dead_letter,
        }


def _number(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidParameterValue(
            f"{name} must be a number from {low:g} to {high:g}, got {value!r}", field=name
        )
    return float(value)


def check_attributes(attributes: object) -> dict[str, dict[str, str]]:
    """Message attributes in SQS's form: ``{name: {"DataType": ..., "StringValue": ...}}``; a
    plain ``{name: "text"}`` is taken as a String attribute. Raises InvalidParameterValue."""
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise InvalidParameterValue("attributes must be a map", field="attributes")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidParameterValue(
            f"at most {MAX_ATTRIBUTES} message attributes, got {len(attributes)}",
            field="attributes",
        )
    out: dict[str, dict[str, str]] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,256}", key):
            raise InvalidParameterValue(f"bad attribute name {key!r}", field="attributes")
        if key.lower().startswith(("aws.", "amazon.")):
            raise InvalidParameterValue(
                f"attribute name {key!r}: the AWS. and Amazon. prefixes are reserved",
                field="attributes",
            )
        if isinstance(value, str):
            value = {"DataType": "String", "StringValue": value}
        if not isinstance(value, Mapping):
            raise InvalidParameterValue(
                f"attribute {key!r} must be text or {{DataType, StringValue}}", field="attributes"
            )
        kind = value.get("DataType")
        if not isinstance(kind, str) or kind.split(".", 1)[0] not in ("String", "Number"):
            raise InvalidParameterValue(
                f"attribute {key!r}: DataType must be String or Number (optionally with a "
                f".label), got {kind!r}",
                field="attributes",
            )
        text = value.get("StringValue")
        if not isinstance(text, str):
            raise InvalidParameterValue(
                f"attribute {key!r}: StringValue must be text", field="attributes"
            )
        out[key] = {"DataType": kind, "StringValue": text}
    return out


@dataclass(frozen=True, slots=True)
class Message:
    """A received message: what the poller turns into an SQS record."""

    id: str
    queue: str
    body: bytes
    attributes: dict[str, dict[str, str]]
    sent: float
    receive_count: int
    first_receive: float
    receipt: str
    hops: int = 0
    origin: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "message_id": self.id,
            "queue": self.queue,
            "body": self.body,
            "attributes": self.attributes,
            "sent": self.sent,
            "receive_count": self.receive_count,
            "receipt": self.receipt,
        }


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    body: bytes
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    delay_s: float = 0.0
    hops: int = 0
    origin: str | None = None

    @classmethod
    def make(cls, body: object, attributes: object = None, delay_s: object = 0) -> OutgoingMessage:
        """Raises InvalidParameterValue."""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes) or not body:
            raise InvalidParameterValue("body must be non-empty text", field="body")
        if len(body) > MAX_BODY:
            raise InvalidParameterValue(
                f"body of {len(body)} bytes is over SQS's limit of {MAX_BODY}", field="body"
            )
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParameterValue("body must be UTF-8 text", field="body") from None
        delay = _number(delay_s, "delay_s", 0, MAX_DELAY_S)
        return cls(body, check_attributes(attributes), delay)


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    """SQLite takes at most 999 parameters a statement (older builds)."""
    return [values[i : i + size] for i in range(0, len(values), size)]


class QueueStore:
    """Every embedded queue, in one SQLite database (``<state>/queues.sqlite3``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="queues")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[str, OutgoingMessage, str, asyncio.Future[None]]] = []
        self._flushing = False
        self._flush_task: asyncio.Future[None] | None = None
        self._queues: dict[str, QueueSettings] = {}
        self._wakers: dict[str, asyncio.Event] = {}

    # -- database thread ---------------------------------------------------------------

    def _open_db(self) -> dict[str, QueueSettings]:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        self._db = db
        rows = db.execute(
            "SELECT name, visibility_timeout, retention, max_receive_count, dead_letter FROM queues"
        ).fetchall()
        return {r[0]: QueueSettings(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def _create(self, q: QueueSettings) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO queues (name, visibility_timeout, retention, max_receive_count,"
                " dead_letter, created) VALUES (?, ?, ?, ?, ?, ?)",
                (q.name, q.visibility_timeout_s, q.retention_s, q.max_receive_count,
                 q.dead_letter, time.time()),
            )  # fmt: skip

    def _delete_queue(self, name: str) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM messages WHERE queue=?", (name,))
            self._db.execute("DELETE FROM queues WHERE name=?", (name,))

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        assert self._db is not None
        with self._db:  # one transaction, one fsync for the whole group
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO messages (id, queue, body, attributes, sent, visible_at, hops,"
                " origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _relaxed(self) -> None:
        """The next commits need not reach the disk before they return (see ``RELAXED``)."""
        assert self._db is not None
        self._db.execute("PRAGMA synchronous=NORMAL")

    def _strict(self) -> None:
        assert self._db is not None
        self._db.execute("PRAGMA synchronous=FULL")

    def _receive(self, q: QueueSettings, limit: int, deletes: Sequence[str]) -> list[Message]:
        try:
            self._relaxed()
            return self._receive_tx(q, limit, deletes)
        finally:
            self._strict()

    def _receive_tx(self, q: QueueSettings, limit: int, deletes: Sequence[str]) -> list[Message]:
        assert self._db is not None
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for part in _chunks(list(deletes)):
                self._db.execute(
                    f"DELETE FROM messages WHERE receipt IN ({','.join('?' * len(part))})", part
                )
            self._db.execute(
                "DELETE FROM messages WHERE queue=? AND sent < ?", (q.name, now - q.retention_s)
            )
            out: list[Message] = []
            while len(out) < limit:
                rows = self._db.execute(
                    "SELECT seq, id, body, attributes, sent, receive_count, first_receive, hops,"
                    " origin FROM messages WHERE queue=? AND visible_at <= ? ORDER BY seq"
                    " LIMIT ?",
                    (q.name, now, limit - len(out)),
                ).fetchall()
                if not rows:
                    break
                dead: list[int] = []
                taken: list[int] = []
                # One token per receive; each message's handle is token-seq (unique, and
                # stale as soon as the message is received again).
                token = uuid.uuid4().hex
                for seq, mid, body, attrs, sent, count, first, hops, origin in rows:
                    if q.max_receive_count is not None and count >= q.max_receive_count:
                        dead.append(seq)  # SQS: past maxReceiveCount, to the dead-letter queue
                        continue
                    taken.append(seq)
                    out.append(
                        Message(mid, q.name, bytes(body), json.loads(attrs) if attrs != "{}"
                                else {}, sent, count + 1, first if first is not None else now,
                                f"{token}-{seq}", hops, origin)
                    )  # fmt: skip
                if dead:
                    # Same row, new queue: id, body, attributes and sent time are kept; the
                    # receive count starts again, as a message moved by SQS's redrive does.
                    self._db.executemany(
                        "UPDATE messages SET queue=?, visible_at=?, receive_count=0,"
                        " first_receive=NULL, receipt=NULL WHERE seq=?",
                        [(q.dead_letter, now, seq) for seq in dead],
                    )
                for part in _chunks(taken):
                    self._db.execute(
                        "UPDATE messages SET visible_at=?, receive_count=receive_count+1,"
                        " first_receive=coalesce(first_receive, ?), receipt=? || '-' || seq"
                        f" WHERE seq IN ({','.join('?' * len(part))})",
                        (now + q.visibility_timeout_s, now, token, *part),
                    )
        return out

    def _delete(self, receipts: Sequence[str]) -> int:
        assert self._db is not None
        self._relaxed()
        try:
            return self._delete_tx(receipts)
        finally:
            self._strict()

    def _delete_tx(self, receipts: Sequence[str]) -> int:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            deleted = 0
            for part in _chunks(list(receipts)):
                deleted += self._db.execute(
                    f"DELETE FROM messages WHERE receipt IN ({','.join('?' * len(part))})", part
                ).rowcount
            return deleted

    def _release(self, receipts: Sequence[str], visible_at: float) -> None:
        assert self._db is not None
        with self._db:  # (synchronous=FULL: rare, and a user may have asked for it)
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE messages SET visible_at=? WHERE receipt=?",
                [(visible_at, r) for r in receipts],
            )

    def _purge(self, name: str) -> int:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            return self._db.execute("DELETE FROM messages WHERE queue=?", (name,)).rowcount

    def _counts(self) -> dict[str, tuple[int, int, int]]:
        assert self._db is not None
        now = time.time()
        rows = self._db.execute(
            "SELECT queue, sum(visible_at <= ?), sum(visible_at > ? AND receive_count > 0),"
            " sum(visible_at > ? AND receive_count = 0) FROM messages GROUP BY queue",
            (now, now, now),
        ).fetchall()
        return {r[0]: (int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in rows}

    # -- loop side ---------------------------------------------------------------------

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    async def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queues = await self._run(self._open_db)

    async def close(self) -> None:
        if self._flush_task is not None:
            await asyncio.gather(self._flush_task, return_exceptions=True)
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    def get(self, name: str) -> QueueSettings:
        """Raises ResourceNotFound."""
        queue = self._queues.get(name)
        if queue is None:
            raise ResourceNotFound(f"queue {name!r} does not exist", queue=name)
        return queue

    def exists(self, name: str) -> bool:
        return name in self._queues

    def names(self) -> list[str]:
        return sorted(self._queues)

    async def create(self, settings: QueueSettings) -> QueueSettings:
        """Create a queue. Creating one that exists with the same settings is a no-op (as
        SQS's CreateQueue); different settings are a conflict.

        Raises:
            ResourceConflict: it exists with other settings.
            ResourceNotFound: the dead-letter queue does not exist.
        """
        existing = self._queues.get(settings.name)
        if existing is not None:
            if existing == settings:
                return existing
            raise ResourceConflict(
                f"queue {settings.name!r} already exists with other settings", queue=settings.name
            )
        if settings.dead_letter is not None and settings.dead_letter not in self._queues:
            raise ResourceNotFound(
                f"dead-letter queue {settings.dead_letter!r} does not exist: create it first",
                queue=settings.dead_letter,
            )
        await self._run(self._create, settings)
        self._queues[settings.name] = settings
        return settings

    async def delete_queue(self, name: str) -> None:
        """Raises ResourceNotFound; ResourceConflict while another queue dead-letters into it."""
        self.get(name)
        users = sorted(q.name for q in self._queues.values() if q.dead_letter == name)
        if users:
            raise ResourceConflict(
                f"queue {name!r} is the dead-letter queue of {', '.join(users)}", queue=name
            )
        await self._run(self._delete_queue, name)
        del self._queues[name]

    async def send(self, name: str, message: OutgoingMessage) -> str:
        """Store one message durably; returns its id once the commit is on disk."""
        return (await self.send_batch(name, [message]))[0]

    async def send_batch(self, name: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Store messages durably (one group commit); returns their ids."""
        assert self._loop is not None
        self.get(name)
        futures = []
        ids = []
        for message in messages:
            mid = str(uuid.uuid4())
            done: asyncio.Future[None] = self._loop.create_future()
            self._pending.append((name, message, mid, done))
            futures.append(done)
            ids.append(mid)
        if not self._flushing:
            self._flushing = True
            self._flush_task = asyncio.ensure_future(self._flush())
        await asyncio.gather(*futures)
        return ids

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                now = time.time()
                rows = [
                    (mid, name, m.body, json.dumps(m.attributes), now, now + m.delay_s, m.hops,
                     m.origin)
                    for name, m, mid, _ in batch
                ]  # fmt: skip
                try:
                    await self._run(self._insert, rows)
                except Exception as exc:
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for name, _m, _mid, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
                    self.waker(name).set()
        finally:
            self._flushing = False

    def waker(self, name: str) -> asyncio.Event:
        """Set whenever a message is sent to ``name`` (pollers wait on it between polls)."""
        event = self._wakers.get(name)
        if event is None:
            event = self._wakers[name] = asyncio.Event()
        return event

    async def receive(
        self, name: str, limit: int, delete_first: Sequence[str] = ()
    ) -> list[Message]:
        """Up to ``limit`` visible messages, hidden for the visibility timeout; in the same
        transaction, first delete the messages of ``delete_first`` (receipt handles: what a
        poller processed since its last receive — one commit instead of two per batch).
        Raises ResourceNotFound."""
        queue = self.get(name)
        if queue.dead_letter is not None and queue.dead_letter not in self._queues:
            raise ResourceNotFound(
                f"dead-letter queue {queue.dead_letter!r} of {name!r} does not exist",
                queue=queue.dead_letter,
            )
        messages: list[Message] = await self._run(self._receive, queue, limit, delete_first)
        if queue.dead_letter is not None:
            self.waker(queue.dead_letter).set()
        return messages

    async def delete(self, receipts: Sequence[str]) -> int:
        """Delete received messages by receipt handle; returns how many were still there."""
        if not receipts:
            return 0
        deleted: int = await self._run(self._delete, list(receipts))
        return deleted

    async def release(self, receipts: Sequence[str], delay_s: float = 0.0) -> None:
        """Make received messages visible again after ``delay_s`` (ChangeMessageVisibility)."""
        if receipts:
            await self._run(self._release, list(receipts), time.time() + delay_s)

    async def purge(self, name: str) -> int:
        """Delete every message of a queue; returns how many. Raises ResourceNotFound."""
        self.get(name)
        purged: int = await self._run(self._purge, name)
        return purged

    async def list(self) -> list[dict[str, Any]]:
        """Every queue with its settings and message counts (SQS's Approximate* attributes)."""
        counts = await self._run(self._counts)
        out = []
        for name in sorted(self._queues):
            visible, in_flight, delayed = counts.get(name, (0, 0, 0))
            out.append(
                {**self._queues[name].to_wire(), "visible": visible, "in_flight": in_flight,
                 "delayed": delayed}
            )  # fmt: skip
        return out
