"""lambdad/uploads.py on its own: bounds, order, ownership by identity, expiry, clean-up
(a fake clock; real files in a temporary state directory)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from lambdad.errors import (
    CodeStorageExceeded,
    InvalidParameterValue,
    RequestTooLarge,
    ResourceNotFound,
    TooManyRequests,
)
from lambdad.model import Caller
from lambdad.uploads import ZIPPED_MAX, UploadLimits, Uploads


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, **limits: float) -> tuple[Uploads, Clock]:
    clock = Clock()
    uploads = Uploads(str(tmp_path), UploadLimits(**limits), clock=clock)  # type: ignore[arg-type]
    uploads.open()
    return uploads, clock


def conn(uid: int = 0) -> Caller:
    return Caller("unix", 1234, uid, 0)


def test_chunks_in_order_make_the_zip_and_take_uses_it_up(tmp_path: Path) -> None:
    uploads, _ = make(tmp_path)
    me = conn()
    upload = uploads.begin(me, 6)

    async def go() -> bytes:
        # Pipelined: both accepted in order before either write has run.
        first = asyncio.ensure_future(uploads.chunk(me, upload.id, 0, b"abc"))
        second = asyncio.ensure_future(uploads.chunk(me, upload.id, 3, b"def"))
        assert await first == 3 and await second == 6
        return await uploads.take(me, upload.id)

    assert asyncio.run(go()) == b"abcdef"
    assert len(uploads) == 0 and os.listdir(uploads.directory) == []


def test_ownership_is_the_connection_not_equal_credentials(tmp_path: Path) -> None:
    uploads, _ = make(tmp_path)
    mine, twin = conn(), conn()
    assert mine == twin and mine is not twin  # same pid, uid, gid
    upload = uploads.begin(mine, 3)
    with pytest.raises(ResourceNotFound, match="another connection's"):
        asyncio.run(uploads.chunk(twin, upload.id, 0, b"abc"))
    with pytest.raises(ResourceNotFound):
        uploads.abort(twin, upload.id)
    assert uploads.drop_owner(twin) == 0 and len(uploads) == 1
    assert uploads.drop_owner(mine) == 1 and os.listdir(uploads.directory) == []


def test_bounds_per_peer_and_lambdas_zipped_limit(tmp_path: Path) -> None:
    uploads, _ = make(tmp_path, max_open=2, max_bytes=100)
    with pytest.raises(RequestTooLarge, match=f"smaller than {ZIPPED_MAX} bytes"):
        uploads.begin(conn(), ZIPPED_MAX + 1)
    uploads.begin(conn(), 60)
    with pytest.raises(TooManyRequests, match="would declare 101 bytes"):
        uploads.begin(conn(), 41)
    uploads.begin(conn(), 40)
    with pytest.raises(TooManyRequests, match="already has 2 uploads open"):
        uploads.begin(conn(), 1)
    uploads.begin(conn(uid=1000), 100)  # another peer has its own bounds


def test_order_gaps_overlaps_and_size(tmp_path: Path) -> None:
    uploads, _ = make(tmp_path)
    me = conn()
    upload = uploads.begin(me, 4)
    asyncio.run(uploads.chunk(me, upload.id, 0, b"ab"))
    for offset, data, message in (
        (3, b"c", "leaves a gap"),
        (1, b"bc", "overlaps"),
        (2, b"cde", "past the 4 bytes declared"),
        ("2", b"c", "offset must be an integer"),
    ):
        with pytest.raises(InvalidParameterValue, match=message):
            asyncio.run(uploads.chunk(me, upload.id, offset, data))
    with pytest.raises(InvalidParameterValue, match="incomplete: 2 of the 4"):
        asyncio.run(uploads.take(me, upload.id))
    assert asyncio.run(uploads.chunk(me, upload.id, 2, b"cd")) == 4


def test_idle_uploads_expire_and_say_so(tmp_path: Path) -> None:
    uploads, clock = make(tmp_path, timeout_s=10)
    me = conn()
    idle, busy = uploads.begin(me, 2), uploads.begin(me, 2)
    clock.now += 8
    asyncio.run(uploads.chunk(me, busy.id, 0, b"a"))
    clock.now += 3
    assert uploads.expire() == [idle.id]
    assert not os.path.exists(idle.path) and os.path.exists(busy.path)
    with pytest.raises(ResourceNotFound, match="expired: no chunk for 10 s"):
        asyncio.run(uploads.chunk(me, idle.id, 0, b"a"))


def test_open_removes_leftovers_and_close_removes_everything(tmp_path: Path) -> None:
    uploads, _ = make(tmp_path)
    uploads.begin(conn(), 5)
    again = Uploads(str(tmp_path), UploadLimits())
    assert again.open() == 1 and os.listdir(again.directory) == []
    assert os.stat(again.directory).st_mode & 0o777 == 0o700
    again.begin(conn(), 5)
    again.close()
    assert not os.path.exists(again.directory)


def test_the_disk_watermark_refuses_new_uploads(tmp_path: Path) -> None:
    uploads = Uploads(str(tmp_path), UploadLimits(), lambda: "the disk is full")
    uploads.open()
    with pytest.raises(CodeStorageExceeded, match="upload refused: the disk is full"):
        uploads.begin(conn(), 5)
