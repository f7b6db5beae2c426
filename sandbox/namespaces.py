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


def enter(flags: int = CHILD_FLAGS, hostname: str = HOSTNAME) -> None:
    """Child half: leave the zygote's mount, network, uts, ipc and cgroup namespaces.

    The network namespace is always a new one, never one a dead sandbox used (issue 12,
    point 1). A namespace outlives its processes: TIME_WAIT sockets stay for 60 s, orphaned
    connections until they time out, and its counters (``/proc/net/snmp``, ``netstat``: how many
    connections and datagrams the last tenant made) are never reset. "Only ``lo`` in it", the
    old test for reuse, saw none of that, and no check can reset a counter, so no namespace is
    "provably empty". Reuse for the same function version only would need the namespace chosen
    at specialization, not at fork (a pooled sandbox is generic). Measured on a 2-core VM,
    forked child, 200 runs each, a sandbox dying after every one: this step (unshare + loopback
    up) takes 437 us p50 / 5.7 ms p99 joining a kept namespace, 1231 us p50 / 19 ms p99 with a
    fresh one, the difference being the creation and the teardowns of the previous ones that
    run meanwhile in a kernel worker (see docs/security.md). Pool time, off the request path,
    unless the pool is empty.
    """
    _libc.unshare(flags)
    if flags & _libc.CLONE_NEWUTS:
        _libc.sethostname(hostname)


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
