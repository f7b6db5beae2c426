"""Log streams: one file per sandbox under ``<state>/logs/<function>/``, bounded on disk.

**Record format.** A stream file is a sequence of records, one per line::

    <source><timestamp> <text>\\n

``<source>`` is one byte, ``P`` (platform: START, END, REPORT, INIT_START, INIT_REPORT and the
daemon's error lines) or ``F`` (function: whatever the sandbox printed, split at newlines);
``<timestamp>`` is milliseconds since the epoch in decimal; ``<text>`` never contains a newline.
The daemon alone writes ``P`` records, and nothing a handler prints can become one: its output
is cut at every newline and each piece is written behind an ``F``. A line that does not parse
(a record torn by a crash) reads as function output, never as a platform line. Handler output
that lacks a trailing newline is held back (at most :data:`LINE_MAX` bytes) and terminated
before the next platform record, so platform lines always start on a line of their own.
Readers render records as Lambda's text (:func:`render`), with control characters neutralised.

**Durability.** Writes go to a memory buffer per stream. The invoker flushes the stream (one
``write()``) before an invocation's response is sent, so a completed invocation's
START .. REPORT are in the kernel (page cache) when its caller learns the result and survive a
SIGKILL of the daemon; output printed between invocations is flushed by the sweeper (250 ms) or
when the buffer reaches :data:`FLUSH_AT`.

**Disk bounds** (:class:`LogLimits`): a stream file is rotated past ``stream_bytes`` (keeping
``keep`` rotated files); per function and over all functions, the bytes and the number of files
are capped, and files older than ``retention_s`` are removed. Over a cap, the oldest files go
first (by last write), down to 90% of the cap.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("lambdad")

FLUSH_AT: Final = 64 * 1024  # a stream's buffer is written out at the latest at this size
LINE_MAX: Final = 256 * 1024  # a longer unterminated line is cut (CloudWatch's event limit)
TAIL_BYTES: Final = 4096  # what an invocation's log_tail returns at most
CUT_MARK: Final = b"[...]"  # begins a log_tail whose first line was cut
PLATFORM: Final = b"P"
FUNCTION: Final = b"F"
SOURCES: Final = {PLATFORM[0]: "platform", FUNCTION[0]: "function"}
QUERY_LIMIT_DEFAULT: Final = 1000
QUERY_LIMIT_MAX: Final = 10_000
REGEX_MAX: Final = 256  # characters of a %regex% filter
QUERY_BYTES_MAX: Final = 1024 * 1024  # messages per answer, as FilterLogEvents' 1 MB
_APPEND: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
EXPIRE_EVERY_S: Final = 60.0  # how often the retention is applied
INODE_SUFFIX: Final = "@inode"  # cursor keys: "<stream>.log" -> offset, "...@inode" -> inode

_RID = re.compile(rb"RequestId: ([^\s]+)")
# Function lines that would read as a platform line once rendered as plain text.
_LOOKS_PLATFORM = re.compile(
    r"^\s*(?:(?:START|END|REPORT|INIT_START|INIT_REPORT)\b|RequestId:|\S+Z\s+\S+\s+Task timed out)"
)
# C0 controls but TAB, DEL, C1 controls, and the Unicode bidi overrides (Trojan Source).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class LogLimits:
    """Every bound on the log files; the defaults are DaemonConfig's."""

    stream_bytes: int = 4 * 1024 * 1024  # a stream file is rotated past this
    keep: int = 8  # rotated files kept per stream
    function_bytes: int = 64 * 1024 * 1024  # all files of one function
    function_files: int = 256  # files (streams and rotated ones) of one function
    total_bytes: int = 1024 * 1024 * 1024  # all functions
    total_files: int = 10_000
    retention_s: float = 14 * 86400.0  # files not written for this long are removed


@dataclass
class _File:
    function: str
    size: int
    mtime: float  # last write (wall clock, seconds)


