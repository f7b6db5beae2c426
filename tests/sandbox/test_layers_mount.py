"""Layers merged read-only at /opt (sandbox/mounts.py ``mount_layers``), in a private mount
namespace of a forked child: later layers win, nothing is writable, no host inode is shared,
and the mount entry names no host path."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from sandbox import _libc, mounts
from tests.sandbox.test_mounts import _in_child

pytestmark = pytest.mark.root


def make_layers(tmp_path: Path) -> list[Path]:
    one, two, three = (tmp_path / f"layer{i}" for i in (1, 2, 3))
    for layer in (one, two, three):
        (layer / "python").mkdir(parents=True)
    (one / "python" / "shared.py").write_text("WHO = 1\n")
    (one / "bin").mkdir()
    (one / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (two / "python" / "shared.py").write_text("WHO = 2\n")
    (two / "lib").mkdir()
    (two / "lib" / "libx.so").write_bytes(b"\x7fELF")
    (three / "python" / "only3.py").write_text("THREE = 3\n")
    return [one, two, three]


@pytest.mark.parametrize("count", [1, 3])
def test_layers_merge_at_opt_later_wins_read_only_own_inodes(tmp_path: Path, count: int) -> None:
    layers = make_layers(tmp_path)[:count]
    target, empty = tmp_path / "opt", tmp_path / "empty"
    target.mkdir()
    empty.mkdir()
    host_fd = os.open(layers[0] / "python" / "shared.py", os.O_RDONLY)
    fcntl.flock(host_fd, fcntl.LOCK_EX)  # the host holds a lock on a layer's file

    def child() -> dict[str, Any]:
        trees = [_libc.open_tree_clone(str(layer)) for layer in layers]
        mounts.mount_layers(trees, str(target), str(empty))
        for fd in trees:
            os.close(fd)
        out: dict[str, Any] = {
            "files": sorted(
                os.path.relpath(os.path.join(d, f), target)
                for d, _, fs in os.walk(target)
                for f in fs
            ),
            "shared": (target / "python" / "shared.py").read_text(),
            "same_dev": os.stat(target / "python" / "shared.py").st_dev
            == os.stat(layers[0] / "python" / "shared.py").st_dev,
        }
        try:
            (target / "python" / "new.py").write_text("x")
            out["write"] = "ok"
        except OSError as exc:
            out["write"] = errno.errorcode[exc.errno or 0]
        fd = os.open(target / "python" / "shared.py", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            out["lock"] = "own"
        except OSError:
            out["lock"] = "blocked by the host"
        with open("/proc/self/mountinfo") as f:
            entry = [line for line in f if f" {target} " in line][-1]
        out["mountinfo_names_host"] = str(tmp_path) in entry.split(" - ")[1]
        return out

    try:
        out = _in_child(child)
    finally:
        os.close(host_fd)
    expected = {
        1: ["bin/tool", "python/shared.py"],
        3: ["bin/tool", "lib/libx.so", "python/only3.py", "python/shared.py"],
    }[count]
    assert out["files"] == expected
    assert out["shared"] == ("WHO = 1\n" if count == 1 else "WHO = 2\n")  # later layer wins
    assert out["write"] == "EROFS"
    assert not out["same_dev"] and out["lock"] == "own"
    assert not out["mountinfo_names_host"]


def test_no_layers_mounts_nothing(tmp_path: Path) -> None:
    target = tmp_path / "opt"
    target.mkdir()

    def child() -> dict[str, Any]:
        mounts.mount_layers([], str(target), str(tmp_path))
        with open("/proc/self/mountinfo") as f:
            return {"mounted": any(f" {target} " in line for line in f)}

    assert _in_child(child) == {"mounted": False}
