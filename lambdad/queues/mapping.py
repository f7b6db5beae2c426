"""Event-source mappings: queues (embedded or NATS) polled in batches into a function.

A mapping's settings are a plain frozen dataclass (:class:`MappingSettings`), persisted in
``<state>/event-source-mappings.json`` (temp file + fsync + rename). :class:`QueueTriggers`
is the component that owns the embedded queues (:class:`~lambdad.queues.store.QueueStore`)
and runs, for every enabled mapping, up to ``max_concurrency`` pollers. Each poller:

1. receives a batch (``batch_size`` messages, waiting up to ``window_s`` for it to fill);
2. invokes the function synchronously with the batch in SQS's event shape
   (:mod:`lambdad.queues.records`; a batch over the 6 MB payload limit is split);
3. deletes (acks) what succeeded and leaves what failed to come back after the visibility
   timeout — all of the batch on a function error, only the reported items under
   ``ReportBatchItemFailures``, exactly as Lambda reads partial batch responses.

Nothing is deleted before the invocation that processed it has ended, so a daemon killed at
any instant loses no message (the visibility timeout brings it back). A mapping whose queue or
function is missing, a throttle, a NATS server that went away: the poller records the error
(``last_error``), backs off (0.1 s doubling to 5 s) and tries again; it never crashes.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import (
    InvalidParameterValue,
    LambdadError,
    ResourceConflict,
    ResourceNotFound,
    TooManyRequests,
)
from lambdad.functions import NAME_RE
from lambdad.queues.records import BatchFailed, Record, failed_items, sqs_event
from lambdad.queues.sources import EmbeddedSource, NatsSource, NatsTarget, Source
from lambdad.queues.store import REGION, QueueStore, parse_queue_ref
from lambdad.service import Service

log = logging.getLogger("lambdad")

MIN_BATCH: Final = 1
MAX_BATCH: Final = 10_000  # Lambda's limit for a standard SQS queue
MAX_WINDOW_S: Final = 300.0
DEFAULT_BATCH: Final = 10
DEFAULT_CONCURRENCY: Final = 5  # pollers of a mapping without ScalingConfig.MaximumConcurrency
MIN_CONCURRENCY: Final = 2  # ScalingConfig.MaximumConcurrency: 2..1000, as on Lambda
MAX_CONCURRENCY: Final = 1000
BACKOFF_FIRST_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0
MAPPING_NAME_RE = NAME_RE


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """One event-source mapping (the fields of Lambda's CreateEventSourceMapping)."""

    uuid: str  # Lambda's UUID of the mapping
    name: str  # lambdad's name for it (the trigger's name); the API names it by UUID
    function: str
    qualifier: str | None  # a version or alias; None = $LATEST
    source: str  # an embedded queue's name, or nats://HOST:PORT/STREAM[?...]
    batch_size: int = DEFAULT_BATCH  # BatchSize, 1..10,000
    window_s: float = 0.0  # MaximumBatchingWindowInSeconds, 0..300
    report_batch_item_failures: bool = False  # FunctionResponseTypes: ["ReportBatchItemFailures"]
    max_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency, 2..1000
    enabled: bool = True  # Enabled: a disabled mapping delivers nothing
    last_modified: float = 0.0

    @property
    def is_nats(self) -> bool:
        return self.source.startswith("nats://")

    @property
    def pollers(self) -> int:
        return self.max_concurrency or DEFAULT_CONCURRENCY

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> MappingSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def check_settings(
    name: object,
    function: object,
    source: object,
    *,
    batch_size: object = DEFAULT_BATCH,
    window_s: object = 0.0,
    report_batch_item_failures: object = False,
    max_concurrency: object = None,
    enabled: object = True,
    mapping_uuid: str | None = None,
) -> MappingSettings:
    """Validated settings (Lambda's rules). Raises InvalidParameterValue naming the field."""
    if not isinstance(name, str) or not MAPPING_NAME_RE.fullmatch(name):
        raise InvalidParameterValue(
            f"mapping name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}", field="name"
        )
    if not isinstance(function, str) or not function:
        raise InvalidParameterValue(f"function must be a name, got {function!r}", field="function")
    fn, _, qualifier = function.partition(":")
    if not NAME_RE.fullmatch(fn):
        raise InvalidParameterValue(f"bad function name {fn!r}", field="function")
    if not isinstance(source, str) or not source:
        raise InvalidParameterValue(f"queue must be a queue name, ARN or nats:// URL, got "
                                    f"{source!r}", field="queue")  # fmt: skip
    if source.startswith("nats://"):
        NatsTarget.parse(source)
    else:
        source = parse_queue_ref(source)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InvalidParameterValue(f"batch_size must be an integer, got {batch_size!r}",
                                    field="batch_size")  # fmt: skip
    if not MIN_BATCH <= batch_size <= MAX_BATCH:
        raise InvalidParameterValue(
            f"batch_size must be from {MIN_BATCH} to {MAX_BATCH}, got {batch_size}",
            field="batch_size",
        )
    if isinstance(window_s, bool) or not isinstance(window_s, int | float):
        raise InvalidParameterValue(f"window_s must be a number, got {window_s!r}",
                                    field="window_s")  # fmt: skip
    if not 0 <= window_s <= MAX_WINDOW_S:
        raise InvalidParameterValue(
            f"window_s must be from 0 to {MAX_WINDOW_S:g} seconds, got {window_s}",
            field="window_s",
        )
    if batch_size > 10 and window_s < 1:
        # Lambda's rule for standard queues: batches over 10 need a batching window.
        raise InvalidParameterValue(
            f"a batch_size over 10 ({batch_size}) needs window_s (MaximumBatchingWindowInSeconds)"
            " of at least 1 second",
            field="window_s",
        )
    if not isinstance(report_batch_item_failures, bool):
        raise InvalidParameterValue("report_batch_item_failures must be true or false",
                                    field="report_batch_item_failures")  # fmt: skip
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or not MIN_CONCURRENCY <= max_concurrency <= MAX_CONCURRENCY
    ):
        raise InvalidParameterValue(
            f"max_concurrency must be an integer from {MIN_CONCURRENCY} to {MAX_CONCURRENCY}, "
            f"got {max_concurrency!r}",
            field="max_concurrency",
        )
    if not isinstance(enabled, bool):
        raise InvalidParameterValue("enabled must be true or false", field="enabled")
    return MappingSettings(
        uuid=mapping_uuid or str(uuid.uuid4()),
        name=name,
        function=fn,
        qualifier=qualifier or None,
        source=source,
        batch_size=batch_size,
        window_s=float(window_s),
        report_batch_item_failures=report_batch_item_failures,
        max_concurrency=max_concurrency,
        enabled=enabled,
        last_modified=time.time(),
    )


