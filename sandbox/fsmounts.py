"""File-system mounts at ``/mnt/NAME`` (Lambda's EFS), child half, at specialization.

A function's deploy may name host directories (``--mount HOSTDIR:/mnt/NAME[:ro]``, admin
only). Each arrives as a detached, non-recursive mount of that directory (``open_tree`` by
the daemon) and is attached at its ``/mnt`` target, ``nosuid``/``nodev``, read-only when asked
(a sandbox holds no capability to remount it).

The mount's POSIX owner — the directory's owner on the host, recorded at deploy — works like an
EFS access point's user: the mount is **idmapped** so that the sandbox's own uid/gid *is* that
owner on disk. Files the function creates are the owner's on the host, the owner's files are
the function's inside; two functions sharing a directory (each with its own sandbox uid)
therefore exchange files, and nothing else's uid can be taken through the mount. The mapping
lives in a user namespace made for the purpose by a short-lived child (``unshare(CLONE_NEWUSER)``
must not run in the agent itself, which would lose its privileges).

Symlinks inside a mount are resolved in the sandbox's own root, like every path there: an
absolute or ``../`` link cannot reach a host path.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sandbox import _libc

_SYS_mount_setattr: Final = 442
MOUNT_ATTR_RDONLY: Final = 0x1
MOUNT_ATTR_NOSUID: Final = 0x2
MOUNT_ATTR_NODEV: Final = 0x4
MOUNT_ATTR_IDMAP: Final = 0x100000
ROOT: Final = "/mnt"


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def mount_setattr(tree_fd: int, attr_set: int, userns_fd: int = 0) -> None:
    attr = _MountAttr(attr_set, 0, 0, userns_fd)
    ret = _libc._libc.syscall(
        ctypes.c_long(_SYS_mount_setattr),
        ctypes.c_int(tree_fd),
        b"",
        ctypes.c_uint(_libc.AT_EMPTY_PATH),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _libc._check(ret, f"mount_setattr({tree_fd}, {attr_set:#x})")


def owner_userns(disk_uid: int, disk_gid: int, uid: int, gid: int) -> int:
    """An fd of a user namespace mapping the on-disk owner to the sandbox's ids.

    For an idmapped mount, an id on disk is read as an id *inside* the namespace: the line
    ``disk_uid uid 1`` makes a file owned by ``disk_uid`` appear as ``uid``, and a file that
    ``uid`` creates land on disk as ``disk_uid``.
    """
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            _libc.unshare(_libc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)  # until the parent has its fd
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("the user-namespace helper exited")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(f"{disk_uid} {uid} 1\n")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(f"{disk_gid} {gid} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def mount_all(
    tree_fds: Sequence[int], specs: Sequence[Mapping[str, Any]], uid: int, gid: int
) -> None:
    """Attach each mount at its target under /mnt (a tmpfs of its own, read-only after)."""
    if not specs:
        return
    if len(tree_fds) != len(specs):
        raise ValueError(f"{len(specs)} mounts configured but {len(tree_fds)} trees came")
    _libc.mount("tmpfs", ROOT, "tmpfs", _libc.MS_NOSUID | _libc.MS_NODEV, "size=16k,mode=755")
    namespaces: dict[tuple[int, int], int] = {}
    try:
        for fd, spec in zip(tree_fds, specs, strict=True):
            target = str(spec["target"])
            owner = (int(spec["uid"]), int(spec["gid"]))
            userns = namespaces.get(owner)
            if userns is None:
                userns = namespaces[owner] = owner_userns(*owner, uid, gid)
            attrs = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
            if spec.get("read_only"):
                attrs |= MOUNT_ATTR_RDONLY
            mount_setattr(fd, attrs, userns)
            os.makedirs(target, mode=0o755, exist_ok=True)
            _libc.move_mount(fd, target)
    finally:
        for userns in namespaces.values():
            os.close(userns)
    _libc.mount(
        None, ROOT, None, _libc.MS_REMOUNT | _libc.MS_RDONLY | _libc.MS_NOSUID | _libc.MS_NODEV
    )
