"""What was delivered, per object: the index the rescan at start compares the disk with.

SQLite (``STATE/buckets/index.sqlite3``, WAL): one row per (bucket, key) with the size,
modification time and eTag of the version whose ObjectCreated events were stored. The order
of writes is the guarantee: an event is stored durably (:meth:`Service.enqueue`) *before* its
row changes, so a ``kill -9`` between the two leaves a row that still differs from the disk,
and the rescan stores the event again — under the same id, which the store ignores. A lost
index write costs a duplicate check, never an event.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Entry:
    size: int
    mtime_ns: int
    etag: str


class ObjectIndex:
    """Thread-safe (one connection behind a lock): called from worker threads."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a crash of the process loses nothing; a power cut may lose the last rows,
        # which only makes the rescan re-check (and re-store, deduplicated) those objects.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, bucket: str, key: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, etag FROM objects WHERE bucket = ? AND key = ?",
                (bucket, key),
            ).fetchone()
        return None if row is None else Entry(*row)

    def entries(self, bucket: str, under: str = "") -> dict[str, Entry]:
        """Every row of ``bucket`` whose key starts with ``under``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, size, mtime_ns, etag FROM objects WHERE bucket = ? "
                "AND substr(key, 1, ?) = ?",
                (bucket, len(under), under),
            ).fetchall()
        return {key: Entry(size, mtime, etag) for key, size, mtime, etag in rows}

    def put(self, bucket: str, key: str, entry: Entry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                (bucket, key, entry.size, entry.mtime_ns, entry.etag),
            )

    def put_many(self, bucket: str, items: Iterable[tuple[str, Entry]]) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                ((bucket, k, e.size, e.mtime_ns, e.etag) for k, e in items),
            )

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))

    def drop(self, bucket: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM objects WHERE bucket = ?", (bucket,))


__all__ = ["Entry", "ObjectIndex"]