@dataclass
class MappingCounters:
    """Live counters of one mapping (not persisted)."""

    received: int = 0  # messages handed to the function
    succeeded: int = 0  # messages deleted after a successful invocation
    failed: int = 0  # messages left to come back (function error or reported item failure)
    batches: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_batch_at: float | None = None

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Running:
    settings: MappingSettings
    source: Source
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class MappingStore:
    """The persisted mappings: one JSON file, rewritten atomically on every change."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> dict[str, MappingSettings]:
        try:
            with open(self.path, encoding="utf-8") as f:
                docs = json.load(f)
        except FileNotFoundError:
            return {}
        return {d["uuid"]: MappingSettings.from_wire(d) for d in docs}

    def save(self, mappings: Sequence[MappingSettings]) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump([m.to_wire() for m in mappings], f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class QueueTriggers(Component):
    """The embedded queues and every event-source mapping (one component)."""

    name = "queues"

    def __init__(self, config: DaemonConfig, service: Service) -> None:
        self.config = config
        self.service = service
        self.queues = QueueStore(os.path.join(config.state_dir, "queues.sqlite3"))
        self.store = MappingStore(os.path.join(config.state_dir, "event-source-mappings.json"))
        self.mappings: dict[str, MappingSettings] = {}
        self.counters: dict[str, MappingCounters] = {}
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.queues.open(asyncio.get_running_loop())
        self.mappings = await asyncio.to_thread(self.store.load)
        for m in self.mappings.values():
            self.counters[m.uuid] = MappingCounters()
            self._start_mapping(m)

    async def stop(self) -> None:
        for uid in list(self._running):
            await self._stop_mapping(uid)
        await self.queues.close()

    def reload(self, config: DaemonConfig) -> None:
        self.config = config

    def on_delete(self, function: str) -> None:
        """A deleted function's mappings are disabled, explicitly (they stay, so that
        re-creating the function and enabling them resumes delivery)."""
        for m in self.list(function):
            if m.enabled:
                task = asyncio.ensure_future(self._disable_for_deleted(m))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _disable_for_deleted(self, m: MappingSettings) -> None:
        async with self._lock:
            current = self.mappings.get(m.uuid)
            if current is None:
                return
            await self._stop_mapping(m.uuid)  # first: no poller overwrites the reason below
            counters = self.counters.setdefault(m.uuid, MappingCounters())
            counters.last_error = f"function {m.function!r} was deleted: the mapping is disabled"
            counters.last_error_at = time.time()
            self.mappings[m.uuid] = dataclasses.replace(current, enabled=False,
                                                        last_modified=time.time())  # fmt: skip
            await asyncio.to_thread(self.store.save, builtins.list(self.mappings.values()))
        log.info("event source mapping %s disabled: function %s deleted", m.name, m.function)

    # -- mappings --------------------------------------------------------------------------

    def get(self, ref: str) -> MappingSettings:
        """A mapping by UUID or by name. Raises ResourceNotFound."""
        found = self.mappings.get(ref)
        if found is None:
            found = next((m for m in self.mappings.values() if m.name == ref), None)
        if found is None:
            raise ResourceNotFound(
                f"The resource you requested does not exist: event source mapping {ref!r}",
                mapping=ref,
            )
        return found

    def list(
        self, function: str | None = None, source: str | None = None
    ) -> builtins.list[MappingSettings]:
        out = sorted(self.mappings.values(), key=lambda m: (m.name, m.uuid))
        if function is not None:
            out = [m for m in out if m.function == function.partition(":")[0]]
        if source is not None:
            out = [m for m in out if m.source == source]
        return out

    def describe(self, m: MappingSettings) -> dict[str, Any]:
        counters = self.counters.setdefault(m.uuid, MappingCounters())
        return {**m.to_wire(), "source_arn": self.source_arn(m), "state":
                "enabled" if m.enabled else "disabled", "counters": counters.to_wire()}  # fmt: skip

    def source_arn(self, m: MappingSettings) -> str:
        if m.is_nats:
            return m.source
        from lambdad.queues.store import queue_arn

        return queue_arn(m.source)

    def _check_targets(self, m: MappingSettings) -> None:
        self.service.registry.get(m.function).version(m.qualifier)
        if not m.is_nats:
            self.queues.get(m.source)

    async def create(self, m: MappingSettings) -> MappingSettings:
        """Raises ResourceNotFound (function or queue), ResourceConflict (the name is taken,
        or the function already has a mapping from this queue, as on Lambda)."""
        self._check_targets(m)
        async with self._lock:
            if any(o.name == m.name for o in self.mappings.values()):
                raise ResourceConflict(f"a mapping named {m.name!r} already exists", name=m.name)
            for other in self.mappings.values():
                if other.source == m.source and other.function == m.function:
                    raise ResourceConflict(
                        f"The event source arn ({self.source_arn(m)}) and function "
                        f"({m.function}) provided mapping already exists. Please update or "
                        f"delete the existing mapping with UUID {other.uuid}",
                        uuid=other.uuid,
                    )
            self.mappings[m.uuid] = m
            await asyncio.to_thread(self.store.save, list(self.mappings.values()))
            self.counters[m.uuid] = MappingCounters()
            self._start_mapping(m)
        return m

    async def update(self, ref: str, **changes: Any) -> MappingSettings:
        """Change some settings (the same validation as create). Raises ResourceNotFound."""
        old = self.get(ref)
        merged = {
            "batch_size": old.batch_size,
            "window_s": old.window_s,
            "report_batch_item_failures": old.report_batch_item_failures,
            "max_concurrency": old.max_concurrency,
            "enabled": old.enabled,
        }
        function = old.function + (f":{old.qualifier}" if old.qualifier else "")
        if "function" in changes:
            function = changes.pop("function")
        merged.update(changes)
        new = check_settings(old.name, function, old.source, mapping_uuid=old.uuid, **merged)
        self.service.registry.get(new.function).version(new.qualifier)
        async with self._lock:
            self.mappings[old.uuid] = new
            await asyncio.to_thread(self.store.save, list(self.mappings.values()))
            await self._stop_mapping(old.uuid)
            self._start_mapping(new)
        return new

    async def delete(self, ref: str) -> MappingSettings:
        m = self.get(ref)
        async with self._lock:
            del self.mappings[m.uuid]
            await asyncio.to_thread(self.store.save, list(self.mappings.values()))
            await self._stop_mapping(m.uuid)
            self.counters.pop(m.uuid, None)
        return m

    # -- pollers ---------------------------------------------------------------------------

    def _start_mapping(self, m: MappingSettings) -> None:
        if not m.enabled:
            return
        source: Source
        if m.is_nats:
            source = NatsSource(NatsTarget.parse(m.source), f"lambdad-{m.name}")
            pollers = 1  # one fetcher; its batches run concurrently (below)
        else:
            source = EmbeddedSource(self.queues, m.source)
            pollers = m.pollers
        running = _Running(m, source)
        for _ in range(pollers):
            running.tasks.append(asyncio.ensure_future(self._poll(running)))
        self._running[m.uuid] = running

    async def _stop_mapping(self, uid: str) -> None:
        running = self._running.pop(uid, None)
        if running is None:
            return
        for task in running.tasks:
            task.cancel()
        await asyncio.gather(*running.tasks, return_exceptions=True)
        await running.source.close()

    async def _poll(self, running: _Running) -> None:
        m = running.settings
        counters = self.counters.setdefault(m.uuid, MappingCounters())
        backoff = BACKOFF_FIRST_S
        in_flight: set[asyncio.Task[None]] = set()
        # NATS: one fetching poller; up to max_concurrency batches run at once.
        limit = asyncio.Semaphore(m.pollers if m.is_nats else 1)
        while True:
            try:
                if self.service.draining:
                    return
                self._check_targets(m)
                await limit.acquire()
                try:
                    records = await running.source.receive(m.batch_size, m.window_s)
                except BaseException:
                    limit.release()
                    raise
                if not records:
                    limit.release()
                    continue
                task = asyncio.ensure_future(
                    self._deliver_noting_errors(m, running.source, records, counters)
                )
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(lambda _t: limit.release())
                if not m.is_nats:
                    await task
                backoff = BACKOFF_FIRST_S
            except asyncio.CancelledError:
                for t in in_flight:
                    t.cancel()
                raise
            except Exception as exc:
                message = exc.message if isinstance(exc, LambdadError) else repr(exc)
                if counters.last_error != message:
                    log.warning("event source mapping %s: %s; retrying", m.name, message)
                counters.last_error = message
                counters.last_error_at = time.time()
                await asyncio.sleep(backoff)  # a back-off between retries, not a wait-for
                backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _deliver_noting_errors(
        self,
        m: MappingSettings,
        source: Source,
        records: builtins.list[Record],
        counters: MappingCounters,
    ) -> None:
        try:
            await self._deliver(m, source, records, counters)
        except Exception as exc:
            message = exc.message if isinstance(exc, LambdadError) else repr(exc)
            counters.last_error = message
            counters.last_error_at = time.time()
            if m.is_nats:
                return  # the messages come back after AckWait; the fetcher carries on
            raise

    async def _deliver(
        self,
        m: MappingSettings,
        source: Source,
        records: builtins.list[Record],
        counters: MappingCounters,
    ) -> None:
        counters.received += len(records)
        counters.last_batch_at = time.time()
        ok: builtins.list[Record] = []
        failed: builtins.list[Record] = []
        try:
            for chunk in self._chunks(source, records):
                good, bad = await self._invoke(m, source, chunk, counters)
                ok += good
                failed += bad
        except BaseException:
            await source.release(records)
            raise
        finally:
            if ok:
                await source.ack(ok)
            counters.succeeded += len(ok)
            counters.failed += len(failed)
        if failed:
            await source.release(failed)

    def _chunks(
        self, source: Source, records: builtins.list[Record]
    ) -> builtins.list[builtins.list[Record]]:
        """The batch, split until each part's payload fits the synchronous limit."""
        limit = self.config.sync_payload_max
        out: builtins.list[builtins.list[Record]] = []
        todo = [records]
        while todo:
            part = todo.pop()
            if len(part) > 1 and len(sqs_event(part, source.arn, REGION)) > limit:
                half = len(part) // 2
                todo += [part[half:], part[:half]]
            else:
                out.append(part)
        return out

    async def _invoke(
        self,
        m: MappingSettings,
        source: Source,
        records: builtins.list[Record],
        counters: MappingCounters,
    ) -> tuple[builtins.list[Record], builtins.list[Record]]:
        version = self.service.registry.get(m.function).version(m.qualifier)
        payload = sqs_event(records, source.arn, REGION)
        counters.batches += 1
        try:
            result = await self.service.run(version, payload, qualifier=m.qualifier)
        except TooManyRequests as exc:
            counters.last_error = f"throttled: {exc.message}"
            counters.last_error_at = time.time()
            raise
        if result.error is not None:
            counters.last_error = (
                f"{result.error.get('errorType')}: {result.error.get('errorMessage')}"
            )
            counters.last_error_at = time.time()
            return [], records
        if not m.report_batch_item_failures:
            return records, []
        try:
            bad = failed_items(result.result, [r.message_id for r in records])
        except BatchFailed as exc:
            counters.last_error = f"partial batch response: {exc}"
            counters.last_error_at = time.time()
            return [], records
        return [r for r in records if r.message_id not in bad], [
            r for r in records if r.message_id in bad
        ]