class LogStream:
    """One sandbox's log stream (see the module docstring for the record format)."""

    def __init__(self, store: LogStore, function: str, name: str) -> None:
        self.store = store
        self.function = function
        self.name = name  # Lambda style: 2026/11/24/[3]abcdef
        self.path = os.path.join(store.function_dir(function), name.replace("/", "-") + ".log")
        self._fd = -1
        self._buffer = bytearray()
        self._partial = b""  # function output after its last newline
        self._closed = False
        self._holds = 0  # an invocation writing its END/REPORT keeps the stream open
        self._close_wanted = False
        self.tail: bytearray | None = None  # records of one invocation, for its log_tail

    @property
    def dirty(self) -> bool:
        return bool(self._buffer) or bool(self._partial)

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Function output (what the sandbox printed), any bytes."""
        if self._closed or not data:
            return
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > LINE_MAX:
            lines.append(self._partial)
            self._partial = b""
        if lines:
            prefix = b"F%d " % _now_ms()
            self._append(prefix + (b"\n" + prefix).join(lines) + b"\n")

    def write_lines(self, data: bytes) -> None:
        """Function output that starts on a line of its own (the runtime's ``[ERROR]``
        lines, which carry the handler's error message) and ends one."""
        if self._closed:
            return
        self._terminate()
        self.write(data if data.endswith(b"\n") else data + b"\n")

    def platform(self, *texts: str) -> None:
        """Platform lines (START, END, REPORT, ...), one record each. Pending function
        output is ended first; a newline inside a text becomes a space."""
        if self._closed:
            return
        if self._partial:
            self._terminate()
        prefix = b"P%d " % _now_ms()
        records = b"".join(
            prefix + (_one_line(t) if "\n" in t or "\r" in t else t).encode("utf-8", "replace")
            + b"\n"
            for t in texts
        )  # fmt: skip
        self._append(records)

    def _terminate(self) -> None:
        if self._partial:
            partial, self._partial = self._partial, b""
            self._append(b"F%d %s\n" % (_now_ms(), partial))

    def _append(self, records: bytes) -> None:
        self._buffer += records
        tail = self.tail
        if tail is not None:
            tail += records
            if len(tail) > 4 * TAIL_BYTES:  # a ring: only the last 4 KB is ever returned
                del tail[: -2 * TAIL_BYTES]
                # The cut record's rest must never pass for a record of its own (function
                # output could then forge a platform line): it is function output.
                tail[0:0] = b"F0 "
        if len(self._buffer) >= FLUSH_AT:
            self.flush()

    def start_tail(self) -> None:
        self.tail = bytearray()

    def take_tail(self) -> str:
        """This invocation's last 4 KB of log as text, and stop collecting."""
        raw, self.tail = bytes(self.tail or b""), None
        data = render(parse_records(raw)).encode()
        if len(data) <= TAIL_BYTES:
            return data.decode()
        # The cut line keeps its end, marked, so that it cannot pass for a line of its own
        # (a cut before "REPORT RequestId: ..." inside the handler's line, say).
        cut = data[-(TAIL_BYTES - len(CUT_MARK)) :]
        return (CUT_MARK + cut).decode("utf-8", "replace")

    def flush(self) -> None:
        """Write the buffer out: one ``write()``, so it is in the kernel when this returns.
        A full or failing disk loses the buffer (logged), never the invocation."""
        buffer = self._buffer
        if not buffer:
            return
        n = len(buffer)
        try:
            if self._fd < 0:
                self._open()
            written = os.write(self._fd, buffer)
            if written < n:  # rare (a signal, a full disk): the rest, or an OSError
                view = memoryview(buffer)[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
                view.release()
        except OSError as exc:
            buffer.clear()
            self.store.write_failed(self, exc, n)
            return
        buffer.clear()
        self.store.wrote(self, n)

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, _APPEND, 0o600)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self._fd = os.open(self.path, _APPEND, 0o600)
        self.store.opened(self, os.fstat(self._fd).st_size)

    # -- closing -------------------------------------------------------------------------

    def hold(self) -> None:
        """Keep the stream open through :meth:`close_later` until :meth:`release`: an
        invocation whose sandbox dies still writes its error line, END and REPORT."""
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if self._holds <= 0 and self._close_wanted:
            self._close_wanted = False
            self.close()

    def close(self) -> None:
        """No more writes; what is buffered goes to disk now."""
        if self._holds > 0:
            self._close_wanted = True
            return
        self._terminate()
        self.flush()
        self._closed = True
        self._release()

    def close_later(self) -> None:
        """No more writes; what is buffered goes to disk at the store's next flush (a read or
        the sweeper). For a sandbox that ends on an invocation's path (force_cold, timeouts),
        which must not wait for the file system."""
        if self._holds > 0:
            self._close_wanted = True
            return
        self._terminate()
        self._closed = True
        if not self._buffer:
            self._release()

    def _release(self) -> None:
        self._close_fd()
        self.store.streams.discard(self)
        if self.store._by_path.get(self.path) is self:
            del self.store._by_path[self.path]

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def drop_file(self) -> None:
        """The store removed this stream's current file (over a cap): start a new one."""
        self._close_fd()

    def rotate(self) -> None:
        self._close_fd()
        self.store.rotate_path(self.path, self.function)


class LogStore:
    """All log streams of a daemon, the index of their files and the disk bounds.

    Thread-safety: everything but :meth:`query` runs on the event loop; :meth:`query` only
    reads files (it tolerates files removed under it)."""

    def __init__(
        self, root: str, max_bytes: int, keep: int, limits: LogLimits | None = None
    ) -> None:
        self.root = root
        self.limits = LogLimits(stream_bytes=max_bytes, keep=keep) if limits is None else limits
        self.max_bytes = self.limits.stream_bytes
        self.keep = self.limits.keep
        self.streams: set[LogStream] = set()
        self.files: dict[str, _File] = {}  # every log file on disk, by path
        self.function_bytes: dict[str, int] = {}
        self.function_files: dict[str, int] = {}
        self.total_bytes = 0
        self.lost_bytes = 0  # buffered bytes a failing disk refused
        self.removed_files = 0  # files removed by the caps and the retention
        self._by_path: dict[str, LogStream] = {}
        self._next_expiry = time.monotonic() + EXPIRE_EVERY_S
        os.makedirs(root, mode=0o700, exist_ok=True)
        self._index()
        self.expire()  # what a stopped daemon left past the retention or the caps

    def _index(self) -> None:
        for function in os.listdir(self.root):
            directory = os.path.join(self.root, function)
            if not os.path.isdir(directory):
                continue
            for entry in os.scandir(directory):
                if ".log" in entry.name and entry.is_file():
                    st = entry.stat()
                    self._add_file(entry.path, function, st.st_size, st.st_mtime)

    def _add_file(self, path: str, function: str, size: int, mtime: float) -> None:
        self.files[path] = _File(function, size, mtime)
        self.function_bytes[function] = self.function_bytes.get(function, 0) + size
        self.function_files[function] = self.function_files.get(function, 0) + 1
        self.total_bytes += size

    def _forget_file(self, path: str) -> _File | None:
        f = self.files.pop(path, None)
        if f is not None:
            self.function_bytes[f.function] -= f.size
            self.function_files[f.function] -= 1
            self.total_bytes -= f.size
        return f

    def function_dir(self, function: str) -> str:
        return os.path.join(self.root, function)

    def configure(self, limits: LogLimits) -> None:
        """New bounds (SIGHUP); applied at the next write or sweep."""
        self.limits = limits
        self.max_bytes, self.keep = limits.stream_bytes, limits.keep

    def open_stream(self, function: str, version: str, sandbox_id: str) -> LogStream:
        name = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{version}]{sandbox_id}"
        stream = LogStream(self, function, name)
        self.streams.add(stream)
        self._by_path[stream.path] = stream
        return stream

    # -- accounting (called by streams) ----------------------------------------------------

    def opened(self, stream: LogStream, size: int) -> None:
        self._by_path[stream.path] = stream
        if stream.path not in self.files:
            self._add_file(stream.path, stream.function, size, time.time())

    def wrote(self, stream: LogStream, n: int) -> None:
        if stream.path not in self.files:  # removed by a cap while open: counted afresh
            self._add_file(stream.path, stream.function, 0, 0.0)
        f = self.files[stream.path]
        f.size += n
        f.mtime = time.time()
        self.function_bytes[f.function] += n
        self.total_bytes += n
        if f.size > self.limits.stream_bytes:
            stream.rotate()
        self._enforce(f.function)

    def write_failed(self, stream: LogStream, exc: OSError, n: int) -> None:
        if not self.lost_bytes:
            log.warning("log stream %s: %s; its output is being dropped", stream.path, exc)
        self.lost_bytes += n
        stream._close_fd()

    def rotate_path(self, path: str, function: str) -> None:
        """``path`` -> ``path.1`` -> ... -> ``path.<keep>``; the oldest beyond goes."""
        keep = self.limits.keep
        doomed = f"{path}.{keep}" if keep > 0 else path
        self._remove(doomed)
        for n in range(keep - 1, 0, -1):
            older = f"{path}.{n}"
            if older in self.files:
                self._rename(older, f"{path}.{n + 1}")
        if keep > 0:
            self._rename(path, f"{path}.1")

    def _rename(self, src: str, dst: str) -> None:
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            self._forget_file(src)
            return
        f = self._forget_file(src)
        if f is not None:
            self._add_file(dst, f.function, f.size, f.mtime)

    def _remove(self, path: str) -> None:
        f = self._forget_file(path)
        stream = self._by_path.get(path)
        if stream is not None and stream._fd >= 0:
            stream.drop_file()
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        if f is not None:
            self.removed_files += 1

    def _enforce(self, function: str) -> None:
        lim = self.limits
        if (
            self.function_bytes.get(function, 0) > lim.function_bytes
            or self.function_files.get(function, 0) > lim.function_files
        ):
            self._trim(
                [p for p, f in self.files.items() if f.function == function],
                lambda: (
                    self.function_bytes.get(function, 0) > lim.function_bytes * 0.9
                    or self.function_files.get(function, 0) > lim.function_files * 0.9
                ),
            )
        if self.total_bytes > lim.total_bytes or len(self.files) > lim.total_files:
            self._trim(
                list(self.files),
                lambda: (
                    self.total_bytes > lim.total_bytes * 0.9
                    or len(self.files) > lim.total_files * 0.9
                ),
            )

    def _trim(self, paths: list[str], over: Any) -> None:
        """Remove the oldest of ``paths`` (last write first) while ``over()``."""
        for path in sorted(paths, key=lambda p: self.files[p].mtime):
            if not over():
                return
            self._remove(path)

    def expire(self, now: float | None = None) -> int:
        """Remove files not written for ``retention_s`` (the sweeper calls this); also
        re-applies the caps, which a configuration reload may have lowered."""
        cutoff = (time.time() if now is None else now) - self.limits.retention_s
        old = [p for p, f in self.files.items() if f.mtime < cutoff]
        for path in old:
            self._remove(path)
        for function in list(self.function_bytes):
            self._enforce(function)
        return len(old)

    # -- the rest of the store -------------------------------------------------------------

    def flush_all(self) -> None:
        """Write every buffer out (the sweeper, every 250 ms); once a minute, also apply
        the retention (:meth:`expire`)."""
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + EXPIRE_EVERY_S
            self.expire()
        for stream in list(self.streams):
            stream.flush()
            if stream._closed:
                stream._release()

    def delete_function(self, function: str) -> None:
        for stream in [s for s in self.streams if s.function == function]:
            stream._buffer.clear()  # the function is gone: so is what it had not written yet
            stream._partial = b""
            stream._holds = 0
            stream.close()
            stream._closed = True
        for path in [p for p, f in self.files.items() if f.function == function]:
            self._forget_file(path)
        self.function_bytes.pop(function, None)
        self.function_files.pop(function, None)
        shutil.rmtree(self.function_dir(function), ignore_errors=True)

    def query(self, q: LogQuery) -> LogPage:
        """The records of ``q.function`` that match ``q``, oldest first (see LogQuery).
        Reads files only: safe in a worker thread (flush the streams first, on the loop)."""
        directory = self.function_dir(q.function)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            names = []
        streams: dict[str, list[tuple[int, str]]] = {}
        for name in names:
            base, sep, n = name.partition(".log")
            if not sep or (n and not (n[0] == "." and n[1:].isdigit())):
                continue
            streams.setdefault(base + ".log", []).append(
                (int(n[1:]) if n else 0, os.path.join(directory, name))
            )
        if q.cursor is not None:
            return self._follow(q, directory, streams)
        return _search(q, streams)

    def _follow(
        self, q: LogQuery, directory: str, streams: dict[str, list[tuple[int, str]]]
    ) -> LogPage:
        assert q.cursor is not None
        cursor: dict[str, int] = {}
        events: list[list[LogEvent]] = []
        for name in streams:
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            start = q.cursor.get(name, 0)
            seen_inode = q.cursor.get(name + INODE_SUFFIX)
            chunks = []
            earlier = path  # the file the cursor's offset is in
            if seen_inode is not None and seen_inode != st.st_ino:
                # Rotated since the last read: first the rest of the file we were reading,
                # now renamed to <name>.1 (if that is still the same file), then the new one.
                chunks.append(_read_rest(path + ".1", start, seen_inode))
                earlier = path + ".1" if chunks[0] else path
                start_in_earlier, start = start, 0
            else:
                if start > st.st_size:
                    start = 0
                start_in_earlier = start
            data, end = _read_records(path, start)
            chunks.append(data)
            cursor[name] = end
            cursor[name + INODE_SUFFIX] = st.st_ino
            new = b"".join(chunks)
            rid = _running_request(earlier, start_in_earlier) if new else None
            stream = _stream_name(name)
            events.append([e for e in parse_records(new, stream, rid) if q.matches(e)])
        merged = list(heapq.merge(*events, key=lambda e: e.timestamp))
        return _page(merged, q, cursor)


