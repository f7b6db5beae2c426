"""The watcher on a real directory tree (real inotify), and its fallback when the kernel's
watch limit runs out — the one thing injected, as a test cannot lower
``fs.inotify.max_user_watches`` for this test alone."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from lambdad.buckets.watcher import Change, Watcher


class LimitedWatcher(Watcher):
    """A watcher whose kernel has room for ``room`` watches."""

    def __init__(self, room: int) -> None:
        super().__init__(self.changes.append)
        self.room = room

    changes: list[Change] = []

    def add_watch(self, path: str) -> int:
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        return super().add_watch(path)


async def settle(watcher: Watcher, want: int, changes: list[Change]) -> None:
    """Let the loop read inotify until ``want`` changes arrived (deadline 10 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(changes) < want:
        assert loop.time() < deadline, changes
        await asyncio.sleep(0.01)


def test_hints_for_files_closed_renamed_removed_and_new_directories(tmp_path: Path) -> None:
    changes: list[Change] = []

    async def run() -> None:
        watcher = Watcher(changes.append)
        watcher.start(asyncio.get_running_loop())
        watcher.watch("b", str(tmp_path))
        try:
            (tmp_path / "a.txt").write_bytes(b"1")  # CREATE (ignored), CLOSE_WRITE
            await settle(watcher, 1, changes)
            (tmp_path / ".a.part").write_bytes(b"2")  # hidden: nothing
            os.rename(tmp_path / ".a.part", tmp_path / "b.txt")  # MOVED_TO
            await settle(watcher, 2, changes)
            (tmp_path / "sub" / "deeper").mkdir(parents=True)
            await settle(watcher, 3, changes)
            (tmp_path / "sub" / "deeper" / "c.txt").write_bytes(b"3")  # watched at once
            os.unlink(tmp_path / "a.txt")
            await settle(watcher, 5, changes)
        finally:
            watcher.stop()

    asyncio.run(run())
    assert changes[:2] == [Change("b", "a.txt", False), Change("b", "b.txt", False)]
    assert changes[2] == Change("b", "sub/", True)
    assert set(changes[3:5]) == {
        Change("b", "sub/deeper/c.txt", False),
        Change("b", "a.txt", False),
    }
    assert not any(c.key.startswith(".") for c in changes)


def test_watch_limit_exhaustion_falls_back_to_polling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for d in ("x", "y", "z"):
        (tmp_path / d).mkdir()
    LimitedWatcher.changes = []

    async def run() -> LimitedWatcher:
        watcher = LimitedWatcher(room=2)
        watcher.start(asyncio.get_running_loop())
        try:
            watcher.watch("big", str(tmp_path))
            watcher.watch("big", str(tmp_path))  # already polled: logged once
        finally:
            watcher.stop()
        return watcher

    watcher = asyncio.run(run())
    assert watcher.polled == {"big"}
    assert "max_user_watches" in watcher.errors["big"]
    logged = [r for r in caplog.records if "watch limit" in r.getMessage()]
    assert len(logged) == 1
