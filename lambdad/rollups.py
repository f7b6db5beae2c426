"""Statistics that survive restarts: per-minute roll-ups per function, persisted in SQLite.

``lambdad stats`` counted from zero after every restart and had no history (issue 13, point
7). Now, every :data:`FLUSH_S` seconds, :class:`Rollups` takes what each function's in-memory
:class:`~lambdad.metering.FunctionStats` gained since the last flush (invocations, errors,
throttles, cold starts, GB-seconds, and the durations of the invocations in between) and adds
it, in one transaction, to

* ``minutes``: one row per function and minute (the minute the flush ran in, so a count may
  land up to :data:`FLUSH_S` late), with the durations as a log-bucketed histogram
  (:class:`Histogram`, buckets 9 % wide) so that percentiles over any span of minutes can be
  merged exactly to the bucket;
* ``totals``: one row per function, the counters since the function was created.

At start the totals are added back into the in-memory counters, so ``stats`` and the
Prometheus counters (``lambdad_invocations`` ...) continue where they were instead of going
back to zero. A SIGKILL loses at most the last :data:`FLUSH_S` seconds; a graceful stop
flushes. Retention is bounded: minutes older than ``rollup_retention_s`` are deleted, and the
table never holds more than ``rollup_max_rows`` rows (oldest first). All database work runs on
one worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.metering import FunctionStats

log = logging.getLogger("lambdad")

FLUSH_S: Final = 5.0
PRUNE_EVERY_S: Final = 60.0
COUNTERS: Final = ("invocations", "errors", "throttles", "cold_starts")

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS minutes (
    function TEXT NOT NULL,
    minute INTEGER NOT NULL,        -- unix time of the minute's start
    invocations INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    throttles INTEGER NOT NULL,
    cold_starts INTEGER NOT NULL,
    gb_seconds REAL NOT NULL,
    durations TEXT NOT NULL,        -- JSON {bucket: count}, see Histogram
    PRIMARY KEY (function, minute)
);
CREATE INDEX IF NOT EXISTS minutes_by_age ON minutes (minute);
CREATE TABLE IF NOT EXISTS totals (
    function TEXT PRIMARY KEY,
    invocations INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    throttles INTEGER NOT NULL,
    cold_starts INTEGER NOT NULL,
    gb_seconds REAL NOT NULL
);
"""


_ADD: Final = ",".join(f" {c} = {c} + excluded.{c}" for c in (*COUNTERS, "gb_seconds"))


class Histogram:
    """Durations in log-spaced buckets: bucket ``b`` holds (LOW * F**(b-1), LOW * F**b] ms.

    F = 2**(1/8), about 9 % per bucket: a percentile read from it is the bucket's upper bound,
    at most 9 % above the true value. Bucket 0 holds everything up to LOW (10 µs).
    """

    LOW: Final = 0.01
    F: Final = 2 ** (1 / 8)

    @classmethod
    def bucket(cls, duration_ms: float) -> int:
        if duration_ms <= cls.LOW:
            return 0
        return max(0, math.ceil(math.log(duration_ms / cls.LOW, cls.F) - 1e-9))

    @classmethod
    def upper(cls, bucket: int) -> float:
        return round(cls.LOW * cls.F**bucket, 3)

    @classmethod
    def add(cls, counts: dict[int, int], durations: Iterable[float]) -> None:
        for d in durations:
            b = cls.bucket(d)
            counts[b] = counts.get(b, 0) + 1

    @classmethod
    def add_counts(cls, counts: dict[int, int], other: Mapping[int, int]) -> None:
        for b, n in other.items():
            counts[b] = counts.get(b, 0) + n

    @classmethod
    def percentile(cls, counts: Mapping[int, int], q: float) -> float:
        total = sum(counts.values())
        if not total:
            return 0.0
        rank = max(1, math.ceil(q * total))
        seen = 0
        for b in sorted(counts):
            seen += counts[b]
            if seen >= rank:
                return cls.upper(b)
        return cls.upper(max(counts))