def _search(q: LogQuery, streams: dict[str, list[tuple[int, str]]]) -> LogPage:
    """Newest ``q.limit`` matches over every stream (rotated files included), newest streams
    first, stopping when the rest cannot hold anything newer than what is kept."""
    order = []
    for name, files in streams.items():
        files.sort(reverse=True)  # .N (oldest) first, the live .log last
        try:
            newest = max(os.stat(path).st_mtime for _, path in files)
        except FileNotFoundError:
            newest = time.time()
        order.append((newest, name, files))
    order.sort(reverse=True)
    newest_kept: list[tuple[int, int, LogEvent]] = []  # min-heap of the newest matches
    seq = 0
    cursor: dict[str, int] = {}
    for newest, name, files in order:
        if len(newest_kept) >= q.limit and newest * 1000 < newest_kept[0][0]:
            _cursor_at_end(cursor, name, files)  # nothing in it is newer than what is kept
            continue
        stream = _stream_name(name)
        rid: bytes | None = None
        for n, path in files:
            if q.since_ms is not None and _mtime_ms(path) < q.since_ms:
                if n == 0:
                    _cursor_at_end(cursor, name, files)
                continue
            data, end = _read_records(path, 0)
            if n == 0:
                cursor[name] = end
                try:
                    cursor[name + INODE_SUFFIX] = os.stat(path).st_ino
                except FileNotFoundError:
                    cursor.pop(name, None)
            events = parse_records(data, stream, rid)
            for e in events:
                if q.matches(e):
                    seq += 1
                    item = (e.timestamp, seq, e)
                    if len(newest_kept) < q.limit + 1:
                        heapq.heappush(newest_kept, item)
                    else:
                        heapq.heappushpop(newest_kept, item)
            rid = events.request_id
    found = [e for _, _, e in sorted(newest_kept)]
    return _page(found, q, cursor)


