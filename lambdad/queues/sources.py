"""Where a mapping's batches come from: the embedded queue or a NATS JetStream stream.

Both backends have one face, :class:`Source`: ``receive`` a batch (waiting up to the batching
window for it to fill), ``ack`` the messages that were processed, and leave the others to come
back after the visibility timeout (SQS's and JetStream's AckWait alike), until the receive
count sends them to the dead-letter queue.

NATS (``nats://HOST:PORT/STREAM[?visibility_timeout=S&max_receive_count=N&dead_letter=SUBJECT]``):

* the stream (subject = the stream's name, file storage) is created if it does not exist;
* a durable pull consumer per mapping (``lambdad-<mapping>``), explicit acks, ``AckWait`` =
  the visibility timeout;
* the receive count is counted by lambdad from each delivery's ``num_delivered``: the delivery
  after the last allowed one is where lambdad moves the message to the dead-letter subject
  (default ``<STREAM>.dead-letter``, kept in a stream ``<STREAM>_DLQ`` created beside it) with
  its headers plus ``Lambdad-Receive-Count`` / ``Lambdad-Original-Sequence``, then acks it.
  The consumer's ``MaxDeliver`` is therefore left unlimited, not set to the receive count: with
  a bounded MaxDeliver, a move that failed on the last delivery (the daemon killed, the server
  unreachable for a moment) would leave the message in the stream, never delivered again and
  never dead-lettered. Unlimited, it comes back after AckWait and the move is tried again;
* the client reconnects by itself (nats-py, forever); a poller that meets a closed or absent
  server backs off (0.1 s doubling to 5 s) and tries again — never a crash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, urlsplit

from lambdad.errors import InvalidParameterValue, ServiceError
from lambdad.queues.records import Record
from lambdad.queues.store import QUEUE_NAME_RE, QueueStore, queue_arn

POLL_S: Final = 0.5  # an idle poller re-checks this often even without a wake-up
NATS_DEFAULT_VISIBILITY_S: Final = 30.0


class Source(Protocol):
    arn: str

    async def receive(self, limit: int, window_s: float) -> list[Record]: ...
    async def ack(self, records: Sequence[Record]) -> None: ...
    async def release(self, records: Sequence[Record]) -> None: ...
    async def close(self) -> None: ...


class EmbeddedSource:
    """A mapping's view of one embedded queue."""

    def __init__(self, store: QueueStore, queue: str) -> None:
        self.store = store
        self.queue = queue
        self.arn = queue_arn(queue)
        # Processed messages whose delete rides on the next receive's transaction (at most
        # one poll interval later). Lost with a killed daemon: then they are delivered again,
        # which at-least-once allows.
        self._acked: list[str] = []

    async def receive(self, limit: int, window_s: float) -> list[Record]:
        waker = self.store.waker(self.queue)
        got: list[Record] = []
        deadline: float | None = None
        while True:
            waker.clear()
            acked, self._acked = self._acked, []
            try:
                received = await self.store.receive(self.queue, limit - len(got), acked)
            except BaseException:
                self._acked = acked + self._acked
                raise
            for m in received:
                got.append(Record(m.id, m.receipt, m.body, m.attributes, m.sent,
                                  m.receive_count, m.first_receive))  # fmt: skip
            if len(got) >= limit:
                return got
            now = time.monotonic()
            if got and deadline is None:
                deadline = now + window_s
            if got and deadline is not None and now >= deadline:
                return got
            timeout = POLL_S if deadline is None else min(POLL_S, deadline - now)
            try:
                await asyncio.wait_for(waker.wait(), timeout)
            except TimeoutError:
                if not got:
                    return got  # let the poller look at its settings again

    async def ack(self, records: Sequence[Record]) -> None:
        self._acked += [r.receipt for r in records]
        self.store.waker(self.queue).set()  # an idle poller flushes the deletes now

    async def release(self, records: Sequence[Record]) -> None:
        """Failed messages stay invisible for the rest of their visibility timeout (as on
        SQS: Lambda does not change their visibility)."""

    async def close(self) -> None:
        acked, self._acked = self._acked, []
        await self.store.delete(acked)


