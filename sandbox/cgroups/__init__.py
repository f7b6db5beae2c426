"""Per-sandbox cgroups: memory (swap off), CPU weight, pids, freezer — v1 and v2 behind one API.

:func:`detect` picks the backend at start; :mod:`.base` defines the interface, :mod:`.v1` and
:mod:`.v2` implement it with plain file writes (plus cgroupspy for the v1 memory/cpu limits).
"""

from __future__ import annotations

import errno
import logging
import os

from sandbox import _libc
from sandbox.cgroups.base import Cgroup, CgroupBackend, CgroupError, CgroupLimits
from sandbox.cgroups.v1 import V1Backend
from sandbox.cgroups.v2 import V2Backend, delegation_base, own_cgroup

__all__ = [
    "Cgroup",
    "CgroupBackend",
    "CgroupError",
    "CgroupLimits",
    "V1Backend",
    "V2Backend",
    "detect",
    "favor_dynmods",
    "remount_flags",
]

_log = logging.getLogger(__name__)

# The errors that mean "this hierarchy exists but we may not write to it".
_NOT_WRITABLE = frozenset({errno.EPERM, errno.EACCES, errno.EROFS})


def detect(parent: str = "lambdad", mount_root: str = "/sys/fs/cgroup") -> CgroupBackend | None:
    """The cgroup backend for this host, with its lambdad parent cgroup set up.

    cgroup v2 if ``mount_root`` itself is a cgroup2 mount whose (delegated) cgroup offers the
    memory and pids controllers; else cgroup v1 if the memory controller is mounted at
    ``mount_root/memory``; else None. Also None when not running as root or when the hierarchy
    is not writable (the reason is logged).

    Raises:
        CgroupError: setting up the parent failed for another reason than permissions.
    """
    if os.geteuid() != 0:
        return None
    try:
        if is_cgroup2_mount(mount_root):
            base, _ = delegation_base(mount_root, own_cgroup())
            try:
                with open(os.path.join(base, "cgroup.controllers"), encoding="ascii") as f:
                    available = f.read().split()
            except OSError:
                available = []
            if "memory" in available and "pids" in available:
                return V2Backend(mount_root, parent)
            _log.warning(
                "cgroup v2 at %s lacks memory or pids in %s: %s", mount_root, base, available
            )
        if os.path.isfile(os.path.join(mount_root, "memory", "memory.limit_in_bytes")):
            return V1Backend(mount_root, parent)
    except OSError as exc:
        if exc.errno in _NOT_WRITABLE:
            _log.warning("cgroups under %s are not writable: %s", mount_root, exc)
            return None
        raise
    return None


def is_cgroup2_mount(path: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether ``path`` is itself the mount point of a cgroup2 filesystem (the topmost mount)."""
    target = os.path.realpath(path)
    fstype = None
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                # id parent major:minor root mount-point options [optional...] - fstype ...
                if len(fields) < 7 or _unescape(fields[4]) != target:
                    continue
                dash = fields.index("-", 6)
                fstype = fields[dash + 1]  # a later mount over the same point wins
    except (OSError, ValueError, IndexError):
        # No /proc to ask: any cgroup2 directory has cgroup.controllers, v1 and tmpfs have not.
        return os.path.isfile(os.path.join(path, "cgroup.controllers"))
    return fstype == "cgroup2"


# Per-mount flags as mountinfo's 6th field names them: a remount must pass them again, or it
# clears them (a cgroup mount is nosuid,nodev,noexec on most hosts).
_MOUNT_FLAGS = {
    "ro": _libc.MS_RDONLY,
    "nosuid": _libc.MS_NOSUID,
    "nodev": _libc.MS_NODEV,
    "noexec": _libc.MS_NOEXEC,
    "noatime": _libc.MS_NOATIME,
    "nodiratime": 2048,  # MS_NODIRATIME
    "relatime": 1 << 21,  # MS_RELATIME
    "strictatime": 1 << 24,  # MS_STRICTATIME
}


def remount_flags(mount_options: str) -> int:
    """``MS_REMOUNT`` with the per-mount flags of mountinfo's 6th field, kept as they are."""
    flags = _libc.MS_REMOUNT
    for option in mount_options.split(","):
        flags |= _MOUNT_FLAGS.get(option, 0)
    return flags


def favor_dynmods(mountinfo: str = "/proc/self/mountinfo") -> str:
    """Turn on cgroup2's ``favordynmods`` (Linux 6.0+); returns what was done, for the log.

    Every sandbox moves into a cgroup of its own when it is forked, and each move takes the
    kernel's global ``cgroup_threadgroup_rwsem`` for writing: after a quiet spell that waits
    for an RCU grace period (0.5 ms p50 but 12 ms p90 for the attach on a 2-core VM, measured
    with sequential forks). ``favordynmods`` keeps the semaphore in the mode where writers
    never wait, at the price of an atomic operation in every fork and exit. The semaphore is
    shared by every hierarchy, so the cgroup2 mount of a cgroup v1 host (systemd's hybrid
    ``/sys/fs/cgroup/unified``) serves the v1 hierarchies too; cgroup v1 has no such option.

    The remount passes the mount's own flags and super options again (a remount clears what
    it does not name: ``nsdelegate``, ``nosuid``, ...).

    Raises:
        OSError: the remount was refused (e.g. EINVAL: a kernel older than 6.0).
    """
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().splitlines()
    for line in lines:
        fields = line.split()
        try:
            dash = fields.index("-", 6)
        except ValueError:
            continue
        if fields[dash + 1] != "cgroup2" or len(fields) < dash + 4:
            continue
        target = _unescape(fields[4])
        super_options = [o for o in fields[dash + 3].split(",") if o not in ("rw", "ro")]
        if "favordynmods" in super_options:
            return f"cgroup2 at {target} already has favordynmods"
        flags = remount_flags(fields[5])
        _libc.mount(None, target, None, flags, ",".join([*super_options, "favordynmods"]))
        return f"cgroup2 at {target} remounted with favordynmods"
    return "no cgroup2 mount: favordynmods not available (cgroup moves may wait for RCU)"


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