def _cursor_at_end(cursor: dict[str, int], name: str, files: list[tuple[int, str]]) -> None:
    for n, path in files:
        if n == 0:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return
            cursor[name], cursor[name + INODE_SUFFIX] = st.st_size, st.st_ino


def _page(found: list[LogEvent], q: LogQuery, cursor: dict[str, int]) -> LogPage:
    """The newest matches within the count and byte limits."""
    kept: deque[LogEvent] = deque()
    size = 0
    for e in reversed(found):
        if len(kept) >= q.limit or size + len(e.message) > q.max_bytes:
            return LogPage(list(kept), cursor, truncated=True)
        kept.appendleft(e)
        size += len(e.message) + 1
    return LogPage(list(kept), cursor, truncated=False)


def _mtime_ms(path: str) -> float:
    try:
        return os.stat(path).st_mtime * 1000
    except FileNotFoundError:
        return 0.0


def _read_records(path: str, start: int) -> tuple[bytes, int]:
    """(whole records from ``start``, the offset after the last one)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return b"", start
    end = data.rfind(b"\n") + 1  # a record being written is read next time
    return data[:end], start + end


_START_OR_REPORT = re.compile(rb"^P\d+ (START|REPORT) RequestId: (\S+)", re.M)


def _running_request(path: str, offset: int, chunk: int = 64 * 1024) -> bytes | None:
    """The request id of the invocation running at ``offset`` of ``path`` (its START is
    before it and its REPORT is not), read backwards: a cursor read that starts inside an
    invocation still knows whose output it reads."""
    if offset <= 0:
        return None
    try:
        with open(path, "rb") as f:
            end = offset
            while end > 0:
                begin = max(0, end - chunk)
                f.seek(begin)
                data = f.read(end - begin)
                # A line cut at the chunk's start is never read as a record: it is read
                # whole with the chunk before.
                cut = data.find(b"\n") + 1 if begin > 0 else 0
                if begin > 0 and cut == 0:  # inside one long line
                    end = begin
                    continue
                found = deque(_START_OR_REPORT.finditer(data, cut), maxlen=1)
                if found:
                    return found[0].group(2) if found[0].group(1) == b"START" else None
                end = begin + cut if 0 < begin + cut < end else begin
    except FileNotFoundError:
        pass
    return None


def _read_rest(path: str, start: int, inode: int) -> bytes:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_ino != inode:
                return b""  # rotated more than once since: that part is gone
            f.seek(start)
            return f.read()
    except FileNotFoundError:
        return b""


def _stream_name(file_name: str) -> str:
    """``2026-11-24-[3]abc.log`` -> ``2026/11/24/[3]abc``."""
    base = file_name.removesuffix(".log")
    return base[:10].replace("-", "/") + base[10:].replace("-", "/", 1) if len(base) > 10 else base


def _one_line(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------------
# Reading: records, queries, rendering


@dataclass(frozen=True)
class LogEvent:
    """One record: when, who wrote it (platform or function), where, for which request."""

    timestamp: int  # ms since the epoch
    source: str  # "platform" | "function"
    stream: str
    request_id: str | None
    message: bytes  # as written (function output is the handler's bytes, unescaped)

    def to_wire(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "source": self.source,
            "stream": self.stream,
            "request_id": self.request_id,
            "message": self.message,
        }


class _Events(list[LogEvent]):
    request_id: bytes | None = None  # the invocation still running at the end of the data


def parse_records(data: bytes, stream: str = "", request_id: bytes | None = None) -> _Events:
    """Records of one stream, in order; ``request_id``: the invocation running at the start
    (function lines between a START and its REPORT belong to it)."""
    events = _Events()
    rid = request_id
    for line in data.split(b"\n"):
        if not line:
            continue
        source, space = line[:1], line.find(b" ")
        if source in (PLATFORM, FUNCTION) and 1 < space < 20 and line[1:space].isdigit():
            ts, text = int(line[1:space]), line[space + 1 :]
        else:  # torn or foreign: never a platform line
            source, ts, text = FUNCTION, events[-1].timestamp if events else 0, line
        own = rid
        if source == PLATFORM:
            m = _RID.search(text, 0, 120)
            if text.startswith(b"START "):
                rid = own = m.group(1) if m else None
            elif m is not None:
                own = m.group(1)
                if text.startswith(b"REPORT "):
                    rid = None
        owner = own.decode("ascii", "replace") if own else None
        events.append(LogEvent(ts, SOURCES[source[0]], stream, owner, text))
    events.request_id = rid
    return events


@dataclass(frozen=True)
class LogQuery:
    """What to read. ``cursor`` None: the newest ``limit`` matches within ``since``..``until``
    (rotated files included); a cursor (from a previous page): only what was written since."""

    function: str
    since_ms: int | None = None
    until_ms: int | None = None
    request_id: str | None = None
    pattern: str | None = None  # see compile_pattern
    limit: int = QUERY_LIMIT_DEFAULT
    cursor: dict[str, int] | None = None
    max_bytes: int = QUERY_BYTES_MAX
    _match: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_match", compile_pattern(self.pattern))

    def matches(self, e: LogEvent) -> bool:
        if self.since_ms is not None and e.timestamp < self.since_ms:
            return False
        if self.until_ms is not None and e.timestamp > self.until_ms:
            return False
        if self.request_id is not None and e.request_id != self.request_id:
            return False
        return self._match is None or bool(self._match(e.message))


@dataclass(frozen=True)
class LogPage:
    events: list[LogEvent]
    cursor: dict[str, int]  # pass it back to read only what is new
    truncated: bool  # more records matched than the limits let through (the oldest left out)


def compile_pattern(pattern: str | None) -> Any:
    """CloudWatch's filter pattern for unstructured logs, the common part: terms separated
    by spaces must all occur (case-sensitive), ``"a phrase"`` is one term, ``-term`` must not
    occur, ``?term`` — any of the ``?`` terms must occur; ``%regex%`` is a regular expression
    (without quantified groups or backreferences, which can backtrack for ever).

    Raises:
        ValueError: an empty pattern or a bad regular expression.
    """
    if pattern is None:
        return None
    p = pattern.strip()
    if not p:
        raise ValueError("filter pattern is empty")
    if len(p) >= 2 and p.startswith("%") and p.endswith("%"):
        # The scan runs on a worker thread and Python's re cannot be interrupted: refuse the
        # constructs that backtrack exponentially (quantified groups, backreferences).
        if len(p) > REGEX_MAX or re.search(r"\)[+*{]|\\[1-9]", p):
            raise ValueError(
                f"filter pattern: regular expressions may not quantify a group or refer back, "
                f"and have at most {REGEX_MAX} characters"
            )
        try:
            rx = re.compile(p[1:-1].encode())
        except re.error as exc:
            raise ValueError(f"filter pattern: bad regular expression: {exc}") from None
        return rx.search
    terms = [t.strip('"') for t in re.findall(r'[-?]?"[^"]*"|\S+', p)]
    need = [t.encode() for t in terms if t and t[0] not in "-?"]
    avoid = [t[1:].strip('"').encode() for t in terms if t.startswith("-") and len(t) > 1]
    anyof = [t[1:].strip('"').encode() for t in terms if t.startswith("?") and len(t) > 1]

    def match(message: bytes) -> bool:
        return (
            all(t in message for t in need)
            and not any(t in message for t in avoid)
            and (not anyof or any(t in message for t in anyof))
        )

    return match


def neutralise(text: str) -> str:
    """Control characters (terminal escapes, carriage returns, bidi overrides) as visible
    escapes: what a handler printed cannot drive the reader's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)  # fmt: skip


