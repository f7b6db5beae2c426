"""The cgroup interface shared by the v1 and v2 backends, and the small file primitives they use.

A :class:`CgroupBackend` owns one *lambdad parent* cgroup and makes one child :class:`Cgroup` per
sandbox under it. The zygote creates the cgroup and the forked child attaches itself before it
unshares its namespaces; the daemon (or the zygote) later sets limits, freezes idle sandboxes,
reads the peak memory for the REPORT line and destroys the cgroup.

Performance contract: ``attach``, ``set_limits``, ``freeze``, ``thaw``, ``memory_peak_bytes`` and
``oom_kills`` are on the invocation path. Implementations precompute every path in ``__init__``
and do nothing but ``os.open``/``os.read``/``os.write``/``os.close`` there: no pathlib, no
buffered file objects, no ``stat`` probes, and exceptions only on failure.

Fork safety: ``attach`` runs in a freshly forked child of a (single-threaded) zygote, before the
child unshares its namespaces. It therefore takes no locks, logs nothing and allocates little.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Final

__all__ = [
    "LAMBDA_MB_PER_VCPU",
    "Cgroup",
    "CgroupBackend",
    "CgroupError",
    "CgroupLimits",
]

# AWS Lambda allocates CPU in proportion to memory and reaches one full vCPU at 1,769 MB.
LAMBDA_MB_PER_VCPU: Final = 1769

# cgroup v1 cpu.shares: 1024 is one CPU's fair share; the kernel accepts 2..262144.
V1_SHARES_PER_VCPU: Final = 1024
V1_SHARES_MIN: Final = 2
V1_SHARES_MAX: Final = 262144
# cgroup v2 cpu.weight: 100 is the default (one fair share); the kernel accepts 1..10000.
V2_WEIGHT_PER_VCPU: Final = 100
V2_WEIGHT_MIN: Final = 1
V2_WEIGHT_MAX: Final = 10000

# How long kill() waits for SIGKILLed tasks to leave cgroup.procs, and destroy() retries an
# rmdir that fails with EBUSY (the cgroup can stay "populated" for a moment after the last
# task exited while the kernel finishes tearing it down).
KILL_TIMEOUT_S: Final = 2.0
RMDIR_TIMEOUT_S: Final = 1.0
_BACKOFF_FIRST_S: Final = 0.0002
_BACKOFF_MAX_S: Final = 0.02

_O_WRITE: Final = os.O_WRONLY | os.O_CLOEXEC
_O_READ: Final = os.O_RDONLY | os.O_CLOEXEC


class CgroupError(OSError):
    """A cgroup file operation failed; the message names the file and the value, nsjail style.

    ``errno`` is the errno of the failed system call, so callers can still test for ``EBUSY``
    or ``ENOENT``.
    """


@dataclass(frozen=True)
class CgroupLimits:
    """The resource limits of one sandbox."""

    memory_mb: int  # hard memory limit in MiB; swap is turned off for the cgroup
    pids_max: int = 64  # pids.max: processes + threads, the fork-bomb limit
    # CPU weight in cgroup v2 cpu.weight units (1..10000, 100 = one vCPU's fair share); None
    # derives it from memory like Lambda does (one vCPU at 1,769 MB).
    cpu_weight: int | None = None

    def __post_init__(self) -> None:
        if self.memory_mb < 1:
            raise ValueError(f"memory_mb must be >= 1, not {self.memory_mb}")
        if self.pids_max < 1:
            raise ValueError(f"pids_max must be >= 1, not {self.pids_max}")
        if self.cpu_weight is not None and not V2_WEIGHT_MIN <= self.cpu_weight <= V2_WEIGHT_MAX:
            raise ValueError(
                f"cpu_weight must be in {V2_WEIGHT_MIN}..{V2_WEIGHT_MAX}, not {self.cpu_weight}"
            )

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes (always page aligned)."""
        return self.memory_mb << 20

    def v1_cpu_shares(self) -> int:
        """The cgroup v1 ``cpu.shares`` value: 1024 per vCPU, clamped to 2..262144."""
        if self.cpu_weight is None:
            shares = round(self.memory_mb * V1_SHARES_PER_VCPU / LAMBDA_MB_PER_VCPU)
        else:
            shares = round(self.cpu_weight * V1_SHARES_PER_VCPU / V2_WEIGHT_PER_VCPU)
        return min(max(shares, V1_SHARES_MIN), V1_SHARES_MAX)

    def v2_cpu_weight(self) -> int:
        """The cgroup v2 ``cpu.weight`` value: 100 per vCPU, clamped to 1..10000."""
        if self.cpu_weight is not None:
            return self.cpu_weight
        weight = round(self.memory_mb * V2_WEIGHT_PER_VCPU / LAMBDA_MB_PER_VCPU)
        return min(max(weight, V2_WEIGHT_MIN), V2_WEIGHT_MAX)


