"""Thin ctypes wrappers for the system calls Python 3.11 lacks.

``os.unshare`` and ``os.setns`` only arrive in 3.12; ``mount``, ``umount2``, ``pivot_root``,
``sethostname`` and ``prctl(PR_SET_SECCOMP)`` have no stdlib binding at all. Every wrapper
raises ``OSError`` naming the call and its arguments, nsjail style.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Final

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# <linux/sched.h>
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
CLONE_NEWTIME: Final = 0x00000080

# <sys/mount.h>
MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_NOATIME: Final = 1024
MS_BIND: Final = 4096
MS_MOVE: Final = 8192
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18
MS_SLAVE: Final = 1 << 19
MNT_DETACH: Final = 2

# <linux/prctl.h>
PR_SET_PDEATHSIG: Final = 1
PR_SET_MEMORY_MERGE: Final = 67  # Linux 6.4: KSM may merge all of this mm (kept across fork)
PR_SET_NO_NEW_PRIVS: Final = 38
PR_SET_CHILD_SUBREAPER: Final = 36
PR_SET_SECCOMP: Final = 22
SECCOMP_MODE_FILTER: Final = 2

_SYS_pivot_root: Final = 155  # x86_64
_SYS_close_range: Final = 436


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({fd}, {nstype:#x})")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, f"mount({source!r} -> {target!r}, {fstype!r}, {flags:#x}, {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount2({target!r}, {flags})")


def pivot_root(new_root: str, put_old: str) -> None:
    ret = _libc.syscall(ctypes.c_long(_SYS_pivot_root), _b(new_root), _b(put_old))
    _check(ret, f"pivot_root({new_root!r}, {put_old!r})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname({name!r})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(arg4),
            ctypes.c_ulong(arg5),
        ),
        f"prctl({option}, {arg2}, {arg3})",
    )


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


# program bytes -> (sock_fprog, the array it points to): built once, in the zygote, by
# prepare_seccomp(); a forked sandbox then only makes the prctl call.
_PREPARED: dict[bytes, tuple[_SockFprog, ctypes.Array[_SockFilter]]] = {}


def prepare_seccomp(program: bytes) -> None:
    """Build the ``struct sock_fprog`` for ``program`` now (in the zygote, before forking)."""
    if program in _PREPARED:
        return
    count = len(program) // ctypes.sizeof(_SockFilter)
    if count == 0 or len(program) % ctypes.sizeof(_SockFilter):
        raise ValueError(f"seccomp program of {len(program)} bytes is not a sock_filter array")
    array = (_SockFilter * count).from_buffer_copy(program)
    fprog = _SockFprog(count, ctypes.cast(array, ctypes.POINTER(_SockFilter)))
    _PREPARED[program] = (fprog, array)


def seccomp_load_bpf(program: bytes) -> None:
    """Install a compiled classic-BPF seccomp program (``struct sock_filter[]`` bytes)."""
    prepare_seccomp(program)
    fprog = _PREPARED[program][0]
    ret = _libc.prctl(
        ctypes.c_int(PR_SET_SECCOMP),
        ctypes.c_ulong(SECCOMP_MODE_FILTER),
        ctypes.byref(fprog),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    _check(ret, "prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)")


def close_range(first: int, last: int = 0xFFFFFFFF) -> None:
    """Close every fd in [first, last]; falls back to a loop on kernels before 5.9."""
    ret = _libc.syscall(
        ctypes.c_long(_SYS_close_range), ctypes.c_uint(first), ctypes.c_uint(last), 0
    )
    if ret < 0:
        os.closerange(first, min(last, os.sysconf("SC_OPEN_MAX")) + 1)


_SYS_open_tree: Final = 428
_SYS_move_mount: Final = 429
OPEN_TREE_CLONE: Final = 1
AT_RECURSIVE: Final = 0x8000
AT_EMPTY_PATH: Final = 0x1000
AT_FDCWD: Final = -100
MOVE_MOUNT_F_EMPTY_PATH: Final = 0x4


def open_tree_clone(path: str, recursive: bool = True) -> int:
    """A detached copy of the mount tree at ``path`` (``open_tree(OPEN_TREE_CLONE)``).

    The returned fd can be sent to a process in another mount namespace, which attaches it with
    :func:`move_mount`; a plain bind mount cannot cross mount namespaces.
    """
    flags = OPEN_TREE_CLONE | (AT_RECURSIVE if recursive else 0) | os.O_CLOEXEC
    ret = _libc.syscall(
        ctypes.c_long(_SYS_open_tree), ctypes.c_int(AT_FDCWD), _b(path), ctypes.c_uint(flags)
    )
    return _check(ret, f"open_tree({path!r}, OPEN_TREE_CLONE)")


def move_mount(tree_fd: int, target: str) -> None:
    """Attach the detached mount ``tree_fd`` at ``target``."""
    ret = _libc.syscall(
        ctypes.c_long(_SYS_move_mount),
        ctypes.c_int(tree_fd),
        b"",
        ctypes.c_int(AT_FDCWD),
        _b(target),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
    )
    _check(ret, f"move_mount(fd {tree_fd} -> {target!r})")


PR_CAPBSET_DROP: Final = 24
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
_SYS_capset: Final = 126
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


# Built once at import (in the zygote): a sandbox only passes them to the kernel.
_CAP_HEADER = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
_CAP_EMPTY = (_CapData * 2)()


def capset_empty() -> None:
    """Empty the effective, permitted and inheritable sets of the calling thread."""
    ret = _libc.syscall(ctypes.c_long(_SYS_capset), ctypes.byref(_CAP_HEADER), _CAP_EMPTY)
    _check(ret, "capset(0)")


# Resolve every foreign function now, in the zygote, so that forked sandboxes inherit the
# bound objects instead of each building them (ctypes does that lazily, at first use).
for _name in ("unshare", "setns", "mount", "umount2", "syscall", "sethostname", "prctl"):
    getattr(_libc, _name)