def render_line(e: LogEvent) -> str:
    """One record as Lambda's text. A function line that would read as a platform line is
    marked, so that ``grep ^REPORT`` finds only the platform's."""
    text = neutralise(e.message.decode("utf-8", "replace"))
    if e.source == "function" and _LOOKS_PLATFORM.match(text):
        return "[function] " + text
    return text


def render(events: Iterable[LogEvent]) -> str:
    return "".join(render_line(e) + "\n" for e in events)


def wire_cursor(raw: Any) -> dict[str, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("cursor must be a map")
    return {str(k): int(v) for k, v in raw.items()}


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_S: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def time_ms(value: Any, now: float | None = None) -> int:
    """A point in time as ms since the epoch: a number (epoch seconds), a ``datetime``
    (naive = UTC), a duration ago (``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``, ``"1h30m"``) or
    an ISO 8601 timestamp (``"2026-12-01T10:00:00Z"``, ``"2026-12-01 10:00"``; naive = UTC).

    Raises:
        ValueError: none of these.
    """
    import datetime as dt

    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return int(value * 1000)
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(stamp.timestamp() * 1000)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    parts = _DURATION.findall(text)
    if parts and _DURATION.sub("", text).strip() == "":
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in parts)
        return int(((time.time() if now is None else now) - seconds) * 1000)
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {value!r} (want a duration such as 10m, 2h, 1d, or an ISO 8601 "
            "timestamp such as 2026-12-01T10:00:00Z)"
        ) from None
    return time_ms(stamp)


def log_args(
    name: str,
    cursor: dict[str, int] | None,
    since: Any,
    until: Any,
    request_id: str | None,
    pattern: str | None,
    limit: int | None,
    events: bool,
) -> dict[str, Any]:
    """The ``logs`` request's arguments (docs/protocol.md), as the clients send them."""
    args: dict[str, Any] = {"name": name, "cursor": cursor}
    if since is not None:
        args["since"] = time_ms(since)
    if until is not None:
        args["until"] = time_ms(until)
    for key, value in (("request_id", request_id), ("filter", pattern), ("limit", limit)):
        if value is not None:
            args[key] = value
    if events:
        args["events"] = True
    return args


def page_from_wire(body: dict[str, Any]) -> LogPage:
    events = [
        LogEvent(
            timestamp=int(e["timestamp"]),
            source=str(e["source"]),
            stream=str(e["stream"]),
            request_id=None if e.get("request_id") is None else str(e["request_id"]),
            message=bytes(e["message"]),
        )
        for e in body.get("events") or []
    ]
    return LogPage(events, dict(body.get("cursor") or {}), bool(body.get("truncated")))
