"""The order of isolation steps — the one place that fixes it (nsjail's ``contain.cc``).

Pool time, in a freshly forked child that is PID 1 of its own pid namespace:

    cgroup attach -> namespaces (mnt, net, uts, ipc, cgroup) -> loopback up -> root + pivot_root
    -> bounding set emptied + no_new_privs (the effective set, needed below, stays)

Specialization, when the daemon hands the sandbox a function:

    code mount + /tmp -> (layers at /opt) -> (/mnt mounts) -> (egress veth) -> rlimits
    -> credentials (uid/gid, empty capability sets) -> seccomp (last)

Seccomp comes last because every earlier step needs a syscall it forbids. Each step is timed in
microseconds so a cold start's report says where the time went.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox import credentials, fsmounts, mounts, namespaces, netns, rlimits, seccomp
from sandbox.cgroups import Cgroup


@dataclass(frozen=True)
class Isolation:
    """Which mechanisms this host supports (decided once, in the zygote)."""

    namespaces: bool = True  # pid/mnt/net/uts/ipc/cgroup namespaces + pivot_root
    credentials: bool = True  # an unprivileged uid/gid per sandbox (host root only)
    seccomp_program: bytes | None = None  # the compiled filter, None = no seccomp
    # A function template's filter (seccomp.compile_filter(template=True)); its copies stack
    # seccomp_program on it. None: no seccomp, or templates unavailable on this host.
    template_seccomp_program: bytes | None = None


class _Clock:
    def __init__(self, start_ns: int) -> None:
        self.last = start_ns
        self.phases: dict[str, int] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic_ns()
        self.phases[name] = (now - self.last) // 1000
        self.last = now


def prepare_generic(
    isolation: Isolation,
    root: mounts.RootSpec,
    cgroup: Cgroup | None,
    uid: int,
    gid: int,
    forked_at_ns: int,
) -> dict[str, int]:
    """Child half, pool time. Returns the phase timings in microseconds."""
    clock = _Clock(forked_at_ns)
    clock.lap("fork")
    if cgroup is not None:
        cgroup.attach(0)
        clock.lap("cgroup")
    if isolation.namespaces:
        namespaces.enter()
        clock.lap("namespaces")
        netns.loopback_up()
        clock.lap("network")
        mounts.build_root(root, uid, gid)
        clock.lap("mounts")
    credentials.drop_bounding()
    clock.lap("bounding_set")
    return clock.phases


@dataclass(frozen=True)
class Specialization:
    """The function-specific part of a sandbox's confinement."""

    tmp_mb: int
    uid: int
    gid: int
    limits: rlimits.Rlimits


def specialize(
    isolation: Isolation,
    spec: Specialization,
    code_tree_fd: int,
    egress: dict[str, str] | None = None,
    layer_tree_fds: Sequence[int] = (),
    mount_tree_fds: Sequence[int] = (),
    fs_mounts: Sequence[Mapping[str, Any]] = (),
    template: bool = False,
) -> dict[str, int]:
    """Child half, specialization. After this returns, untrusted code may run.

    ``egress``: for ``network = "egress"`` functions, the addresses of the veth end the daemon
    moved into this sandbox's network namespace (configured here, while we still hold
    CAP_NET_ADMIN in it).

    ``template``: the sandbox becomes a function template (:mod:`sandbox.template`): the
    hidden proc its copies need is mounted, and the template's filter loaded instead of the
    full one."""
    clock = _Clock(time.monotonic_ns())
    if isolation.namespaces:
        mounts.mount_function(code_tree_fd, spec.tmp_mb, spec.uid, spec.gid)
        clock.lap("code_mount")
        if layer_tree_fds:
            mounts.mount_layers(layer_tree_fds)
            clock.lap("layers_mount")
        if fs_mounts:
            fsmounts.mount_all(mount_tree_fds, fs_mounts, spec.uid, spec.gid)
            clock.lap("fs_mounts")
        if template:
            mounts.mount_template_proc()
            clock.lap("template_proc")
    if egress:
        netns.configure_egress(egress)
        clock.lap("egress")
    rlimits.apply(spec.limits)
    clock.lap("rlimits")
    credentials.drop(spec.uid, spec.gid)
    clock.lap("credentials")
    program = isolation.template_seccomp_program if template else isolation.seccomp_program
    if template and program is None and isolation.seccomp_program is not None:
        raise OSError("function templates need the template seccomp filter, unavailable here")
    if program is not None:
        seccomp.load(program)
        clock.lap("seccomp")
    return clock.phases
