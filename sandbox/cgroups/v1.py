"""cgroup v1: one hierarchy per controller, one directory per controller per sandbox.

Layout: ``<mount_root>/<controller>/<parent>/<sandbox>`` for each controller of
``DEFAULT_CONTROLLERS`` (memory, cpu, pids, freezer) that is mounted. Controllers co-mounted
in one hierarchy (Debian's ``cpu,cpuacct`` with ``cpu`` and ``cpuacct`` symlinks to it) are
deduplicated by their real path, so each directory is made, attached and removed once.

Where cgroupspy fits (SPEC §12: "cgroup v1 memory/cpu control where it fits"): its controller
classes can address one known directory without walking the tree — ``MemoryController(Node(path))``
with the full path as a root node costs ~2 µs to build and does no I/O — so ``set_limits`` writes
the memory and cpu files through ``MemoryController``/``CpuController``. Measured on this 2-core
VM (python 3.11, 2,000 runs, p50/p99): ``set_limits`` 39/63 µs through cgroupspy vs 22/27 µs
with plain ``os.write`` — +17 µs at p50, inside the ~50 µs budget (the cost is cgroupspy's
buffered text ``open(path, "w")`` and its per-call ``os.path.join``). It does *not* fit:

* ``memory_peak_bytes``/``oom_kills``, read for every REPORT line: 11.6 µs through cgroupspy vs
  5.9 µs plain, and it raises where the contract is "0 if unreadable";
* ``attach``, which runs in a freshly forked child: plain ``os.write`` allocates no file objects;
* pids and freezer, which cgroupspy has no classes for.

Its ``OSError`` names neither our value nor (as text) our file, so each write is wrapped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any, Final

from cgroupspy.controllers import CpuController, MemoryController
from cgroupspy.nodes import Node

from sandbox.cgroups.base import (
    CachedIntFile,
    Cgroup,
    CgroupBackend,
    CgroupError,
    CgroupLimits,
    check_name,
    kill_loop,
    mkdir,
    read_key,
    read_procs,
    rmdir_retry,
    write_file,
)

__all__ = ["DEFAULT_CONTROLLERS", "V1Backend", "V1Cgroup"]

# cpuacct is left out: nothing reads it, and its mkdir+rmdir cost ~32 µs per sandbox.
DEFAULT_CONTROLLERS: Final = ("memory", "cpu", "pids", "freezer")


def _spy_write(controller: Any, attr: str, path: str, value: int) -> None:
    """Set one cgroupspy controller property, raising CgroupError that names file and value."""
    try:
        setattr(controller, attr, value)
    except OSError as exc:
        raise CgroupError(exc.errno, f"write {path!r} <- {str(value)!r}: {exc.strerror}") from exc


def _spy_controller(cls: Any, path: str) -> Any:
    # A root Node whose name is the whole path: cgroupspy resolves files as node.full_path +
    # filename, so the controller works on this one directory without building a tree.
    return cls(Node(os.fsencode(path)))


# What each controller protects, for missing().
_CONSEQUENCE: Final = {
    "memory": "memory limits are not enforced",
    "cpu": "CPU weight proportional to memory is not applied",
    "cpuacct": "per-sandbox CPU time is not accounted",
    "pids": "fork bombs are limited only by RLIMIT_NPROC",
    "freezer": "idle sandboxes keep running instead of being frozen",
}


class V1Cgroup(Cgroup):
    """One sandbox's cgroup on v1. Every path is computed here, once."""

    def __init__(self, name: str, dirs: dict[str, str], *, memsw: bool) -> None:
        """Args:
        name: the sandbox cgroup's name.
        dirs: controller -> this cgroup's directory in that controller's hierarchy (memory
            first); co-mounted controllers may map to the same directory.
        memsw: whether ``memory.memsw.limit_in_bytes`` exists (swap accounting is on).
        """
        self.name = name
        self.dirs = dirs
        # Unique directories in insertion order; memory first so that anything the task
        # allocates after attach is charged to the sandbox.
        self.paths: tuple[str, ...] = tuple(dict.fromkeys(dirs.values()))
        self._procs = tuple(p + "/cgroup.procs" for p in self.paths)
        mem = dirs.get("memory")
        self._memory: Any = None if mem is None else _spy_controller(MemoryController, mem)
        self._memsw = memsw
        self._peak_file = (
            None if mem is None else CachedIntFile(mem + "/memory.max_usage_in_bytes")
        )
        self._oom = None if mem is None else mem + "/memory.oom_control"
        # v1 does not charge socket buffers to memory.limit_in_bytes: without this a 128 MB
        # sandbox could park gigabytes in loopback TCP buffers (found by the escape battery).
        self._tcp_limit = None if mem is None else mem + "/memory.kmem.tcp.limit_in_bytes"
        cpu = dirs.get("cpu")
        self._cpu: Any = None if cpu is None else _spy_controller(CpuController, cpu)
        pids = dirs.get("pids")
        self._pids_max = None if pids is None else pids + "/pids.max"
        freezer = dirs.get("freezer")
        self._freezer = None if freezer is None else freezer + "/freezer.state"
        # The limit last written by this object; unknown counts as unlimited (a fresh cgroup).
        # memsw must stay >= limit_in_bytes at every moment, so the write order depends on
        # whether the limit goes up or down.
        self._memory_bytes = sys.maxsize

    def attach(self, pid: int = 0) -> None:
        value = str(pid)
        for path in self._procs:
            write_file(path, value)

    def set_limits(self, limits: CgroupLimits) -> None:
        if self._memory is not None:
            self._set_memory(limits.memory_bytes)
        if self._tcp_limit is not None:
            try:
                write_file(self._tcp_limit, str(limits.memory_bytes))
            except CgroupError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                self._tcp_limit = None  # a kernel without kmem accounting: nothing to cap
        self.set_cpu_weight(limits)
        if self._pids_max is not None:
            write_file(self._pids_max, str(limits.pids_max))

    def set_cpu_weight(self, limits: CgroupLimits) -> None:
        if self._cpu is not None:
            _spy_write(self._cpu, "shares", self._path("cpu", "cpu.shares"), limits.v1_cpu_shares())

    def _path(self, controller: str, filename: str) -> str:
        # Only for error messages, so not precomputed.
        return f"{self.dirs[controller]}/{filename}"

    def _set_memory(self, nbytes: int) -> None:
        limit = ("limit_in_bytes", "memory.limit_in_bytes")
        if not self._memsw:
            self._write_memory(limit, nbytes)
        else:
            memsw = ("memsw_limit_in_bytes", "memory.memsw.limit_in_bytes")
            first, second = (memsw, limit) if nbytes > self._memory_bytes else (limit, memsw)
            try:
                self._write_memory(first, nbytes)
            except CgroupError as exc:
                # Someone else (the zygote) set a lower limit than this object knew of: the
                # other order is the right one.
                if exc.errno != errno.EINVAL:
                    raise
                first, second = second, first
                self._write_memory(first, nbytes)
            self._write_memory(second, nbytes)
        self._memory_bytes = nbytes

    def _write_memory(self, attr_file: tuple[str, str], value: int) -> None:
        _spy_write(self._memory, attr_file[0], self._path("memory", attr_file[1]), value)

    def memory_peak_bytes(self) -> int:
        return 0 if self._peak_file is None else self._peak_file.read()

    def close(self) -> None:
        if self._peak_file is not None:
            self._peak_file.close()

    def oom_kills(self) -> int:
        # "oom_kill N" appeared in memory.oom_control in Linux 4.13.
        return 0 if self._oom is None else read_key(self._oom, b"oom_kill")

    def freeze(self) -> None:
        if self._freezer is not None:
            write_file(self._freezer, "FROZEN")

    def thaw(self) -> None:
        if self._freezer is not None:
            write_file(self._freezer, "THAWED")

    def kill(self) -> None:
        # A task frozen by the v1 freezer does not act on SIGKILL until it is thawed.
        if self._freezer is not None:
            try:
                write_file(self._freezer, "THAWED")
            except CgroupError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        kill_loop(self._procs)

    def procs(self) -> list[int]:
        return read_procs(self._procs[0])

    def destroy(self) -> None:
        self.close()
        self.kill()
        error: CgroupError | None = None
        for path in self.paths:
            try:
                rmdir_retry(path)
            except CgroupError as exc:
                error = error or exc  # still try the other hierarchies
        if error is not None:
            raise error

    def disable_swap(self) -> None:
        """Best effort ``memory.swappiness`` = 0 (done once, at creation).

        The kernel refuses it in some configurations (e.g. a parent with ``use_hierarchy`` on
        old kernels); ``memory.memsw.limit_in_bytes`` is what really keeps a sandbox off swap.
        """
        if self._memory is not None:
            with contextlib.suppress(CgroupError):
                _spy_write(self._memory, "swappiness", self._path("memory", "memory.swappiness"), 0)


