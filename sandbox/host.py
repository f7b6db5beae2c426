"""What this host can do, found out once at start (zygote and daemon).

Every protection that is unavailable becomes one human line in ``HostSupport.missing``; the
daemon prints them at start and ``lambdad serve --strict`` refuses to start if there are any.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import sandbox  # for the location of the project's own code (it must be visible inside)
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
    if "seccomp" not in disable:
        try:
            from sandbox import seccomp

            program = seccomp.compile_filter()
            _libc.prepare_seccomp(program)  # sandboxes, forked later, only load it
        except Exception as exc:
            missing.append(f"seccomp unavailable ({exc}): dangerous syscalls are not filtered")
    credentials = root and "credentials" not in disable
    return HostSupport(
        isolation=Isolation(namespaces=use_ns, credentials=credentials, seccomp_program=program),
        cgroups=backend,
        missing=missing,
    )


def runtime_path_map() -> dict[str, str]:
    """Host directories the python runtime uses -> where they appear inside a sandbox.

    Lambda keeps the interpreter under /var/lang and its own runtime under /var/runtime; we do
    the same, so no host path (such as /root/.pyenv) is visible as itself. Longest first, so
    that a virtual environment inside the project tree maps before the tree does.
    """
    paths = {os.path.realpath(sys.base_prefix): "/var/lang"}
    venv = os.path.realpath(sys.prefix)
    if venv not in paths:
        paths[venv] = "/var/runtime/venv"
    project = _project_dir()
    if not any(project == p or project.startswith(p + "/") for p in paths):
        paths[project] = "/var/runtime/src"  # an editable install: the source tree
    return dict(sorted(paths.items(), key=lambda kv: -len(kv[0])))


def runtime_binds(path_map: dict[str, str]) -> list[tuple[str, str]]:
    """The read-only bind mounts that realise ``path_map``: for the project's source tree only
    its two packages (not .git, tests or state), for the rest the whole directory."""
    project = _project_dir()
    binds = []
    for host_path, inside in path_map.items():
        if host_path == project:
            binds += [(f"{project}/{pkg}", f"{inside}/{pkg}") for pkg in ("lambdad", "sandbox")]
        else:
            binds.append((host_path, inside))
    return binds


def _project_dir() -> str:
    # lambdad/ and sandbox/ are siblings (one source tree, or one site-packages).
    return os.path.dirname(os.path.dirname(os.path.realpath(sandbox.__file__)))