@dataclass
class Delta:
    """What one function gained between two flushes."""

    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    gb_seconds: float = 0.0
    durations: dict[int, int] = field(default_factory=dict)

    def empty(self) -> bool:
        return not any(self.counters.values()) and not self.gb_seconds and not self.durations


class RollupStore:
    """The SQLite side; every method runs on the caller's (worker) thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None

    def open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a lost last flush is acceptable; torn is not
        db.executescript(SCHEMA)
        self.db = db

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def totals(self) -> dict[str, tuple[int, int, int, int, float]]:
        assert self.db is not None
        rows = self.db.execute(
            "SELECT function, invocations, errors, throttles, cold_starts, gb_seconds FROM totals"
        ).fetchall()
        return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4]), float(r[5])) for r in rows}

    def add(self, minute: int, deltas: Mapping[str, Delta]) -> None:
        assert self.db is not None
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for name, d in deltas.items():
                c = d.counters
                row = self.db.execute(
                    "SELECT durations FROM minutes WHERE function=? AND minute=?", (name, minute)
                ).fetchone()
                hist = {int(k): int(v) for k, v in json.loads(row[0]).items()} if row else {}
                Histogram.add_counts(hist, d.durations)
                values = (c["invocations"], c["errors"], c["throttles"], c["cold_starts"])
                self.db.execute(
                    "INSERT INTO minutes VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT"
                    " (function, minute) DO UPDATE SET" + _ADD + ", durations = excluded.durations",
                    (name, minute, *values, d.gb_seconds, json.dumps(hist)),
                )
                self.db.execute(
                    "INSERT INTO totals VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (function)"
                    " DO UPDATE SET" + _ADD,
                    (name, *values, d.gb_seconds),
                )

    def prune(self, oldest_minute: int, max_rows: int) -> int:
        """Delete minutes before ``oldest_minute``, then the oldest beyond ``max_rows``."""
        assert self.db is not None
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            gone = self.db.execute("DELETE FROM minutes WHERE minute < ?", (oldest_minute,))
            removed = gone.rowcount
            (rows,) = self.db.execute("SELECT count(*) FROM minutes").fetchone()
            if rows > max_rows:
                extra = self.db.execute(
                    "DELETE FROM minutes WHERE rowid IN"
                    " (SELECT rowid FROM minutes ORDER BY minute LIMIT ?)",
                    (rows - max_rows,),
                )
                removed += extra.rowcount
        return int(removed)

    def forget(self, name: str) -> None:
        """A deleted function's totals (a new function of the same name starts from zero)."""
        assert self.db is not None
        self.db.execute("DELETE FROM totals WHERE function=?", (name,))

    def query(self, since: int, name: str | None) -> list[tuple[Any, ...]]:
        assert self.db is not None
        sql = (
            "SELECT function, minute, invocations, errors, throttles, cold_starts, gb_seconds,"
            " durations FROM minutes WHERE minute >= ?"
        )
        params: tuple[Any, ...] = (since,)
        if name is not None:
            sql += " AND function = ?"
            params = (since, name)
        return self.db.execute(sql + " ORDER BY function, minute", params).fetchall()


StatsSource = Callable[[], Iterable[tuple[str, FunctionStats]]]