@dataclass(frozen=True, slots=True)
class NatsTarget:
    """A parsed ``nats://HOST:PORT/STREAM?...`` source."""

    url: str  # as given
    server: str  # nats://HOST:PORT
    stream: str
    visibility_timeout_s: float = NATS_DEFAULT_VISIBILITY_S
    max_receive_count: int | None = None
    dead_letter: str | None = None  # subject

    @property
    def dead_letter_subject(self) -> str:
        return self.dead_letter or f"{self.stream}.dead-letter"

    @classmethod
    def parse(cls, url: str) -> NatsTarget:
        """Raises InvalidParameterValue naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "nats" or not parts.hostname or parts.port is None:
            raise InvalidParameterValue(
                f"{url!r}: a NATS source is nats://HOST:PORT/STREAM", field="queue"
            )
        stream = parts.path.lstrip("/")
        if not QUEUE_NAME_RE.fullmatch(stream):
            raise InvalidParameterValue(
                f"{url!r}: stream name {stream!r} must be 1 to 80 letters, digits, '-' or '_'",
                field="queue",
            )
        query = parse_qs(parts.query, strict_parsing=False)
        unknown = set(query) - {"visibility_timeout", "max_receive_count", "dead_letter"}
        if unknown:
            raise InvalidParameterValue(
                f"{url!r}: unknown option(s) {sorted(unknown)}", field="queue"
            )
        visibility = NATS_DEFAULT_VISIBILITY_S
        count = None
        try:
            if "visibility_timeout" in query:
                visibility = float(query["visibility_timeout"][-1])
                if not 1 <= visibility <= 12 * 3600:
                    raise ValueError("visibility_timeout must be 1 to 43200 seconds")
            if "max_receive_count" in query:
                count = int(query["max_receive_count"][-1])
                if not 1 <= count <= 1000:
                    raise ValueError("max_receive_count must be 1 to 1000")
        except ValueError as exc:
            raise InvalidParameterValue(f"{url!r}: {exc}", field="queue") from None
        dead = query["dead_letter"][-1] if "dead_letter" in query else None
        return cls(url, f"nats://{parts.hostname}:{parts.port}", stream, visibility, count, dead)


class NatsSource:
    """A mapping's durable pull consumer on a JetStream stream."""

    def __init__(self, target: NatsTarget, consumer: str) -> None:
        self.target = target
        self.consumer = consumer
        self.arn = target.server + "/" + target.stream
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._held: dict[str, Any] = {}  # receipt -> nats message, until acked

    async def _connect(self) -> None:
        import nats
        from nats.js import api
        from nats.js.errors import NotFoundError

        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                servers=[self.target.server],
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                connect_timeout=2,
            )
            self._js = self._nc.jetstream(timeout=5)
            self._sub = None
        if self._sub is not None:
            return
        t = self.target
        for name, subject in ((t.stream, t.stream), (f"{t.stream}_DLQ", t.dead_letter_subject)):
            try:
                await self._js.stream_info(name)
            except NotFoundError:
                await self._js.add_stream(
                    api.StreamConfig(name=name, subjects=[subject], storage=api.StorageType.FILE)
                )
        config = api.ConsumerConfig(
            durable_name=self.consumer,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=t.visibility_timeout_s,
            max_deliver=-1,  # see the module docstring: the receive count is lambdad's
            filter_subject=t.stream,
        )
        await self._js.add_consumer(t.stream, config)
        self._sub = await self._js.pull_subscribe_bind(durable=self.consumer, stream=t.stream)

    async def receive(self, limit: int, window_s: float) -> list[Record]:
        from nats.errors import TimeoutError as NatsTimeout

        await self._connect()
        got: list[Record] = []
        deadline = time.monotonic() + max(window_s, 0.0)
        wait = POLL_S
        while len(got) < limit:
            try:
                msgs = await self._sub.fetch(limit - len(got), timeout=wait)
            except (NatsTimeout, TimeoutError):
                if not self._nc.is_connected:
                    raise ServiceError(
                        f"NATS server {self.target.server} is unreachable (reconnecting)"
                    ) from None
                msgs = []
            for msg in msgs:
                record = await self._record(msg)
                if record is not None:
                    got.append(record)
            remaining = deadline - time.monotonic()
            if not got or remaining <= 0:
                break
            wait = max(remaining, 0.05)
        return got

    async def _record(self, msg: Any) -> Record | None:
        meta = msg.metadata
        count = int(meta.num_delivered)
        seq = int(meta.sequence.stream)
        headers = dict(msg.headers or {})
        if self.target.max_receive_count is not None and count > self.target.max_receive_count:
            headers["Lambdad-Receive-Count"] = str(count - 1)
            headers["Lambdad-Original-Sequence"] = str(seq)
            await self._js.publish(self.target.dead_letter_subject, msg.data, headers=headers)
            await msg.ack()
            return None
        receipt = msg.reply
        self._held[receipt] = msg
        sent = meta.timestamp.timestamp() if meta.timestamp is not None else time.time()
        attributes = {
            k: {"DataType": "String", "StringValue": str(v)}
            for k, v in headers.items()
            if not k.startswith("Nats-")
        }
        mid = headers.get("Nats-Msg-Id") or f"{self.target.stream}-{seq}"
        return Record(mid, receipt, bytes(msg.data), attributes, sent, count, sent)

    async def ack(self, records: Sequence[Record]) -> None:
        for r in records:
            msg = self._held.pop(r.receipt, None)
            if msg is not None:
                await msg.ack()

    async def release(self, records: Sequence[Record]) -> None:
        # Not nak'd: the message comes back when AckWait (the visibility timeout) ends.
        for r in records:
            self._held.pop(r.receipt, None)

    async def close(self) -> None:
        self._held.clear()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.close()
            except Exception:
                pass
        self._nc = None
