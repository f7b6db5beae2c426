"""What this host can do, found out once at start (zygote and daemon).

Every protection that is unavailable becomes one human line in ``HostSupport.missing``; the
daemon prints them at start and ``lambdad serve --strict`` refuses to start if there are any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sandbox import _libc, cgroups, namespaces
from sandbox.contain import Isolation


@dataclass
class HostSupport:
    isolation: Isolation
    cgroups: cgroups.CgroupBackend | None
    missing: list[str] = field(default_factory=list)


MECHANISMS = ("namespaces", "cgroups", "credentials", "seccomp")


def probe(cgroup_parent: str = "lambdad", disable: tuple[str, ...] = ()) -> HostSupport:
    """Find out which mechanisms work here. Never raises for a missing feature.

    ``disable`` turns mechanisms off on purpose (to measure what each costs, or to debug); each
    one is reported as missing like a mechanism the host lacks.
    """
    missing: list[str] = [f"{name}: disabled by configuration" for name in disable]
    root = os.geteuid() == 0
    use_ns = "namespaces" not in disable
    if not root and use_ns:
        try:
            namespaces.become_userns_root()
            missing.append(
                "not root: sandboxes run in a user namespace as your uid (no per-sandbox uid)"
            )
        except OSError as exc:
            use_ns = False
            missing.append(
                f"not root and user namespaces unavailable ({exc}): "
                "no pid/mount/network namespaces, no private root — handlers see the host"
            )
    backend: cgroups.CgroupBackend | None = None
    if root and "cgroups" not in disable:
        try:
            backend = cgroups.detect(cgroup_parent)
        except OSError as exc:
            missing.append(f"cgroups unusable ({exc}): no memory, cpu or pids limit per sandbox")
        else:
            if backend is None:
                missing.append("no usable cgroup hierarchy: no memory, cpu or pids limit")
            else:
                missing.extend(backend.missing())
    elif not root:
        missing.append("not root: no cgroups: no memory, cpu or pids limit per sandbox")
    program: bytes | None = None
    template_program: bytes | None = None
    if "seccomp" not in disable:
        try:
            from sandbox import seccomp

            program = seccomp.compile_filter()
            _libc.prepare_seccomp(program)  # sandboxes, forked later, only load it
            template_program = seccomp.compile_filter(template=True)
            _libc.prepare_seccomp(template_program)
        except Exception as exc:
            missing.append(f"seccomp unavailable ({exc}): dangerous syscalls are not filtered")
    credentials = root and "credentials" not in disable
    return HostSupport(
        isolation=Isolation(
            namespaces=use_ns,
            credentials=credentials,
            seccomp_program=program,
            template_seccomp_program=template_program,
        ),
        cgroups=backend,
        missing=missing,
    )
