"""cgroup v2: one unified hierarchy; one directory per sandbox under the lambdad parent.

Layout, when the daemon runs in the root cgroup (or ``mount_root`` is a test directory)::

    <mount_root>/                      cgroup.subtree_control += cpu memory pids
    <mount_root>/<parent>/             cgroup.subtree_control += cpu memory pids (no processes)
    <mount_root>/<parent>/<sandbox>/   memory.max, memory.swap.max, pids.max, cpu.weight, ...

Under systemd with ``Delegate=yes`` the service gets its own cgroup, say
``/system.slice/lambdad.service``, and may manage everything below it, but nothing above: the
parent is created *inside* the daemon's own cgroup. cgroup v2's "no internal processes" rule
says that a non-root cgroup which distributes a controller to its children (has it in
``cgroup.subtree_control``) may not itself contain processes, and the daemon is in that cgroup.
So the backend first moves the calling process into a leaf ``<own>/supervisor``, then enables
the controllers in ``<own>/cgroup.subtree_control`` and in ``<own>/<parent>``::

    /system.slice/lambdad.service/              subtree_control: cpu memory pids (no processes)
    /system.slice/lambdad.service/supervisor/   the daemon, then the zygotes it starts
    /system.slice/lambdad.service/lambdad/      subtree_control: cpu memory pids (no processes)
    /system.slice/lambdad.service/lambdad/<sandbox>/

Consequences: construct the backend *before* starting any other process (a zygote still sitting
in ``<own>`` makes the ``subtree_control`` write fail with EBUSY); processes started afterwards
inherit the ``supervisor`` cgroup, and a backend constructed in one of them (the zygote) sees its
own cgroup end in ``/supervisor`` and uses the cgroup above it, so daemon and zygote agree on
the same parent. A cgroup is treated as "not the root" when its path is not ``/`` or when it has
a ``cgroup.type`` file (the root has none): that also covers a container whose cgroup namespace
makes a delegated cgroup look like ``/``.

Only controllers listed in the delegated cgroup's ``cgroup.controllers`` are enabled; each one
that is missing becomes a line of :meth:`V2Backend.missing`.
"""

from __future__ import annotations

import errno
import os
from typing import Final

from sandbox.cgroups.base import (
    CachedIntFile,
    Cgroup,
    CgroupBackend,
    CgroupError,
    CgroupLimits,
    check_name,
    kill_loop,
    mkdir,
    read_file,
    read_key,
    read_procs,
    rmdir_retry,
    write_file,
)

__all__ = ["SUPERVISOR_LEAF", "WANTED_CONTROLLERS", "V2Backend", "V2Cgroup", "own_cgroup"]

# The leaf that holds the daemon (and its zygotes) when its own cgroup is delegated to it.
SUPERVISOR_LEAF: Final = "supervisor"
WANTED_CONTROLLERS: Final[tuple[str, ...]] = ("cpu", "memory", "pids")

_CONSEQUENCE: Final = {
    "memory": "memory limits are not enforced and max memory used is not measured",
    "cpu": "CPU weight proportional to memory is not applied",
    "pids": "fork bombs are limited only by RLIMIT_NPROC",
}


