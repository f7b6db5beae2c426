"""Function templates, the daemon's half: one initialized template per function version that
opted in (``template = true``), and copies of it as new sandboxes (:mod:`sandbox.template` is
the sandbox's half; docs/security.md, "Function templates", the threat analysis).

The daemon trusts nothing a template or a copy says about itself: the template ran the
function's Init, and a copy is a fork of it. What it relies on is checked from outside, as
host root, before a copy gets an invocation (:func:`check_copy`): the copy's process is alone
in the cgroup the daemon made for it, PID 1 of a pid namespace of its own, with user, mount,
network, uts, ipc and cgroup namespaces that are neither the template's nor the host's, no
capability in any set, no_new_privs, and one seccomp filter more than its template (the full
one; see the limits in docs/security.md). A copy that fails a check is killed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from lambdad.logs import LogStream
from lambdad.sandboxes import ExitInfo, Sandbox, SandboxDied, State
from sandbox import messages
from sandbox.cgroups import Cgroup, CgroupBackend, CgroupLimits

log = logging.getLogger("lambdad")

FORK_TIMEOUT_S: Final = 5.0  # the template's answer to one fork
UNATTACHED_MAX: Final = 8  # copies forked and not yet moved into their own cgroup
# What each live copy leaves charged to its template's cgroup: every page the template writes
# after a fork is copied *for the template*, and the original, now mapped by the copy alone,
# stays charged where it was first charged (measured: 1-3.3 MB per copy, 40 to 166 copies of
# a python template). Without room for it a template is OOM-killed after ~100 copies, and its
# copies with it. Counted for every copy alive or being made; raised in steps, never lowered.
MEMORY_PER_COPY_MB: Final = 4
MEMORY_STEP_MB: Final = 64
RESTORE_TIMEOUT_S: Final = 10.0  # a copy's set-up and after-restore hooks (Lambda: 10 s)
COPY_NAMESPACES: Final = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup")
_ZERO_CAPS: Final = "0000000000000000"


class CopyRefused(Exception):
    """A copy failed a check or did not come up; it is killed (``str``: why)."""


def read_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a map (raises OSError if the process is gone)."""
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def namespace_ids(pid: int | str) -> dict[str, str]:
    return {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in COPY_NAMESPACES}


def ns_pids(status: dict[str, str]) -> list[int]:
    """NSpid: the process's pid in each pid namespace it is in, the reader's first."""
    return [int(p) for p in status.get("NSpid", "").split()]


def check_template(pid: int, cgroup: Cgroup | None) -> dict[str, str]:
    """After Init: the template is alone in its cgroup, single-threaded, without capability.
    Returns its status (the copies are compared with it).

    Raises:
        CopyRefused: it is not (Init left a thread or a process behind: no template).
    """
    status = read_status(pid)
    problems = []
    if status.get("Threads") != "1":
        problems.append(f"{status.get('Threads')} threads after Init")
    if cgroup is not None and sorted(cgroup.procs()) != [pid]:
        problems.append("other processes in its cgroup after Init")
    for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        if status.get(key, _ZERO_CAPS) != _ZERO_CAPS:
            problems.append(f"{key} {status.get(key)}")
    if problems:
        raise CopyRefused("cannot be a template: " + "; ".join(problems))
    return status


def check_copy(pid: int, template_pid: int, template_status: dict[str, str]) -> None:
    """The checks of the module docstring, from /proc. Raises CopyRefused (naming the first
    problem) or OSError (the copy is gone)."""
    status = read_status(pid)
    expect = {
        "Threads": "1",
        "NoNewPrivs": "1",
        "Seccomp": template_status.get("Seccomp", "0"),  # 2 (filter), or 0 where disabled
        "Uid": template_status.get("Uid", ""),
        "Gid": template_status.get("Gid", ""),
    }
    if template_status.get("Seccomp") == "2":
        expect["Seccomp_filters"] = str(int(template_status.get("Seccomp_filters", "1")) + 1)
    for key, want in expect.items():
        if status.get(key) != want:
            raise CopyRefused(f"{key} is {status.get(key)!r}, not {want!r}")
    for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        if status.get(key, _ZERO_CAPS) != _ZERO_CAPS:
            raise CopyRefused(f"{key} is {status.get(key)}")
    pids = ns_pids(status)
    if not pids or pids[-1] != 1 or len(pids) != len(ns_pids(template_status)) + 1:
        raise CopyRefused(f"NSpid {pids}: not PID 1 of a pid namespace below the template's")
    mine, template, host = namespace_ids(pid), namespace_ids(template_pid), namespace_ids("self")
    for ns in COPY_NAMESPACES:
        if mine[ns] in (template[ns], host[ns]):
            whose = "template" if mine[ns] == template[ns] else "host"
            raise CopyRefused(f"{ns} namespace shared with the {whose}")


