"""The read-only overlays of sandbox/mounts.py, in a private mount namespace of a forked child:
files of their own (no inode shared with the host: flock does not meet the host's), read-only,
and no host path in the overlay's mount entry — for both ways of mounting a function's
code."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sandbox import _libc, mounts

pytestmark = pytest.mark.root


def _in_child(fn: Any) -> dict[str, Any]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _libc.unshare(_libc.CLONE_NEWNS)
            _libc.mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
            os.write(w, json.dumps(fn()).encode())
        except BaseException as exc:
            os.write(w, json.dumps({"crashed": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    out: dict[str, Any] = json.loads(data)
    assert "crashed" not in out, out
    return out


@pytest.mark.parametrize("how", ["detached tree as the layer", "attached, then stacked"])
def test_code_overlay_has_inodes_of_its_own(tmp_path: Path, how: str) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("x = 1\n")
    target, empty = tmp_path / "task", tmp_path / "empty"
    target.mkdir()
    empty.mkdir()
    host_fd = os.open(code / "app.py", os.O_RDONLY)
    fcntl.flock(host_fd, fcntl.LOCK_EX)  # the host holds it

    def child() -> dict[str, Any]:
        tree = _libc.open_tree_clone(str(code))
        empty_fd = os.open(empty, os.O_PATH | os.O_DIRECTORY)
        if how.startswith("detached"):
            mounts._overlay_ro(tree, str(target), empty_fd)
        else:
            mounts._attach_then_overlay(tree, str(target), empty_fd)
        fd = os.open(target / "app.py", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock = "ok"
        except BlockingIOError:
            lock = "EAGAIN"
        try:
            (target / "new.py").write_text("")
            write = "ok"
        except OSError as exc:
            write = errno.errorcode[exc.errno or 0]
        with open("/proc/self/mountinfo") as f:
            # The last one is on top (attached-then-stacked leaves the bind underneath, whose
            # host path still shows: mount_function's documented fallback).
            line = [x for x in f if x.split()[4] == str(target)][-1]
        return {"content": (target / "app.py").read_text(), "lock": lock, "write": write,
                "dev": os.stat(target / "app.py").st_dev, "mountinfo": line}

    try:
        out = _in_child(child)
    finally:
        os.close(host_fd)
    assert out["content"] == "x = 1\n"
    assert out["lock"] == "ok", "the overlay's file is the host's inode"
    assert out["write"] == "EROFS"
    assert out["dev"] != os.stat(code / "app.py").st_dev
    fields = out["mountinfo"].split(" - ")[1].split()
    assert fields[0] == "overlay" and str(tmp_path) not in fields[2], out["mountinfo"]


def test_build_root_works_in_a_user_namespace_too() -> None:
    """A zygote not started as root runs in a user namespace, where no device node can be
    made: the root is still built (devices bound from the host there), overlays included."""
    root = tempfile.mkdtemp(prefix="lambdad-test-userns-")  # nobody must reach it
    os.chmod(root, 0o777)
    try:
        _build_root_as_nobody(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build_root_as_nobody(root: str) -> None:
    from sandbox import namespaces

    # No runtime binds: this host's Python may live where nobody cannot go (/root/.pyenv);
    # /usr and /etc are overlays all the same.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            _libc.prctl(4, 1)  # PR_SET_DUMPABLE: setuid cleared it, and with it /proc/self
            namespaces.become_userns_root()
            _libc.unshare(_libc.CLONE_NEWPID)
            inner = os.fork()  # proc can only be mounted by a member of the pid namespace
            if inner == 0:
                try:
                    _libc.unshare(_libc.CLONE_NEWNS)
                    mounts.build_root(mounts.RootSpec(root), 0, 0)
                    with open("/proc/self/mounts") as f:
                        fstypes = sorted({line.split()[2] for line in f})
                    with open("/dev/null", "wb") as f:
                        f.write(b"x")
                    os.write(w, json.dumps({"dev": sorted(os.listdir("/dev")),
                                            "fstypes": fstypes}).encode())
                except BaseException as exc:
                    os.write(w, json.dumps({"crashed": repr(exc)}).encode())
                finally:
                    os._exit(0)
            os.waitpid(inner, 0)
        except BaseException as exc:
            os.write(w, json.dumps({"crashed": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "crashed" not in out, out
    assert {"null", "zero", "full", "random", "urandom"} <= set(out["dev"])
    assert "overlay" in out["fstypes"], out