def own_cgroup(proc_self_cgroup: str = "/proc/self/cgroup") -> str:
    """The calling process's cgroup v2 path (the ``0::/path`` line); ``/`` if there is none."""
    try:
        with open(proc_self_cgroup, encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    path = line[3:].rstrip("\n").removesuffix(" (deleted)")
                    return path if path.startswith("/") else "/"
    except OSError:
        pass
    return "/"


def delegation_base(mount_root: str, own: str) -> tuple[str, bool]:
    """Where the lambdad parent goes and whether that cgroup is a delegated, non-root one.

    Returns:
        (directory, delegated): ``mount_root`` + the daemon's own cgroup (minus a trailing
        ``/supervisor`` leaf); ``delegated`` is True unless that directory is the hierarchy root.
    """
    rel = own.rstrip("/")
    if os.path.basename(rel) == SUPERVISOR_LEAF:
        rel = os.path.dirname(rel)
    rel = rel.strip("/")
    base = os.path.join(mount_root, rel) if rel else mount_root
    delegated = bool(rel) or os.path.exists(os.path.join(base, "cgroup.type"))
    return base.rstrip("/") or "/", delegated


class V2Cgroup(Cgroup):
    """One sandbox's cgroup on v2. Every path is computed here, once."""

    def __init__(self, name: str, path: str, *, files: frozenset[str]) -> None:
        """Args:
        name: the sandbox cgroup's name.
        path: its directory.
        files: the interface files this kernel/configuration provides (probed once by the
            backend); a write to a file not listed is skipped.
        """
        self.name = name
        self.path = path
        self._procs = (path + "/cgroup.procs",)
        self._memory_max = _opt(path, "memory.max", files)
        self._swap_max = _opt(path, "memory.swap.max", files)
        self._pids_max = _opt(path, "pids.max", files)
        self._cpu_weight = _opt(path, "cpu.weight", files)
        # memory.peak arrived in Linux 5.19; before that memory.current is the best we have.
        peak = _opt(path, "memory.peak", files) or _opt(path, "memory.current", files)
        self._peak_file = None if peak is None else CachedIntFile(peak)
        self._events = _opt(path, "memory.events", files)
        self._kill = _opt(path, "cgroup.kill", files)
        self._freeze = _opt(path, "cgroup.freeze", files)

    def attach(self, pid: int = 0) -> None:
        write_file(self._procs[0], str(pid))

    def set_limits(self, limits: CgroupLimits) -> None:
        if self._memory_max is not None:
            write_file(self._memory_max, str(limits.memory_bytes))
        if self._pids_max is not None:
            write_file(self._pids_max, str(limits.pids_max))
        self.set_cpu_weight(limits)

    def set_cpu_weight(self, limits: CgroupLimits) -> None:
        if self._cpu_weight is not None:
            write_file(self._cpu_weight, str(limits.v2_cpu_weight()))

    def memory_peak_bytes(self) -> int:
        return 0 if self._peak_file is None else self._peak_file.read()

    def close(self) -> None:
        if self._peak_file is not None:
            self._peak_file.close()

    def oom_kills(self) -> int:
        return 0 if self._events is None else read_key(self._events, b"oom_kill")

    def freeze(self) -> None:
        if self._freeze is not None:
            write_file(self._freeze, "1")

    def thaw(self) -> None:
        if self._freeze is not None:
            write_file(self._freeze, "0")

    def kill(self) -> None:
        # The v2 freezer lets SIGKILL through, so no thaw is needed first. cgroup.kill (5.14)
        # also catches tasks forked while the kill is in progress; the loop covers older kernels
        # and is still used to wait until the tasks are really gone.
        if self._kill is not None:
            try:
                write_file(self._kill, "1")
            except CgroupError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
        kill_loop(self._procs)

    def procs(self) -> list[int]:
        return read_procs(self._procs[0])

    def destroy(self) -> None:
        self.close()
        self.kill()
        rmdir_retry(self.path)

    def disable_swap(self) -> None:
        """``memory.swap.max`` = 0, once at creation: it never changes, so it stays off the
        ``set_limits`` path, and a pooled sandbox cannot swap even before it is specialised.

        Raises:
            CgroupError: the write failed.
        """
        if self._swap_max is not None:
            write_file(self._swap_max, "0")


def _opt(path: str, filename: str, files: frozenset[str]) -> str | None:
    return f"{path}/{filename}" if filename in files else None


class V2Backend(CgroupBackend):
    """cgroup v2: sandboxes under ``<delegated cgroup>/<parent>`` (see the module docstring)."""

    version = 2

    def __init__(
        self,
        mount_root: str = "/sys/fs/cgroup",
        parent: str = "lambdad",
        *,
        own: str | None = None,
    ) -> None:
        """Set up the parent cgroup: supervisor leaf if delegated, controllers, probing.

        Args:
            mount_root: where the cgroup2 hierarchy is mounted (or a test directory).
            parent: the lambdad parent cgroup's name.
            own: the calling process's cgroup path; None reads ``/proc/self/cgroup``.

        Raises:
            CgroupError: a mkdir or a control-file write failed.
        """
        check_name(parent)
        self.mount_root = mount_root
        self.parent = parent
        self._missing: list[str] = []
        base, delegated = delegation_base(mount_root, own_cgroup() if own is None else own)
        self.base = base
        self.delegated = delegated
        if delegated:
            leaf = os.path.join(base, SUPERVISOR_LEAF)
            mkdir(leaf)
            # "0" moves the writer's whole thread group, whatever pid namespace it is in.
            write_file(leaf + "/cgroup.procs", "0")
        path = base + "/cgroup.controllers"
        try:
            available = read_file(path).decode().split()
        except OSError as exc:
            raise CgroupError(exc.errno, f"read {path!r}: {exc.strerror}") from exc
        wanted = [c for c in WANTED_CONTROLLERS if c in available]
        for ctrl in WANTED_CONTROLLERS:
            if ctrl not in available:
                self._missing.append(
                    f"cgroup v2: no {ctrl} controller in {base + '/cgroup.controllers'!r}: "
                    f"{_CONSEQUENCE[ctrl]}"
                )
        self.root = os.path.join(base, parent)
        enabled = self._enable(base, wanted)
        mkdir(self.root)
        enabled = self._enable(self.root, enabled)
        self.controllers: tuple[str, ...] = tuple(enabled)
        self._files = self._probe()

    def _enable(self, cgroup: str, controllers: list[str]) -> list[str]:
        """Enable ``controllers`` for the children of ``cgroup``; returns those that are on.

        One write for all of them; if the kernel refuses (e.g. cpu with realtime tasks about),
        each is tried alone and the refused ones go to missing().
        """
        path = cgroup + "/cgroup.subtree_control"
        try:
            current = read_file(path).decode().split()
        except OSError as exc:
            raise CgroupError(exc.errno, f"read {path!r}: {exc.strerror}") from exc
        todo = [c for c in controllers if c not in current]
        if not todo:
            return controllers
        try:
            write_file(path, " ".join("+" + c for c in todo))
            return controllers
        except CgroupError as exc:
            if exc.errno == errno.EBUSY and self.delegated and cgroup == self.base:
                raise CgroupError(
                    exc.errno,
                    f"{exc.strerror}: other processes are still in {cgroup!r}; create the "
                    "cgroup backend before starting any child process",
                ) from exc
        enabled = [c for c in controllers if c not in todo]
        for ctrl in todo:
            try:
                write_file(path, "+" + ctrl)
                enabled.append(ctrl)
            except CgroupError as exc:
                self._missing.append(
                    f"cgroup v2: cannot enable {ctrl} ({exc.strerror}): {_CONSEQUENCE[ctrl]}"
                )
        return [c for c in controllers if c in enabled]

    def _probe(self) -> frozenset[str]:
        """Which optional interface files exist, looked up once in the parent cgroup.

        Sandboxes get the same set: the parent has exactly the controllers we enabled above it,
        and we enable the same ones in the parent for the sandboxes.
        """
        files = {"cgroup.procs"}
        optional = {
            "memory": (
                "memory.max",
                "memory.swap.max",
                "memory.peak",
                "memory.current",
                "memory.events",
            ),
            "pids": ("pids.max",),
            "cpu": ("cpu.weight",),
        }
        for ctrl in self.controllers:
            files.update(f for f in optional[ctrl] if os.path.exists(f"{self.root}/{f}"))
        for core in ("cgroup.kill", "cgroup.freeze"):
            if os.path.exists(f"{self.root}/{core}"):
                files.add(core)
        if "memory" in self.controllers and "memory.swap.max" not in files:
            self._missing.append(
                "cgroup v2: no memory.swap.max (swap accounting off): a sandbox can swap beyond "
                "its memory limit"
            )
        if "cgroup.freeze" not in files:
            self._missing.append(
                "cgroup v2: no cgroup.freeze (Linux < 5.2): idle sandboxes keep running instead "
                "of being frozen"
            )
        return frozenset(files)

    def _cgroup(self, name: str) -> V2Cgroup:
        check_name(name)
        return V2Cgroup(name, f"{self.root}/{name}", files=self._files)

    def create(self, name: str) -> V2Cgroup:
        cgroup = self._cgroup(name)
        mkdir(cgroup.path)
        cgroup.disable_swap()
        return cgroup

    def open(self, name: str) -> V2Cgroup:
        return self._cgroup(name)

    def missing(self) -> list[str]:
        return list(self._missing)

    def parent_dirs(self) -> list[str]:
        return [self.root]

    def cleanup(self) -> None:
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return
        with entries:
            names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        errors: list[str] = []
        first_errno = 0
        for name in names:
            try:
                self.open(name).destroy()
            except CgroupError as exc:
                errors.append(exc.strerror or str(exc))
                first_errno = first_errno or (exc.errno or errno.EBUSY)
        if errors:
            raise CgroupError(first_errno, "cleanup: " + "; ".join(errors))
