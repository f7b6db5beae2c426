"""The state directory: one owner at a time, private to that owner, named by its identity.

Everything a daemon keeps — function records and code, log streams, queued async payloads —
lives under one directory. Three rules follow from many tenants sharing one host:

* **One daemon per directory.** :func:`lock` takes an exclusive ``flock`` on ``<dir>/lock`` for
  the daemon's life; a second daemon on the same directory is refused with the first one's pid.
  The kernel drops the lock when the holder dies, however it dies (a SIGKILL included), so there
  is no stale-lock clean-up to get wrong.
* **Private.** Other local users must not read tenants' logs, payloads or environment: the
  directory is 0700 and every file the daemon writes in it is 0600 (:func:`secure` checks and
  fixes both at start and says what it fixed). Function code is the exception that proves the
  rule: sandboxes run as other uids and read it — through a mount of the code directory itself,
  so they never traverse the private parent.
* **Named by identity.** A daemon's cgroups live under a parent derived from its directory's
  real path (:func:`cgroup_parent`), never from "is this the standard directory?": two daemons
  with different directories can never share a parent, so one's start-up clean-up can never reap
  the other's sandboxes — and with the lock, no two live daemons share a directory either.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterable

from lambdad.errors import ServiceError

LOCK_NAME = "lock"
DIR_MODE = 0o700
FILE_MODE = 0o600
# Trees that sandboxes (other uids) read through a mount: their own modes are set by the registry
# (0755 directories, 0644/0755 files) and must not be narrowed here.
SHARED_TREES = frozenset({"code", "rootfs", "layers"})


class StateDirInUse(ServiceError):
    """Another live daemon holds the state directory."""


def lock(path: str) -> int:
    """Take the state directory for this process; return the lock's fd (keep it open).

    Raises:
        StateDirInUse: another process holds it (the message names its pid when known).
    """
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    lock_path = os.path.join(path, LOCK_NAME)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise ServiceError(f"flock({lock_path!r}): {exc.strerror}") from exc
        who = f"lambdad pid {holder}" if holder else "another process"
        raise StateDirInUse(
            f"state directory {path} is in use by {who}; "
            "give this daemon its own --state-dir (and --socket)",
            state_dir=path,
            **({"pid": holder} if holder else {}),
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode().strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None


def secure(path: str) -> list[str]:
    """Make the state directory 0700 and its private files 0600; return what was fixed.

    Only the daemon's own files are touched: the trees in :data:`SHARED_TREES` keep the modes
    the registry gives them, and symbolic links are never followed.
    """
    fixed: list[str] = []
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    fixed += _narrow(path, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(path):
        if dirpath == path:
            dirnames[:] = [d for d in dirnames if d not in SHARED_TREES]
        for name in dirnames:
            fixed += _narrow(os.path.join(dirpath, name), DIR_MODE)
        for name in filenames:
            fixed += _narrow(os.path.join(dirpath, name), FILE_MODE)
    return fixed


def _narrow(path: str, mode: int) -> Iterable[str]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) & ~mode == 0:
        return []
    os.chmod(path, stat.S_IMODE(st.st_mode) & mode, follow_symlinks=False)
    return [f"{path}: mode {stat.S_IMODE(st.st_mode):04o} -> {stat.S_IMODE(st.st_mode) & mode:04o}"]


def cgroup_parent(base: str, path: str) -> str:
    """The parent cgroup of the sandboxes of the daemon whose state directory is ``path``."""
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:10]
    return f"{base}-{digest}"


__all__ = ["StateDirInUse", "cgroup_parent", "lock", "secure"]
