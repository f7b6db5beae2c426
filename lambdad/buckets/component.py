"""The buckets component: bucket records, their watches, and object events to s3 triggers.

Every change the watcher hints at, and every bucket at start (the *rescan*), goes through one
path, :meth:`Buckets.reconcile`: compare the disk with the delivered-object index
(:mod:`lambdad.buckets.index`), and for each difference — an object new or changed
(``ObjectCreated:Put``) or gone (``ObjectRemoved:Delete``) — store one async event per
matching ``s3`` trigger through :meth:`Service.enqueue` (idempotent by an id derived from the
trigger, the key and the object's version, :func:`records.event_id`), *then* update the index.
So an event is delivered at least once across ``kill -9`` and restarts (docs/triggers-buckets.md,
"Delivery guarantees"). Changes are applied one at a time, in the order seen, by one task.

A file found by a scan that changed in the last :data:`SETTLE_S` may still be being written
(its ``IN_CLOSE_WRITE`` is yet to come): it is left for a scan :data:`SETTLE_S` later.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from typing import Any, Final

from lambdad.buckets import records
from lambdad.buckets.index import Entry, ObjectIndex
from lambdad.buckets.store import Bucket, BucketStore
from lambdad.buckets.watcher import Change, Watcher, hidden
from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import LambdadError, ResourceConflict, ResourceNotFound, ServiceError
from lambdad.service import Service
from lambdad.triggers.manager import of as triggers_of
from lambdad.triggers.store import Counters, Trigger

log = logging.getLogger("lambdad")

SETTLE_S: Final = 1.0  # a scanned file younger than this may still be being written
POLL_S: Final = 2.0  # the scan period of a bucket without inotify watches
RETRY_S: Final = (0.5, 1.0, 2.0, 5.0, 10.0)  # an event the store refused: retried after


def of(service: Service) -> Buckets:
    component = service.components.get("buckets")
    if not isinstance(component, Buckets):
        raise ServiceError("buckets are not running in this daemon")
    return component


def md5_of(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Buckets(Component):
    name = "buckets"

    def __init__(self, config: DaemonConfig, service: Service) -> None:
        self.config = config
        self.service = service
        self.store = BucketStore(config.state_dir)
        self.index = ObjectIndex(os.path.join(config.state_dir, "buckets", "index.sqlite3"))
        self.watcher = Watcher(self.hint)
        self.unavailable: dict[str, str] = {}  # bucket -> why it is not watched
        self.delivered = 0  # events stored since start
        self._changes: asyncio.Queue[Change] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._retries = 0
        for line in self.store.load_errors:
            log.warning("skipped a damaged bucket record: %s", line)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._changes = asyncio.Queue()
        self.watcher.start(asyncio.get_running_loop())
        for bucket in self.store:
            self._watch(bucket)
        self._tasks = [
            asyncio.ensure_future(self._apply_changes()),
            asyncio.ensure_future(self._poll()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.watcher.stop()
        self.index.close()

    def _watch(self, bucket: Bucket) -> None:
        """Watches first, then the rescan: a change during the scan is also a hint."""
        if not os.path.isdir(bucket.path):
            reason = f"its directory {bucket.path} does not exist"
            self.unavailable[bucket.name] = reason
            log.error("bucket %r is not watched: %s", bucket.name, reason)
            return
        self.unavailable.pop(bucket.name, None)
        self.watcher.watch(bucket.name, bucket.path)
        self.hint(Change(bucket.name, "", True))

    def hint(self, change: Change) -> None:
        if self._changes is not None:
            self._changes.put_nowait(change)

    # -- operations ------------------------------------------------------------------------

    async def create(self, name: Any, path: Any = None) -> Bucket:
        """A new bucket. The objects already in an existing ``path`` are indexed as they
        are (no events: they were there before any trigger could be). Raises like
        :meth:`BucketStore.create`."""
        bucket = self.store.create(name, path)
        await asyncio.to_thread(self._index_as_is, bucket)
        self._watch(bucket)
        return bucket

    def _index_as_is(self, bucket: Bucket) -> None:
        self.index.drop(bucket.name)
        found = [(key, Entry(st.st_size, st.st_mtime_ns, md5_of(path)))
                 for key, path, st in self._files(bucket, "")]  # fmt: skip
        self.index.put_many(bucket.name, found)

    async def remove(self, name: str) -> Bucket:
        """Raises ResourceNotFound, ResourceConflict (an s3 trigger uses it; a managed
        bucket holds objects)."""
        users = [t.name for t in self._s3_triggers() if t.settings["bucket"] == name]
        self.store.get(name)
        if users:
            raise ResourceConflict(
                f"bucket {name!r} is the source of trigger(s) {', '.join(users)}", bucket=name
            )
        bucket = self.store.remove(name)
        self.watcher.unwatch(name)
        self.unavailable.pop(name, None)
        await asyncio.to_thread(self.index.drop, name)
        return bucket

    def describe(self, bucket: Bucket) -> dict[str, Any]:
        body = bucket.to_dict()
        body["arn"] = f"arn:aws:s3:::{bucket.name}"
        if bucket.name in self.unavailable:
            body["state"], body["reason"] = "unavailable", self.unavailable[bucket.name]
        elif bucket.name in self.watcher.polled:
            body["state"], body["reason"] = "polled", self.watcher.errors.get(bucket.name)
        else:
            body["state"], body["reason"] = "watched", None
        body["triggers"] = [
            t.name for t in self._s3_triggers() if t.settings["bucket"] == bucket.name
        ]
        return body

    # -- reconciling -----------------------------------------------------------------------

    async def _apply_changes(self) -> None:
        assert self._changes is not None
        while True:
            change = await self._changes.get()
            try:
                await self.reconcile(change)
            except Exception:  # one bad change must not stop the others' delivery
                log.exception("bucket %r: handling a change of %r", change.bucket, change.key)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            for name in sorted(self.watcher.polled):
                self.hint(Change(name, "", True))
            for name in list(self.unavailable):
                bucket = self.store.buckets.get(name)
                if bucket is not None and os.path.isdir(bucket.path):
                    log.info("bucket %r: its directory is back", name)
                    self._watch(bucket)

    async def reconcile(self, change: Change) -> None:
        """Deliver every difference between the disk and the index under ``change``."""
        bucket = self.store.buckets.get(change.bucket)
        if bucket is None:
            return
        if change.scan and not change.key and not os.path.isdir(bucket.path):
            # The directory itself went away: its objects are removed (delivered below), and
            # the bucket is watched again when the directory is back (_poll).
            reason = f"its directory {bucket.path} was removed"
            if bucket.name not in self.unavailable:
                log.error("bucket %r is not watched: %s", bucket.name, reason)
            self.unavailable[bucket.name] = reason
            self.watcher.unwatch(bucket.name)
        if change.scan:
            events, unsettled = await asyncio.to_thread(self._diff_tree, bucket, change.key)
            if unsettled:
                asyncio.get_running_loop().call_later(SETTLE_S, self.hint, change)
        else:
            events = await asyncio.to_thread(self._diff_one, bucket, change.key)
        for event in events:
            if not await self._deliver(event):
                # The store refused (disk below its watermark, a queue cap): the index keeps
                # the old state, so the same difference is found again, later.
                delay = RETRY_S[min(self._retries, len(RETRY_S) - 1)]
                self._retries += 1
                asyncio.get_running_loop().call_later(delay, self.hint, change)
                return
            self._retries = 0
            if event.name == records.CREATED_PUT:
                entry = Entry(event.size, event.mtime_ns, event.etag)
                await asyncio.to_thread(self.index.put, bucket.name, event.key, entry)
            else:
                await asyncio.to_thread(self.index.delete, bucket.name, event.key)

    def _files(self, bucket: Bucket, under: str) -> Iterator[tuple[str, str, os.stat_result]]:
        """(key, path, stat) of each regular file under the prefix ``under`` ("" or "dir/")."""
        top = os.path.join(bucket.path, under) if under else bucket.path
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith("."):
                    continue
                path = os.path.join(dirpath, filename)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone since the listing: its removal is another change
                if stat.S_ISREG(st.st_mode):
                    key = os.path.relpath(path, bucket.path).replace(os.sep, "/")
                    yield key, path, st

    def _diff_tree(self, bucket: Bucket, under: str) -> tuple[list[records.ObjectEvent], bool]:
        known = self.index.entries(bucket.name, under)
        events: list[records.ObjectEvent] = []
        unsettled = False
        now = time.time()
        for key, path, st in self._files(bucket, under):
            entry = known.pop(key, None)
            if entry is not None and (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
                continue
            if now - st.st_mtime_ns / 1e9 < SETTLE_S:
                unsettled = True  # maybe still being written: looked at again later
                continue
            event = self._created(bucket, key, path, st, now)
            if event is not None:
                events.append(event)
        for key, entry in sorted(known.items()):
            if os.path.isfile(os.path.join(bucket.path, key)):
                continue  # listed after the walk passed it (a new write: its own change)
            events.append(self._removed(bucket, key, entry, now))
        return events, unsettled

    def _diff_one(self, bucket: Bucket, key: str) -> list[records.ObjectEvent]:
        if hidden(key):
            return []
        path = os.path.join(bucket.path, key)
        entry = self.index.get(bucket.name, key)
        now = time.time()
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            if entry is not None and (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
                return []
            event = self._created(bucket, key, path, st, now)
            return [] if event is None else [event]
        return [] if entry is None else [self._removed(bucket, key, entry, now)]

    def _created(
        self, bucket: Bucket, key: str, path: str, st: os.stat_result, now: float
    ) -> records.ObjectEvent | None:
        try:
            etag = md5_of(path)
        except OSError:
            return None  # gone (or unreadable) since the stat: a removal, or nothing
        return records.ObjectEvent(bucket.name, key, records.CREATED_PUT, st.st_size,
                                   st.st_mtime_ns, etag, now)  # fmt: skip

    def _removed(self, bucket: Bucket, key: str, entry: Entry, now: float) -> records.ObjectEvent:
        # The sequencer of a removal must sort after the write it removes.
        version = max(entry.mtime_ns + 1, time.time_ns())
        return records.ObjectEvent(bucket.name, key, records.REMOVED_DELETE, 0, version, "", now)

    # -- delivery --------------------------------------------------------------------------

    def _s3_triggers(self) -> list[Trigger]:
        triggers = getattr(self.service, "triggers", None)
        if triggers is None:
            return []
        return [t for t in triggers_of(self.service).store if t.kind == "s3"
                and not t.settings["push"]]  # fmt: skip

    async def _deliver(self, event: records.ObjectEvent) -> bool:
        """Store the event for each matching enabled trigger. False: the store refused one
        (the rest are stored again, deduplicated, when the change is retried)."""
        manager = triggers_of(self.service)
        for trigger in self._s3_triggers():
            s = trigger.settings
            if not trigger.enabled or s["bucket"] != event.bucket:
                continue
            if not records.matches(event.name, s["events"], event.key, s["prefix"], s["suffix"]):
                continue
            counters = manager.counters.setdefault(trigger.name, Counters())
            counters.received += 1
            body = records.notification(event, trigger.name, self.config.region)
            try:
                await self.service.enqueue(
                    trigger.function,
                    trigger.qualifier,
                    _json(body),
                    event_id=records.event_id(trigger.uid, event),
                    origin=f"arn:aws:s3:::{event.bucket}",
                )
            except LambdadError as exc:
                counters.failed += 1
                counters.last_error = f"{exc.type}: {exc.message}"
                log.warning("trigger %r: %s/%s not stored: %s", trigger.name, event.bucket,
                            event.key, exc.message)  # fmt: skip
                if isinstance(exc, ResourceNotFound):
                    continue  # the function is gone: nothing to retry for
                return False
            counters.invoked += 1
            lag = (time.time() - event.time) * 1000
            counters.lag_ms = round(lag, 3)
            counters.lags_ms = [*counters.lags_ms[-999:], lag]
            self.delivered += 1
        return True


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


__all__ = ["POLL_S", "SETTLE_S", "Buckets", "md5_of", "of"]