class Cgroup(ABC):
    """One sandbox's cgroup (one directory per controller on v1, one directory on v2)."""

    name: str

    @abstractmethod
    def attach(self, pid: int = 0) -> None:
        """Move process ``pid`` (0 = the calling process) into this cgroup, in every controller.

        Safe to call from a forked child before it unshares its namespaces.

        Raises:
            CgroupError: a ``cgroup.procs`` write failed.
        """

    @abstractmethod
    def set_limits(self, limits: CgroupLimits) -> None:
        """Apply the memory, pids and CPU weight limits. On the cold-start path.

        Swap is off from creation on v2 (``memory.swap.max`` = 0 is constant); on v1
        ``memory.memsw.limit_in_bytes`` is set to the memory limit here.

        Raises:
            CgroupError: a limit file could not be written (e.g. EBUSY when the new memory
                limit is below what the sandbox already uses and cannot be reclaimed).
        """

    @abstractmethod
    def set_cpu_weight(self, limits: CgroupLimits) -> None:
        """Apply only the CPU weight of ``limits`` (one write). On the cold-start path: a
        pooled sandbox set up at the pool's low weight gets its function's weight here.

        Raises:
            CgroupError: the weight file could not be written.
        """

    @abstractmethod
    def memory_peak_bytes(self) -> int:
        """The highest memory usage of the cgroup so far in bytes; 0 if it cannot be read."""

    @abstractmethod
    def oom_kills(self) -> int:
        """How many processes the OOM killer killed in this cgroup; 0 if unknown."""

    @abstractmethod
    def freeze(self) -> None:
        """Stop every task of the cgroup (asynchronous; a no-op without a freezer).

        Raises:
            CgroupError: the freezer file could not be written.
        """

    @abstractmethod
    def thaw(self) -> None:
        """Let a frozen cgroup run again (a no-op without a freezer).

        Raises:
            CgroupError: the freezer file could not be written.
        """

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL every task in the cgroup and wait (bounded) until none is left.

        Raises:
            CgroupError: tasks were still present after the timeout, or a file op failed.
        """

    @abstractmethod
    def procs(self) -> list[int]:
        """The pids in the cgroup (as seen from the caller's pid namespace); [] if it is gone."""

    @abstractmethod
    def close(self) -> None:
        """Release file descriptors this object keeps open (it stays usable: they reopen)."""

    @abstractmethod
    def destroy(self) -> None:
        """Kill every task, then remove the cgroup directories. Idempotent.

        Raises:
            CgroupError: a directory could not be removed (naming it), or ``kill`` failed.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class CgroupBackend(ABC):
    """Creates and finds sandbox cgroups under the lambdad parent cgroup."""

    version: int  # 1 or 2
    root: str  # the lambdad parent cgroup path(s), for messages

    @abstractmethod
    def create(self, name: str) -> Cgroup:
        """Create (idempotently) the cgroup ``name`` under the lambdad parent.

        Raises:
            ValueError: ``name`` is not a single path component.
            CgroupError: mkdir failed.
        """

    @abstractmethod
    def open(self, name: str) -> Cgroup:
        """An object for the existing cgroup ``name`` (e.g. one the zygote made); no mkdir."""

    @abstractmethod
    def missing(self) -> list[str]:
        """One human line per protection this host's cgroups cannot provide."""

    def remove(self) -> None:
        """At daemon stop: destroy what is left below the lambdad parent, then the parent
        itself, so a stopped daemon leaves no cgroup behind. Best effort: never raises."""
        try:
            self.cleanup()
        except OSError:
            pass
        for path in self.parent_dirs():
            try:
                os.rmdir(path)
            except OSError:
                pass

    @abstractmethod
    def parent_dirs(self) -> list[str]:
        """The lambdad parent cgroup's directories (one per v1 hierarchy; one on v2)."""

    @abstractmethod
    def cleanup(self) -> None:
        """Destroy every leftover child cgroup of the lambdad parent (after a crash).

        Raises:
            CgroupError: some cgroups could not be destroyed (all are attempted first).
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} v{self.version} {self.root}>"


# -- file primitives -------------------------------------------------------------------------------


def check_name(name: str) -> None:
    """Refuse a cgroup name that is not exactly one path component."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"invalid cgroup name {name!r}")


def write_file(path: str, value: str) -> None:
    """Write ``value`` to an existing cgroup file with one write(2).

    No O_CREAT (a missing file is an error, not something to create) and no O_TRUNC (cgroupfs
    files have no length; truncating would only cost a setattr in kernfs).
    """
    try:
        fd = os.open(path, _O_WRITE)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise CgroupError(exc.errno, f"write {path!r} <- {value!r}: {exc.strerror}") from exc


def read_file(path: str) -> bytes:
    """The whole content of a (small, pseudo-)file; raises plain ``OSError``."""
    fd = os.open(path, _O_READ)
    try:
        data = os.read(fd, 65536)
        if len(data) < 65536:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_int(path: str) -> int:
    """The integer in a one-number cgroup file; 0 if it is missing or unreadable."""
    try:
        fd = os.open(path, _O_READ)
    except OSError:
        return 0
    try:
        return int(os.read(fd, 64))
    except (OSError, ValueError):
        return 0
    finally:
        os.close(fd)


class CachedIntFile:
    """A one-number cgroup file kept open and re-read with ``pread`` at offset 0.

    The daemon reads a sandbox's peak memory after every invocation: open+read+close costs
    ~5.4 µs, a pread on a kept fd ~0.8 µs (measured). Opened lazily, by whichever process
    reads first; :meth:`close` releases it."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> int:
        """The number in the file; 0 if it is missing or unreadable."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, _O_READ)
            except OSError:
                return 0
        try:
            return int(os.pread(self._fd, 64, 0))
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_key(path: str, key: bytes) -> int:
    """The value of ``key`` in a flat-keyed file ("key value" lines); 0 if absent/unreadable."""
    try:
        data = read_file(path)
    except OSError:
        return 0
    for line in data.splitlines():
        k, _, v = line.partition(b" ")
        if k == key:
            try:
                return int(v)
            except ValueError:
                return 0
    return 0


def read_procs(path: str) -> list[int]:
    """The pids in a ``cgroup.procs`` file; [] if the cgroup does not exist (any more).

    Raises:
        CgroupError: the file exists but cannot be read.
    """
    try:
        data = read_file(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CgroupError(exc.errno, f"read {path!r}: {exc.strerror}") from exc
    return [int(p) for p in data.split()]


def mkdir(path: str) -> bool:
    """mkdir that tolerates an existing directory; True if it was created now.

    Raises:
        CgroupError: naming the path.
    """
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    except OSError as exc:
        raise CgroupError(exc.errno, f"mkdir {path!r}: {exc.strerror}") from exc
    return True


def rmdir_retry(path: str, timeout: float = RMDIR_TIMEOUT_S) -> None:
    """rmdir a cgroup directory; a missing one is fine, EBUSY is retried with backoff.

    EBUSY right after the last task died is normal (the kernel releases the css asynchronously),
    so it is retried for up to ``timeout`` seconds before giving up.

    Raises:
        CgroupError: naming the path.
    """
    deadline = time.monotonic() + timeout
    delay = _BACKOFF_FIRST_S
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise CgroupError(exc.errno, f"rmdir {path!r}: {exc.strerror}") from exc
        time.sleep(delay)
        delay = min(delay * 2, _BACKOFF_MAX_S)


def kill_loop(procs_paths: tuple[str, ...], timeout: float = KILL_TIMEOUT_S) -> None:
    """SIGKILL every pid listed in the given ``cgroup.procs`` files until all are empty.

    Re-reads after each round because a task may fork while it is being killed. Bounded by
    ``timeout``; a task stuck in uninterruptible sleep can outlive it.

    Raises:
        CgroupError: tasks remain after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = _BACKOFF_FIRST_S
    while True:
        pids: set[int] = set()
        for path in procs_paths:
            pids.update(read_procs(path))
        if not pids:
            return
        if time.monotonic() >= deadline:
            raise CgroupError(
                errno.EBUSY,
                f"kill: pids {sorted(pids)} still in {procs_paths[0]!r} after {timeout:.1f} s",
            )
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(delay)
        delay = min(delay * 2, _BACKOFF_MAX_S)