class Rollups(Component):
    """Flushes every function's statistics into the store; answers ``stats --since``."""

    name = "rollups"

    def __init__(self, config: DaemonConfig, path: str, source: StatsSource) -> None:
        self.config = config
        self.store = RollupStore(path)
        self.source = source
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rollups")
        # What each function's FunctionStats held at the last flush, and which object it was
        # (a deleted and re-created function has a new one that starts from zero).
        self._last: dict[str, tuple[int, tuple[int, ...], float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._lock = asyncio.Lock()

    async def _run_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        await self._run_db(self.store.open)
        totals: dict[str, tuple[int, int, int, int, float]] = await self._run_db(self.store.totals)
        for name, stats in self.source():
            saved = totals.get(name)
            if saved is not None:
                stats.invocations += saved[0]
                stats.errors += saved[1]
                stats.throttles += saved[2]
                stats.cold_starts += saved[3]
                stats.gb_seconds += saved[4]
            stats.pending_durations.clear()
            self._last[name] = (id(stats), _counters(stats), stats.gb_seconds)
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self.flush()
        finally:
            await self._run_db(self.store.close)
            self._executor.shutdown(wait=True)

    def reload(self, config: DaemonConfig) -> None:
        self.config = config

    def on_delete(self, function: str) -> None:
        self._last.pop(function, None)
        # On the database thread, after any flush already queued there.
        self._executor.submit(self.store.forget, function)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except Exception:
                log.exception("statistics roll-up failed")

    def _deltas(self) -> dict[str, Delta]:
        """What every function gained since the last call (loop thread: no await inside)."""
        out: dict[str, Delta] = {}
        for name, stats in self.source():
            now = _counters(stats)
            ident, before, gb_before = self._last.get(name, (id(stats), (0,) * len(now), 0.0))
            if ident != id(stats):  # re-created: everything it holds is new
                before, gb_before = (0,) * len(now), 0.0
            self._last[name] = (id(stats), now, stats.gb_seconds)
            d = Delta(
                counters={k: a - b for k, a, b in zip(COUNTERS, now, before, strict=True)},
                gb_seconds=stats.gb_seconds - gb_before,
            )
            Histogram.add(d.durations, stats.pending_durations)
            stats.pending_durations.clear()
            if not d.empty():
                out[name] = d
        return out

    async def flush(self) -> None:
        """Write what was gained since the last flush; prune now and then."""
        async with self._lock:
            deltas = self._deltas()
            now = time.time()
            if deltas:
                await self._run_db(self.store.add, int(now // 60 * 60), deltas)
            if now - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = now
                oldest = int((now - self.config.rollup_retention_s) // 60 * 60)
                await self._run_db(self.store.prune, oldest, self.config.rollup_max_rows)

    async def history(self, since_s: float, name: str | None) -> dict[str, Any]:
        """Per-minute statistics of the last ``since_s`` seconds, per function, with their
        sums (percentiles merged over the minutes' histograms)."""
        await self.flush()  # include what the last seconds added
        now = time.time()
        since = int((now - since_s) // 60 * 60)
        rows = await self._run_db(self.store.query, since, name)
        functions: dict[str, dict[str, Any]] = {}
        merged: dict[str, dict[int, int]] = {}
        for fn, minute, inv, err, thr, cold, gbs, durations in rows:
            hist = {int(k): int(v) for k, v in json.loads(durations).items()}
            entry = functions.setdefault(
                fn, {"total": dict.fromkeys(COUNTERS, 0) | {"gb_seconds": 0.0}, "minutes": []}
            )
            total = entry["total"]
            for key, value in zip(COUNTERS, (inv, err, thr, cold), strict=True):
                total[key] += value
            total["gb_seconds"] += gbs
            Histogram.add_counts(merged.setdefault(fn, {}), hist)
            entry["minutes"].append(
                {
                    "minute": minute,
                    "invocations": inv,
                    "errors": err,
                    "throttles": thr,
                    "cold_starts": cold,
                    "gb_seconds": round(gbs, 6),
                    "duration_ms": _quantiles(hist),
                }
            )
        for fn, entry in functions.items():
            entry["total"]["gb_seconds"] = round(entry["total"]["gb_seconds"], 6)
            entry["total"]["duration_ms"] = _quantiles(merged[fn])
        return {"since": since, "until": int(now), "functions": functions}


def _counters(stats: FunctionStats) -> tuple[int, ...]:
    return (stats.invocations, stats.errors, stats.throttles, stats.cold_starts)


def _quantiles(hist: Mapping[int, int]) -> dict[str, float]:
    return {q: Histogram.percentile(hist, v) for q, v in (("p50", 0.5), ("p99", 0.99))}