class V1Backend(CgroupBackend):
    """cgroup v1: a ``<parent>`` cgroup in each mounted controller hierarchy."""

    version = 1

    def __init__(
        self,
        mount_root: str = "/sys/fs/cgroup",
        parent: str = "lambdad",
        controllers: tuple[str, ...] = DEFAULT_CONTROLLERS,
    ) -> None:
        """Find the mounted controllers among ``controllers`` and create the parent in each.

        Raises:
            CgroupError: none of the controllers is mounted (ENOENT), or a parent mkdir failed.
        """
        self.mount_root = mount_root
        self.parent = parent
        self._missing: list[str] = []
        # controller -> the lambdad parent directory in its hierarchy
        self.parents: dict[str, str] = {}
        seen: dict[str, str] = {}
        ordered = sorted(controllers, key=lambda c: c != "memory")
        for ctrl in ordered:
            mount = os.path.join(mount_root, ctrl)
            if not os.path.isfile(os.path.join(mount, "cgroup.procs")):
                self._missing.append(f"cgroup v1: no {ctrl} controller: {_CONSEQUENCE.get(ctrl)}")
                continue
            real = os.path.realpath(mount)
            parent_dir = seen.get(real) or os.path.join(mount, parent)
            seen[real] = parent_dir
            self.parents[ctrl] = parent_dir
        if not self.parents:
            raise CgroupError(
                errno.ENOENT, f"cgroup v1: none of {controllers} is mounted under {mount_root!r}"
            )
        for path in dict.fromkeys(self.parents.values()):
            try:
                os.makedirs(path, 0o755, exist_ok=True)
            except OSError as exc:
                raise CgroupError(exc.errno, f"mkdir {path!r}: {exc.strerror}") from exc
        mem = self.parents.get("memory")
        self._memsw = mem is not None and os.path.exists(mem + "/memory.memsw.limit_in_bytes")
        if mem is not None and not self._memsw:
            self._missing.append(
                "cgroup v1: no memory.memsw.limit_in_bytes (swap accounting off; boot with "
                "swapaccount=1): a sandbox can swap beyond its memory limit"
            )
        self.root = ", ".join(dict.fromkeys(self.parents.values()))

    def _cgroup(self, name: str) -> V1Cgroup:
        check_name(name)
        return V1Cgroup(
            name, {c: f"{p}/{name}" for c, p in self.parents.items()}, memsw=self._memsw
        )

    def create(self, name: str) -> V1Cgroup:
        cgroup = self._cgroup(name)
        made: list[str] = []
        try:
            for path in cgroup.paths:
                if mkdir(path):
                    made.append(path)
        except CgroupError:
            for path in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            raise
        cgroup.disable_swap()
        return cgroup

    def open(self, name: str) -> V1Cgroup:
        return self._cgroup(name)

    def missing(self) -> list[str]:
        return list(self._missing)

    def parent_dirs(self) -> list[str]:
        return list(dict.fromkeys(self.parents.values()))

    def cleanup(self) -> None:
        names: dict[str, None] = {}
        for path in dict.fromkeys(self.parents.values()):
            try:
                entries = os.scandir(path)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        names[entry.name] = None
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
