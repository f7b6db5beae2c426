"""inotify watches over each bucket's directory tree, and the polling fallback.

Why inotify_simple (PyPI): object events need inotify's own event types — ``IN_CLOSE_WRITE``
(a file closed after writing: never a half-written file) and ``IN_MOVED_TO`` (renamed into
place) — and watchfiles (Rust ``notify``) folds them into "added"/"modified", fired on every
``write()``. inotify_simple is a small ctypes wrapper over the three syscalls, maintained, with
no thread of its own: its descriptor is read on the event loop (``add_reader``).

What the watcher reports is a *hint* (:data:`Change`): "look at this file" or "look at this
subtree". The component compares what it finds with the delivered-object index and decides
what happened, so a missed, repeated or overflowed event costs a rescan, never a wrong event.

* A directory created (or moved in) later gets its watches at once, and its subtree is
  reported for a scan: files written before the watch existed are found that way.
* Watch-limit exhaustion (``ENOSPC``: ``fs.inotify.max_user_watches``) or no inotify at all
  (``EMFILE``: ``max_user_instances``) is logged once, naming the sysctl to raise, and the
  bucket falls back to polling (a scan every ``poll_s``); events still arrive, later.
* Names starting with ``.`` (editors' and rsync's temporary files) are not objects.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import inotify_simple

log = logging.getLogger("lambdad")

F = inotify_simple.flags
MASK: Final = int(
    F.CLOSE_WRITE | F.MOVED_TO | F.MOVED_FROM | F.DELETE | F.CREATE | F.DELETE_SELF
    | F.MOVE_SELF | F.DONT_FOLLOW | F.EXCL_UNLINK
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Change:
    """A hint from the watcher: ``key`` is one object (``scan`` False) or a subtree's prefix
    (``scan`` True; "" = the whole bucket)."""

    bucket: str
    key: str
    scan: bool


def hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in relpath.split("/"))


class Watcher:
    """Watches for every bucket; ``report`` gets each :class:`Change` (on the loop)."""

    def __init__(self, report: Callable[[Change], None]) -> None:
        self.report = report
        self.polled: set[str] = set()  # buckets without (complete) watches: poll them
        self.errors: dict[str, str] = {}  # bucket -> why it is polled
        self._wds: dict[int, tuple[str, str, str]] = {}  # wd -> (bucket, root, relative dir)
        self._roots: dict[str, str] = {}
        self._inotify: inotify_simple.INotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._no_inotify: str | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        try:
            self._inotify = inotify_simple.INotify(nonblocking=True)
        except OSError as exc:
            self._no_inotify = (
                f"inotify_init1: {exc.strerror} (fs.inotify.max_user_instances?); "
                "every bucket is polled"
            )
            log.error("buckets: %s", self._no_inotify)
            return
        loop.add_reader(self._inotify.fileno(), self._read)

    def stop(self) -> None:
        if self._inotify is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None
        self._wds.clear()

    def add_watch(self, path: str) -> int:
        """One inotify watch (a method, so a test can make the kernel's limit run out)."""
        assert self._inotify is not None
        return int(self._inotify.add_watch(path, MASK))

    def watch(self, bucket: str, root: str) -> None:
        """Watch every directory of ``root`` (the bucket's)."""
        self._roots[bucket] = root
        if self._inotify is None:
            self._fall_back(bucket, self._no_inotify or "inotify is not running")
            return
        self._watch_tree(bucket, root, "")

    def unwatch(self, bucket: str) -> None:
        self._roots.pop(bucket, None)
        self.polled.discard(bucket)
        self.errors.pop(bucket, None)
        for wd, (name, _, _) in list(self._wds.items()):
            if name == bucket:
                del self._wds[wd]
                if self._inotify is not None:
                    try:
                        self._inotify.rm_watch(wd)
                    except OSError:
                        pass  # the directory is gone: the kernel dropped the watch

    def _watch_tree(self, bucket: str, root: str, rel: str) -> None:
        top = os.path.join(root, rel) if rel else root
        for dirpath, dirnames, _ in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            sub = os.path.relpath(dirpath, root)
            sub = "" if sub == "." else sub.replace(os.sep, "/")
            try:
                wd = self.add_watch(dirpath)
            except FileNotFoundError:
                continue  # removed while walking: its removal is reported by its parent
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self._fall_back(
                        bucket,
                        f"inotify watch limit reached at {dirpath!r} "
                        "(raise fs.inotify.max_user_watches); polling this bucket",
                    )
                else:
                    self._fall_back(bucket, f"inotify_add_watch({dirpath!r}): {exc.strerror}")
                return
            self._wds[wd] = (bucket, root, sub)

    def _fall_back(self, bucket: str, reason: str) -> None:
        if bucket not in self.polled:
            log.error("bucket %r: %s", bucket, reason)
        self.polled.add(bucket)
        self.errors[bucket] = reason

    def _read(self) -> None:
        assert self._inotify is not None
        while True:
            try:
                data = os.read(self._inotify.fileno(), 64 * 1024)
            except BlockingIOError:
                return
            except OSError as exc:
                log.error("buckets: reading inotify: %s", exc)
                return
            for event in inotify_simple.parse_events(data):
                self._event(event.wd, event.mask, event.name)

    def _event(self, wd: int, mask: int, name: str) -> None:
        if mask & F.Q_OVERFLOW:
            log.warning("buckets: the inotify queue overflowed; rescanning every bucket")
            for bucket in self._roots:
                self.report(Change(bucket, "", True))
            return
        where = self._wds.get(wd)
        if where is None:
            return
        bucket, root, sub = where
        if mask & F.IGNORED:
            del self._wds[wd]
            return
        if mask & (F.DELETE_SELF | F.MOVE_SELF):
            if not sub and self._roots.get(bucket) == root:
                log.error("bucket %r: its directory %s was removed or moved", bucket, root)
                self.report(Change(bucket, "", True))  # its objects are gone
            return
        if not name or name.startswith("."):
            return
        key = f"{sub}/{name}" if sub else name
        if mask & F.ISDIR:
            if mask & (F.CREATE | F.MOVED_TO):
                if bucket not in self.polled:
                    self._watch_tree(bucket, root, key)
                self.report(Change(bucket, key + "/", True))
            elif mask & F.MOVED_FROM:
                self.report(Change(bucket, key + "/", True))  # its objects are gone
            return
        if mask & (F.CLOSE_WRITE | F.MOVED_TO | F.MOVED_FROM | F.DELETE):
            self.report(Change(bucket, key, False))


__all__ = ["Change", "Watcher", "hidden"]