def find_child(parent: int, pid_in_parent_ns: int, depth: int) -> int:
    """The host pid of ``parent``'s child whose pid in the parent's pid namespace (the
    innermost of the ``depth`` its NSpid lists) is ``pid_in_parent_ns``. Raises CopyRefused
    if there is none."""
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError as exc:
        raise CopyRefused(f"the template is gone ({exc.strerror})") from None
    for child in children:
        try:
            pids = ns_pids(read_status(child))
        except OSError:
            continue
        if len(pids) == depth and pids[-1] == pid_in_parent_ns:
            return child
    raise CopyRefused(f"the template forked no process {pid_in_parent_ns}")


@dataclass
class Restored:
    """A restored copy and what its restore was (the daemon's bookkeeping)."""

    sandbox: Sandbox
    stream: LogStream
    restore_ms: float
    phases: dict[str, int]


@dataclass
class _Copy:
    sandbox: Sandbox
    cgroup: Cgroup | None
    pid_in_template: int = 0


class Template:
    """The daemon's handle on one template: forks copies, learns how they exit."""

    def __init__(
        self,
        sandbox: Sandbox,
        status: dict[str, str],
        cgroups: CgroupBackend | None,
        limits: CgroupLimits | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.limits = limits  # the template's cgroup limits (memory raised with its copies)
        self.status = status
        self.cgroups = cgroups
        self.depth = len(ns_pids(status))
        self.counter = 0
        self.copies: dict[int, _Copy] = {}  # by pid in the template's pid namespace
        self._lock = asyncio.Lock()  # one fork in flight: its answer is unambiguous
        self._forked: asyncio.Future[messages.Forked] | None = None
        self._forking = ""  # the copy id of the fork in flight
        # Copies forked but not yet in their own cgroup count against the template's
        # pids.max (see specialize.TEMPLATE_PIDS_SLACK): at most this many at once.
        self._unattached = asyncio.Semaphore(UNATTACHED_MAX)
        self._tasks: set[asyncio.Task[None]] = set()  # cgroup removals in worker threads
        # Copies restored ahead of demand (the specializer fills and takes them).
        self.ready: collections.deque[Restored] = collections.deque()
        self.refilling = False
        self._memory_mb = limits.memory_mb if limits is not None else 0
        self._in_flight = 0  # forks not yet restored (or failed)
        # The template speaks its own protocol (forked / copy-exited, at any time), not the
        # one-answer-per-request of a serving sandbox.
        sandbox._deliver = self._on_message  # type: ignore[method-assign]
        sandbox.exit_info.add_done_callback(lambda _: self._template_gone())

    @property
    def alive(self) -> bool:
        return self.sandbox.alive

    def _on_message(self, msg: Any) -> None:
        raw = msg
        try:
            msg = messages.decode(raw)
        except messages.MessageError as exc:
            self.sandbox.violation(f"template: {exc}")
            return
        if isinstance(msg, messages.Forked):
            # Only the answer to the fork in flight; a late one (its fork timed out, its
            # intermediate sees its socket closed and exits) is dropped.
            if self._forked and not self._forked.done() and msg.id == self._forking:
                self._forked.set_result(msg)
        elif isinstance(msg, messages.CopyExited):
            copy = self.copies.pop(msg.pid, None)
            if copy is not None:
                self._copy_gone(copy, msg.status)
        else:
            self.sandbox.violation(f"template: unexpected {messages.kind_of(raw)}")

    def _copy_gone(self, copy: _Copy, status: int) -> None:
        sandbox = copy.sandbox
        peak = oom = 0
        if copy.cgroup is not None:
            try:
                peak, oom = copy.cgroup.memory_peak_bytes(), copy.cgroup.oom_kills()
            except OSError:
                pass
        if not sandbox.exit_info.done():
            sandbox.exit_info.set_result(ExitInfo(status, peak, oom))
        if sandbox.alive:
            sandbox.kill()
        if copy.cgroup is not None:
            self._cleanup(copy.cgroup)

    def _template_gone(self) -> None:
        # Its copies were in its pid namespace: the kernel killed them with it.
        info = self.sandbox.exit_info.result()
        log.info(
            "template %s exited (%s, %d OOM kills); its %d copies with it",
            self.sandbox.id, info.describe(), info.oom_kills, len(self.copies),
        )  # fmt: skip
        for copy in list(self.copies.values()):
            self._copy_gone(copy, signal.SIGKILL)
        self.copies.clear()

    async def fork(
        self, limits: CgroupLimits, tmp_mb: int, adopt: Callable[[Sandbox], None]
    ) -> tuple[Sandbox, messages.Restored]:
        """A new copy, restored and checked (state GENERIC). ``adopt(copy)`` runs once the
        handle exists, before the copy is told to restore (it gives it its log stream).
        Raises CopyRefused or SandboxDied (the copy is gone)."""
        template = self.sandbox
        if not template.alive:
            raise SandboxDied(f"{template.id}: template gone")
        t_start = time.monotonic_ns()
        self._in_flight += 1
        try:
            return await self._fork(limits, tmp_mb, adopt, t_start)
        finally:
            self._in_flight -= 1

    async def _fork(
        self,
        limits: CgroupLimits,
        tmp_mb: int,
        adopt: Callable[[Sandbox], None],
        t_start: int,
    ) -> tuple[Sandbox, messages.Restored]:
        template = self.sandbox
        self._room_for_copies()
        self.counter += 1
        copy_id = f"{template.id}-c{self.counter}"
        # cgroup v1 writes (mkdir, cgroup.procs) can block for milliseconds (the attach waits
        # for an RCU grace period): never on the event loop.
        cgroup = (
            await asyncio.to_thread(_make_cgroup, self.cgroups, copy_id, limits)
            if self.cgroups is not None
            else None
        )
        parent: socket.socket | None = None
        log_r = -1
        try:
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            log_r, log_w = os.pipe2(os.O_CLOEXEC)
            async with self._unattached:
                async with self._lock:
                    loop = asyncio.get_running_loop()
                    forked = self._forked = loop.create_future()
                    self._forking = copy_id
                    try:
                        messages.send_with_fds(
                            template._sock,
                            messages.Fork(copy_id, tmp_mb, limits.pids_max),
                            [child.fileno(), log_w],
                        )
                    except OSError as exc:
                        raise SandboxDied(f"{template.id}: {exc}") from None
                    finally:
                        child.close()
                        os.close(log_w)
                    try:
                        answer = await asyncio.wait_for(forked, FORK_TIMEOUT_S)
                    except TimeoutError:
                        raise CopyRefused(f"no answer to fork in {FORK_TIMEOUT_S:.0f} s") from None
                if answer.pid == 0:
                    raise CopyRefused(f"the template could not fork ({answer.error})")
                t_forked = time.monotonic_ns()
                first = find_child(template.pid, answer.pid, self.depth)
                if cgroup is not None:
                    await asyncio.to_thread(cgroup.attach, first)
                t_attached = time.monotonic_ns()
            parent.setblocking(False)
            sandbox = Sandbox(template.zygote, copy_id, first, template.uid, cgroup, parent, log_r)
            parent, log_r = None, -1  # the sandbox owns them now
        except BaseException:
            if parent is not None:
                parent.close()
            if log_r >= 0:
                os.close(log_r)
            if cgroup is not None:
                await _destroy(cgroup)
            raise
        copy = _Copy(sandbox, cgroup)
        try:
            adopt(sandbox)
            await sandbox.attach()
            messages.send_with_fds(sandbox._sock, messages.Restore(), [])
            restored = await sandbox.receive(messages.Restored, timeout=RESTORE_TIMEOUT_S)
            t_restored = time.monotonic_ns()
            sandbox.pid = self._copy_pid(sandbox, cgroup)
            copy.pid_in_template = ns_pids(read_status(sandbox.pid))[self.depth - 1]
            self.copies[copy.pid_in_template] = copy
            check_copy(sandbox.pid, template.pid, self.status)
            sandbox.move(State.GENERIC)
            # The daemon's side of the restore, beside the copy's own phases.
            restored = messages.Restored(
                {
                    **restored.phases,
                    "template_fork": (t_forked - t_start) // 1000,
                    "find_and_attach": (t_attached - t_forked) // 1000,
                    "copy_setup": (t_restored - t_attached) // 1000,
                    "check": (time.monotonic_ns() - t_restored) // 1000,
                },
                restored.restore_us,
            )
        except SandboxDied:
            # The copy, not the template: e.g. an after-restore hook raised (its log says).
            self._discard(copy)
            raise CopyRefused(f"copy {copy_id} exited during its restore") from None
        except (OSError, TimeoutError, messages.MessageError, CopyRefused) as exc:
            self._discard(copy)
            if isinstance(exc, CopyRefused):
                log.info("template %s: copy %s refused: %s", template.id, copy_id, exc)
                raise
            why = str(exc) or type(exc).__name__
            raise CopyRefused(f"copy {copy_id} did not restore: {why}") from None
        except BaseException:
            self._discard(copy)
            raise
        return sandbox, restored

    def _room_for_copies(self) -> None:
        cgroup, limits = self.sandbox.cgroup, self.limits
        if cgroup is None or limits is None:
            return
        live = len(self.copies) + len(self.ready) + self._in_flight
        needed = limits.memory_mb + MEMORY_PER_COPY_MB * live
        if needed > self._memory_mb:
            self._memory_mb = needed + MEMORY_STEP_MB
            try:  # the CPU weight stays the function's
                cgroup.set_limits(
                    CgroupLimits(
                        memory_mb=self._memory_mb,
                        pids_max=limits.pids_max,
                        cpu_weight=limits.cpu_weight or limits.v2_cpu_weight(),
                    )
                )
            except OSError as exc:
                log.info("template %s: memory limit: %s", self.sandbox.id, exc)

    def _copy_pid(self, sandbox: Sandbox, cgroup: Cgroup | None) -> int:
        """The copy's PID 1 (host pid): the one process of its cgroup that is PID 1 of a pid
        namespace just below the template's."""
        candidates = cgroup.procs() if cgroup is not None else []
        for pid in candidates:
            try:
                pids = ns_pids(read_status(pid))
            except OSError:
                continue
            if len(pids) == self.depth + 1 and pids[-1] == 1:
                return pid
        raise CopyRefused(f"no copy process in its cgroup ({len(candidates)} processes)")

    def _discard(self, copy: _Copy) -> None:
        sandbox = copy.sandbox
        if copy.cgroup is not None:
            try:
                copy.cgroup.kill()
            except OSError:
                pass
        sandbox.kill()
        if copy.pid_in_template == 0 and copy.cgroup is not None:
            self._cleanup(copy.cgroup)  # never registered: nobody else will

    def _cleanup(self, cgroup: Cgroup) -> None:
        task = asyncio.ensure_future(_destroy(cgroup))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def retire(self) -> None:
        """Retire the template: it exits, and its copies with it."""
        for restored in self.ready:
            restored.sandbox.kill()
        self.ready.clear()
        self.sandbox.retire()


def _make_cgroup(backend: CgroupBackend, name: str, limits: CgroupLimits) -> Cgroup:
    cgroup = backend.create(name)
    try:
        cgroup.set_limits(limits)
    except BaseException:
        cgroup.destroy()
        raise
    return cgroup


async def _destroy(cgroup: Cgroup) -> None:
    try:
        await asyncio.to_thread(cgroup.destroy)
    except OSError as exc:
        log.info("cgroup %s: %s", cgroup, exc)


class Templates:
    """Every template the daemon keeps, by function version (``Version.key``)."""

    def __init__(self) -> None:
        self.by_version: dict[str, Template] = {}
        self._making: dict[str, asyncio.Future[Template]] = {}

    def get(self, key: str) -> Template | None:
        template = self.by_version.get(key)
        if template is not None and not template.alive:
            del self.by_version[key]
            return None
        return template

    async def get_or_make(
        self, key: str, make: Callable[[], Any]
    ) -> tuple[Template, bool]:
        """The version's template, made by ``make()`` (an awaitable) if there is none; one
        maker at a time per version, the others wait for it. Returns (template, made now)."""
        template = self.get(key)
        if template is not None:
            return template, False
        making = self._making.get(key)
        if making is not None:
            return await asyncio.shield(making), False
        future: asyncio.Future[Template] = asyncio.get_running_loop().create_future()
        self._making[key] = future
        try:
            template = await make()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters, if any, see it too
            raise
        finally:
            self._making.pop(key, None)
        future.set_result(template)
        self.by_version[key] = template
        return template, True

    def retire_except(self, function_keys: Iterable[str], live: Iterable[str]) -> None:
        """Retire the templates of ``function_keys`` that are not in ``live``."""
        keep = set(live)
        for key in list(function_keys):
            if key not in keep and key in self.by_version:
                self.by_version.pop(key).retire()

    def retire_all(self) -> None:
        for template in self.by_version.values():
            template.retire()
        self.by_version.clear()


def elapsed_ms(since_ns: int) -> float:
    return (time.monotonic_ns() - since_ns) / 1e6
