"""Namespaces: pid (parent half, in the zygote) and mount/net/uts/ipc/cgroup (child half).

A new pid namespace applies to the *children* of the process that unshares it, so the zygote
does the pid half: ``unshare(CLONE_NEWPID)``, ``fork()`` (the child is PID 1 of a fresh
namespace), then ``setns()`` back to its own namespace so the next fork can get a fresh one
again. That avoids a double fork per sandbox. The other namespaces are unshared by the child
itself (:func:`enter`), after it has joined its cgroup, so that its cgroup namespace is rooted
at its own cgroup.
"""

from __future__ import annotations

import os
import socket

from sandbox import _libc

CHILD_FLAGS = (
    _libc.CLONE_NEWNS
    | _libc.CLONE_NEWNET
    | _libc.CLONE_NEWUTS
    | _libc.CLONE_NEWIPC
    | _libc.CLONE_NEWCGROUP
)
HOSTNAME = "lambdad"


class PidNamespaceForker:
    """Parent half: forks children that are PID 1 of a new pid namespace each."""

    def __init__(self) -> None:
        self._own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def fork(self) -> int:
        """Like ``os.fork()``; the child is PID 1 of a new pid namespace."""
        _libc.unshare(_libc.CLONE_NEWPID)
        pid = os.fork()
        if pid != 0:
            _libc.setns(self._own_pidns, _libc.CLONE_NEWPID)
        return pid

    def close(self) -> None:
        os.close(self._own_pidns)


def enter(flags: int = CHILD_FLAGS, hostname: str = HOSTNAME, netns_joined: bool = False) -> None:
    """Child half: leave the zygote's mount, network, uts, ipc and cgroup namespaces.

    ``netns_joined``: the sandbox already joined a network namespace the zygote prepared
    (see :class:`NetnsPool`); do not create one.
    """
    if netns_joined:
        flags &= ~_libc.CLONE_NEWNET
    _libc.unshare(flags)
    if flags & _libc.CLONE_NEWUTS:
        _libc.sethostname(hostname)


class NetnsPool:
    """Parent half of network namespaces: the zygote creates them and recycles clean ones.

    Creating a network namespace is cheap, but destroying one is deferred to a kernel worker
    that takes an RCU grace period and competes with whatever starts next. So the zygote holds
    a reference (an fd) to every sandbox's namespace; when a sandbox dies, its namespace is
    kept for a later sandbox if it is *clean* — nothing but ``lo`` in it. A sandbox cannot
    change a namespace's configuration (no capability left), its sockets die with its
    processes, and an egress namespace (which had a veth) is never reused.
    """

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._spare: list[int] = []

    def take(self) -> int:
        """An fd of a fresh or recycled network namespace, for the next sandbox."""
        if self._spare:
            return self._spare.pop()
        _libc.unshare(_libc.CLONE_NEWNET)
        try:
            return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            _libc.setns(self._own, _libc.CLONE_NEWNET)

    def give_back(self, fd: int) -> None:
        """A sandbox that used ``fd`` is gone: keep its namespace if it is clean."""
        if len(self._spare) < self.keep and self._only_loopback(fd):
            self._spare.append(fd)
        else:
            os.close(fd)

    def _only_loopback(self, fd: int) -> bool:
        try:
            _libc.setns(fd, _libc.CLONE_NEWNET)
            try:
                names = [name for _index, name in socket.if_nameindex()]
            finally:
                _libc.setns(self._own, _libc.CLONE_NEWNET)
        except OSError:
            return False
        return names == ["lo"]


def become_userns_root() -> None:
    """For an unprivileged zygote: enter a new user namespace mapping our uid/gid to 0.

    Inside it the zygote holds every capability over the namespaces it creates afterwards, which
    is what lets it unshare pid/mount/net namespaces and mount without being host root.
    """
    uid, gid = os.getuid(), os.getgid()
    _libc.unshare(_libc.CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")
