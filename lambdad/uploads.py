"""Staged uploads: code zips bigger than one socket frame, sent in bounded chunks.

A frame is at most ``max_frame_bytes`` (8 MiB), so a deployment package of 8-50 MB (anything
with botocore or Django in it) cannot travel as one ``deploy``. Raising the frame limit would
raise it for every peer of the socket; instead, the socket front stages such a zip in a file:

    upload_begin {size}                  -> {upload, max_chunk_bytes, timeout_s}
    upload_chunk {upload, offset, data}  -> {received}       (in order, each under the limit)
    deploy {..., upload} / layer_publish {..., upload}       (the upload is used up)
    upload_abort {upload}                                    (or: close, or time-out)

Rules (docs/protocol.md, "Staged uploads"): ``size`` is declared up front and must be within
Lambda's 50 MB zipped limit (:data:`ZIPPED_MAX`); chunks must arrive in order, without gaps or
overlaps; an upload belongs to the connection that began it (another connection, even of the
same user, is told it does not exist) and goes away when that connection closes, when it is
idle for ``upload_timeout_s``, when it is used or aborted, and at a daemon restart. One peer
(uid) may hold ``upload_max_open`` uploads of at most ``upload_max_bytes`` declared bytes in
all, across its connections. Files are ``0600`` in a ``0700`` directory under the state
directory, written in a worker thread (``pwrite`` at the chunk's offset), never on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from lambdad.errors import (
    CodeStorageExceeded,
    InvalidParameterValue,
    RequestTooLarge,
    ResourceNotFound,
    TooManyRequests,
)
from lambdad.model import Caller

ZIPPED_MAX: Final = 50 * 1024 * 1024  # Lambda's zipped deployment package limit (direct upload)
UPLOAD_DIR: Final = "uploads"  # under the state directory
# Ids of uploads that expired lately, remembered so that a late chunk is told why (bounded).
EXPIRED_KEEP: Final = 256


@dataclass(frozen=True)
class UploadLimits:
    """``DaemonConfig.upload_*``."""

    max_open: int = 4  # uploads one peer (uid) may hold at once, across its connections
    max_bytes: int = 128 * 1024 * 1024  # declared bytes of one peer's open uploads
    timeout_s: float = 60.0  # an upload with no chunk for this long is removed


@dataclass(eq=False)
class Upload:
    """One staged zip. ``next_offset`` moves when a chunk is accepted, ``received`` when its
    bytes are written; they differ only while a write is in flight."""

    id: str
    owner: Caller  # the connection's Caller object: compared by identity (see Uploads)
    size: int
    path: str
    last_active: float
    next_offset: int = 0
    received: int = 0
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one write at a time; take waits

    @property
    def uid(self) -> int | None:
        return self.owner.uid


class Uploads:
    """The staged uploads of one socket front.

    Ownership is by connection: the socket front makes one :class:`Caller` per connection, and
    an upload answers only to that very object (``is``, not ``==``: two connections of one
    process have equal credentials). Blocking file work runs in worker threads.

    Args:
        state_dir: the daemon's state directory; files go to ``<state_dir>/uploads``.
        limits: the per-peer bounds and the idle time-out.
        disk_shortfall: why the disk is below its watermark, or None (checked at begin).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        state_dir: str,
        limits: UploadLimits,
        disk_shortfall: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = os.path.join(state_dir, UPLOAD_DIR)
        self.limits = limits
        self._disk_shortfall = disk_shortfall
        self._clock = clock
        self._uploads: dict[str, Upload] = {}
        self._expired: collections.OrderedDict[str, float] = collections.OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> int:
        """Create the directory afresh; returns how many leftover files (from a daemon that
        stopped or died with uploads open) were removed."""
        leftovers = 0
        if os.path.isdir(self.directory):
            leftovers = len(os.listdir(self.directory))
            shutil.rmtree(self.directory)
        os.makedirs(self.directory, mode=0o700)
        os.chmod(self.directory, 0o700)  # whatever the umask said
        return leftovers

    def close(self) -> None:
        """Remove every upload and its file (the daemon is stopping)."""
        for upload in list(self._uploads.values()):
            self._remove(upload)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._uploads)

    def ids(self) -> list[str]:
        return sorted(self._uploads)

    # -- the operations ----------------------------------------------------------------------

    def begin(self, owner: Caller, size: object) -> Upload:
        """Start an upload of ``size`` bytes for ``owner`` (a connection's Caller).

        Raises:
            InvalidParameterValue: ``size`` is not a positive integer.
            RequestTooLarge: ``size`` is over :data:`ZIPPED_MAX`.
            TooManyRequests: (``reason="UploadLimitExceeded"``) the peer's bounds.
            CodeStorageExceeded: the disk is below its free-space watermark.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidParameterValue(
                f"size must be the zip's length in bytes (a positive integer), got {size!r:.64}",
                field="size",
            )
        if size > ZIPPED_MAX:
            raise RequestTooLarge(
                f"Request must be smaller than {ZIPPED_MAX} bytes for the upload_begin "
                f"operation: a code zip of {size} bytes is over the {ZIPPED_MAX}-byte "
                "(50 MiB) zipped deployment package limit",
                limit=ZIPPED_MAX,
                size=size,
            )
        mine = [u for u in self._uploads.values() if u.uid == owner.uid]
        if len(mine) >= self.limits.max_open:
            raise TooManyRequests(
                f"uid {owner.uid} already has {len(mine)} uploads open, the most one peer may "
                f"hold (upload_max_open = {self.limits.max_open}); finish or abort one first",
                reason="UploadLimitExceeded",
            )
        held = sum(u.size for u in mine)
        if held + size > self.limits.max_bytes:
            raise TooManyRequests(
                f"uid {owner.uid}'s open uploads would declare {held + size} bytes, over "
                f"upload_max_bytes = {self.limits.max_bytes}; finish or abort one first",
                reason="UploadLimitExceeded",
            )
        short = self._disk_shortfall()
        if short is not None:
            raise CodeStorageExceeded(f"upload refused: {short}")
        upload_id = secrets.token_hex(16)
        path = os.path.join(self.directory, upload_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        upload = Upload(upload_id, owner, size, path, self._clock())
        self._uploads[upload_id] = upload
        return upload

    async def chunk(self, owner: Caller, upload_id: object, offset: object, data: object) -> int:
        """Write ``data`` at ``offset``; returns the bytes received so far.

        Raises:
            ResourceNotFound: no such upload on this connection (never begun, used, aborted,
                expired, or another connection's).
            InvalidParameterValue: an offset out of order (a gap or an overlap), a chunk past
                the declared size, data that is not bytes.
        """
        upload = self._find(owner, upload_id)
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise InvalidParameterValue(
                f"offset must be an integer, got {offset!r:.64}", field="offset"
            )
        if not isinstance(data, bytes) or not data:
            raise InvalidParameterValue("data must be non-empty bytes (msgpack bin)", field="data")
        if offset != upload.next_offset:
            behind = offset < upload.next_offset
            what = "overlaps bytes already received" if behind else "leaves a gap"
            raise InvalidParameterValue(
                f"chunk at offset {offset} {what}: upload {upload.id} has {upload.next_offset} "
                f"bytes, so the next chunk must start at offset {upload.next_offset}",
                field="offset",
                expected=upload.next_offset,
            )
        end = offset + len(data)
        if end > upload.size:
            raise InvalidParameterValue(
                f"chunk ends at byte {end}, past the {upload.size} bytes declared by "
                f"upload_begin for upload {upload.id}",
                field="data",
            )
        upload.next_offset = end  # accepted: a pipelined next chunk is checked against this
        upload.last_active = self._clock()
        async with upload.lock:
            if upload.closed:
                raise self._not_found(upload.id)
            try:
                await asyncio.to_thread(_write_at, upload.path, data, offset)
            except FileNotFoundError:  # aborted while the write was under way
                raise self._not_found(upload.id) from None
            except OSError as exc:
                self._remove(upload)
                raise CodeStorageExceeded(
                    f"upload {upload.id}: writing the chunk failed: {exc.strerror or exc}"
                ) from None
            upload.received = max(upload.received, end)
            upload.last_active = self._clock()
        return upload.received

    async def take(self, owner: Caller, upload_id: object) -> bytes:
        """The complete zip of an upload, which is then gone (used once, whatever the deploy
        that uses it makes of it).

        Raises:
            ResourceNotFound: see :meth:`chunk`.
            InvalidParameterValue: the upload is not complete.
        """
        upload = self._find(owner, upload_id, field_name="upload")
        async with upload.lock:  # the writes before us are done
            if upload.closed:
                raise self._not_found(upload.id)
            if upload.received != upload.size:
                raise InvalidParameterValue(
                    f"upload {upload.id} is incomplete: {upload.received} of the {upload.size} "
                    "declared bytes received",
                    field="upload",
                )
            self._uploads.pop(upload.id, None)
            upload.closed = True
            try:
                return await asyncio.to_thread(_read_exact, upload.path, upload.size)
            finally:
                _unlink(upload.path)

    def abort(self, owner: Caller, upload_id: object) -> Upload:
        """Remove an upload and its file. Raises ResourceNotFound (see :meth:`chunk`)."""
        upload = self._find(owner, upload_id)
        self._remove(upload)
        return upload

    def drop_owner(self, owner: Caller) -> int:
        """Remove every upload of a connection (it closed); returns how many."""
        mine = [u for u in self._uploads.values() if u.owner is owner]
        for upload in mine:
            self._remove(upload)
        return len(mine)

    def expire(self) -> list[str]:
        """Remove the uploads idle for longer than the time-out; returns their ids. An upload
        whose chunk is being written is not idle."""
        now = self._clock()
        stale = [
            u
            for u in self._uploads.values()
            if now - u.last_active > self.limits.timeout_s and not u.lock.locked()
        ]
        for upload in stale:
            self._remove(upload)
            self._expired[upload.id] = now
            if len(self._expired) > EXPIRED_KEEP:
                self._expired.popitem(last=False)
        return [u.id for u in stale]

    # -- helpers ---------------------------------------------------------------------------

    def _find(self, owner: Caller, upload_id: object, field_name: str = "upload") -> Upload:
        if not isinstance(upload_id, str) or not upload_id:
            raise InvalidParameterValue(
                f"{field_name} must be the id upload_begin returned, got {upload_id!r:.64}",
                field=field_name,
            )
        upload = self._uploads.get(upload_id)
        if upload is None or upload.owner is not owner:
            raise self._not_found(upload_id)
        return upload

    def _not_found(self, upload_id: str) -> ResourceNotFound:
        if upload_id in self._expired:
            return ResourceNotFound(
                f"upload {upload_id:.64} expired: no chunk for {self.limits.timeout_s:g} s "
                "(upload_timeout_s); begin a new one",
                upload=upload_id[:64],
            )
        return ResourceNotFound(
            f"upload {upload_id!r:.64} does not exist on this connection: never begun, already "
            "used or aborted, or another connection's (an upload belongs to the connection "
            "that began it)",
            upload=upload_id[:64],
        )

    def _remove(self, upload: Upload) -> None:
        self._uploads.pop(upload.id, None)
        upload.closed = True
        # A write under way opens the path afresh each time, so unlinking now is safe: that
        # write fails (FileNotFoundError) or lands in the unlinked inode, freed at its close.
        _unlink(upload.path)


def _write_at(path: str, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    finally:
        os.close(fd)


def _read_exact(path: str, size: int) -> bytes:
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as f:
        data = f.read(size + 1)
    if len(data) != size:  # nothing else writes there; a check, not a branch we expect
        raise InvalidParameterValue(
            f"staged upload has {len(data)} bytes on disk, {size} expected", field="upload"
        )
    return data


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
