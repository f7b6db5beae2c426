"""The cold start: turn a generic sandbox from the runtime's pool into one of a function version.

The daemon's half of specialization (the sandbox's half is :func:`sandbox.contain.specialize`,
driven by :mod:`sandbox.agent`): make room in the memory budget, take a generic sandbox (from
the pool, or forked on demand), write its cgroup limits, open its log stream, wire up egress,
clone the code directory as a detached mount and send it with ``init``, then wait for Init.
Every step is timed; the phases reach the cold invocation's report.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from lambdad.component import Component
from lambdad.functions import Version
from lambdad.hostbudget import Budget, HostLimits, pids_budget
from lambdad.logs import LogStore, LogStream
from lambdad.metering import LINK_SLACK_MS, bounded_duration
from lambdad.outcomes import error_log_lines, init_error, init_exit_error, logged_by_runtime
from lambdad.placement import FunctionState, WarmPool
from lambdad.sandboxes import GenericPool, Sandbox, SandboxDied, State
from lambdad.templates import UNATTACHED_MAX, CopyRefused, Template, Templates, check_template
from lambdad.templates import Restored as _Restored
from sandbox import _libc, messages
from sandbox.cgroups import CgroupLimits
from sandbox.defaults import POOL_LIMITS

log = logging.getLogger("lambdad")

INIT_TIMEOUT_S: Final = 10.0  # Lambda's init phase limit
EXIT_INFO_WAIT_S: Final = 5.0  # how long to wait for the zygote's word on how a sandbox died


@dataclass(frozen=True)
class ColdStart:
    source: str  # "pool", "fork" or "template" (a copy of an initialized template)
    init_ms: float
    phases_us: dict[str, int]
    # The sandbox's log stream, held open until the caller's next await (see cold_start):
    # an invocation whose Init failed, or whose sandbox died right after it, still writes
    # its START, error line, END and REPORT there.
    stream: LogStream | None = None
    # A template's copy: SnapStart's Restore Duration (fork request to restored, the daemon's
    # clock) in place of Init Duration, which the report then leaves out.
    restore_ms: float | None = None


READY_COPIES: Final = 2  # copies each template keeps restored ahead of demand
REFILL_DELAY_S: Final = 0.02
TEMPLATE_PIDS_SLACK: Final = 2 * UNATTACHED_MAX  # intermediates, and their zombies till reaped


class InitFailed(Exception):
    """Init did not succeed; ``error`` is what the caller gets (Unhandled)."""

    def __init__(self, error: dict[str, Any], cold: ColdStart) -> None:
        super().__init__(error.get("errorMessage", ""))
        self.error = error
        self.cold = cold


class _RestoreFailed(Exception):
    def __init__(self, error: dict[str, Any], cold: ColdStart) -> None:
        super().__init__(error.get("errorMessage", ""))
        self.error = error
        self.cold = cold


class GenericLost(Exception):
    """A pooled sandbox was dead when its specialization began (not the function's fault)."""


class _EgressUnavailable(Exception):
    pass


class EgressHost(Protocol):
    """The host half of ``network = "egress"`` (:class:`sandbox.egress.Egress`)."""

    def attach(self, sandbox_id: str, pid: int) -> dict[str, str]: ...
    def detach(self, sandbox_id: str) -> None: ...


class Pools(Protocol):
    def pool(self, runtime: str) -> GenericPool: ...


class CodePaths(Protocol):
    def code_path(self, version: Version) -> str: ...


async def exit_description(sandbox: Sandbox) -> tuple[str, int, int]:
    """(description, memory peak bytes, oom kills) of a sandbox that died: the zygote's word,
    or "signal: killed" if it does not come in time."""
    sandbox.kill()
    try:
        info = await asyncio.wait_for(asyncio.shield(sandbox.exit_info), EXIT_INFO_WAIT_S)
    except TimeoutError:
        return "signal: killed", 0, 0
    return info.describe(), info.memory_peak, info.oom_kills


class Specializer:
    def __init__(
        self,
        warm: WarmPool[Sandbox],
        pools: Pools,
        code: CodePaths,
        logs: LogStore,
        memory_budget_mb: int,
        region: str = "us-east-1",
    ) -> None:
        self.region = region  # AWS_REGION of every function, and the region of its ARN
        self.warm = warm
        self.pools = pools
        self.code = code
        self.logs = logs
        self.budget = Budget(memory_budget_mb, _host_pids_budget())
        self.egress: EgressHost | None = None  # set once the host half is up
        # The layer directories of a version, in order (later wins), mounted at /opt. The
        # layer store plugs in here; without one, functions have no layers.
        self.layer_dirs: Callable[[Version], Sequence[str]] = lambda version: ()
        self.egress_unavailable = "not set up yet"  # why egress is None
        self.templates = Templates()  # template = true functions' templates, by version
        self._tasks: set[asyncio.Task[None]] = set()  # templates' refills

    def make_room(self, memory_mb: int, pids: int) -> None:
        """Keep specialized sandboxes within the memory and host-task budgets: reap least
        recently used idle ones first; throttle only if that cannot make room."""
        self.warm.evict_lru(memory_mb, pids, self.budget)

    async def cold_start(
        self, state: FunctionState[Sandbox], version: Version, provisioned: bool = False
    ) -> tuple[Sandbox, ColdStart]:
        """A sandbox of ``version``, initialized (SPECIALIZING; the caller moves it on).
        ``provisioned``: for ``min_warm`` (its ``AWS_LAMBDA_INITIALIZATION_TYPE`` says so).

        Every way out but success releases the sandbox it took: it is killed and no longer
        counted against the budgets (issue 12 point 11: what the sandbox sends during Init
        is hostile input, and a path that forgot it kept it charged forever).

        Raises:
            InitFailed: Init failed; the sandbox is gone.
            GenericLost: the pooled sandbox was already dead; try again.
            TooManyRequests: the memory budget is full of busy sandboxes.
        """
        taken: list[Sandbox] = []
        try:
            if version.config.template:
                return await self._from_template(state, version, taken)
            return await self._cold_start(state, version, taken, provisioned)
        except BaseException:
            for sandbox in taken:
                self.warm.discard(state, sandbox)
                if sandbox.alive:
                    sandbox.kill()
            raise

    async def _cold_start(
        self,
        state: FunctionState[Sandbox],
        version: Version,
        taken: list[Sandbox],
        provisioned: bool,
        template: bool = False,
    ) -> tuple[Sandbox, ColdStart]:
        cfg = version.config
        self.make_room(cfg.memory_mb, cfg.pids_max)
        t_acquire = time.monotonic_ns()
        sandbox, source = await self.pools.pool(cfg.runtime).acquire()
        taken.append(sandbox)
        sandbox.move(State.SPECIALIZING)
        sandbox.function, sandbox.version, sandbox.memory_mb, sandbox.pids_max = (
            cfg.name,
            version.key,
            cfg.memory_mb,
            cfg.pids_max,
        )
        self.warm.add(state, sandbox)
        stream = sandbox.log_stream = self.logs.open_stream(
            cfg.name, str(version.number), sandbox.id
        )
        # Held until the caller (an invocation) has run up to its next await, whatever
        # happens here: it writes its records on a failed Init, or takes its own hold.
        stream.hold()
        try:
            return await self._specialize(
                state, version, sandbox, source, t_acquire, stream, provisioned, template
            )
        finally:
            asyncio.get_running_loop().call_soon(stream.release)

    async def _specialize(
        self,
        state: FunctionState[Sandbox],
        version: Version,
        sandbox: Sandbox,
        source: str,
        t_acquire: int,
        stream: LogStream,
        provisioned: bool,
        template: bool = False,
    ) -> tuple[Sandbox, ColdStart]:
        cfg = version.config
        t0 = time.monotonic_ns()
        tree_fd = -1
        layer_fds: list[int] = []
        try:
            # A template's copies are forked in its cgroup and moved out at once: room for
            # the ones in between (lambdad/templates.py, UNATTACHED_MAX).
            pids = cfg.pids_max + (TEMPLATE_PIDS_SLACK if template else 0)
            limits = CgroupLimits(memory_mb=cfg.memory_mb, pids_max=pids)
            if sandbox.cgroup is not None and limits != POOL_LIMITS:
                sandbox.cgroup.set_limits(limits)
                sandbox.cpu_lowered = False
            elif sandbox.cpu_lowered:
                sandbox.raise_cpu_weight(limits)  # a refill's: from the lowest weight
            set_limits_us = (time.monotonic_ns() - t0) // 1000
            code_path = self.code.code_path(version)
            stream.platform(
                f"INIT_START Runtime: {cfg.runtime} Sandbox: {sandbox.id} Source: {source}"
            )
            egress = None
            if cfg.network == "egress":
                if self.egress is None:
                    raise _EgressUnavailable(
                        f"network = 'egress' is unavailable on this host: {self.egress_unavailable}"
                    )
                egress = await asyncio.to_thread(self.egress.attach, sandbox.id, sandbox.pid)
                egress_off = self.egress.detach
                # detach() never blocks (the veth is deleted by egress's own thread).
                sandbox.on_close = lambda: egress_off(sandbox.id)
            fds = []
            layers: tuple[str, ...] = ()
            if os.geteuid() == 0 or sandbox.zygote.missing == []:
                try:
                    tree_fd = _libc.open_tree_clone(code_path)
                    fds.append(tree_fd)
                except OSError:
                    pass
                # A layer that cannot be mounted fails the cold start (OSError, below): a
                # function never runs without the /opt it was deployed with.
                layers = tuple(self.layer_dirs(version))
                for layer in layers:
                    layer_fds.append(_libc.open_tree_clone(layer))
                # File-system mounts (/mnt): the host directory itself, not its submounts.
                for mount in cfg.mounts:
                    layer_fds.append(_libc.open_tree_clone(mount["source"], recursive=False))
                fds.extend(layer_fds)
            init = messages.Init(
                function={**cfg.to_dict(), "version": str(version.number or "$LATEST")},
                code_path=code_path,
                log_stream=stream.name,
                pids_max=cfg.pids_max,
                egress=egress,
                region=self.region,
                initialization_type="snap-start"
                if template
                else "provisioned-concurrency"
                if provisioned
                else "on-demand",
                layers=layers,
                template=template,
            )
            try:
                sandbox.send_init(init, fds)
            except SandboxDied:
                # A pooled sandbox that died before it was given anything (its EOF not yet
                # seen): no code of the function ran. Not the function's failure: try another.
                self.warm.discard(state, sandbox)
                sandbox.kill()
                raise GenericLost(sandbox.id) from None
            if tree_fd >= 0:
                os.close(tree_fd)
                tree_fd = -1
            for fd in layer_fds:
                os.close(fd)
            layer_fds.clear()
            t_sent = time.monotonic_ns()
            reply = await sandbox.receive_any(timeout=INIT_TIMEOUT_S)
            if not isinstance(reply, messages.InitDone | messages.InitError):
                raise messages.MessageError(f"{type(reply).__name__} in answer to init")
        except (
            SandboxDied,
            TimeoutError,
            OSError,
            _EgressUnavailable,
            messages.MessageError,
        ) as exc:
            self.warm.discard(state, sandbox)
            if isinstance(exc, _EgressUnavailable):
                sandbox.kill()
                description = str(exc)
            elif isinstance(exc, SandboxDied):
                description = (await exit_description(sandbox))[0]
            elif isinstance(exc, TimeoutError):
                sandbox.kill()
                description = f"init did not finish within {INIT_TIMEOUT_S:.0f} s"
            elif isinstance(exc, messages.MessageError):
                sandbox.violation(f"malformed answer to init ({exc})")
                description = f"the runtime sent a malformed answer to init ({exc})"
            else:
                sandbox.kill()
                description = f"sandbox set-up failed: {exc}"
            init_ms = (time.monotonic_ns() - t0) / 1e6
            error = init_exit_error(description)
            stream.platform(_init_report(init_ms, error))
            raise InitFailed(
                error, ColdStart(source, init_ms, dict(sandbox.generic_phases), stream)
            ) from None
        finally:
            if tree_fd >= 0:
                os.close(tree_fd)
            for fd in layer_fds:
                os.close(fd)
        sandbox.drain_log()
        # The daemon's side of the cold start, so that nothing has to be guessed: waiting for
        # a pooled (or forked) sandbox, preparing the init message, and the init round trip
        # (the sandbox's own phases below are inside it).
        phases = {
            **sandbox.generic_phases,
            "pool_wait": (t0 - t_acquire) // 1000,
            "set_limits": set_limits_us,
            "daemon_prepare": (t_sent - t0) // 1000,
            "init_roundtrip": (time.monotonic_ns() - t_sent) // 1000,
        }
        # The sandbox's phases inside the round trip, never in place of the daemon's own.
        phases.update({k: v for k, v in reply.phases.items() if k not in phases})
        # Init Duration is billed like Duration: the sandbox's claim, bounded by the round trip
        # (user code runs during Init and shares the process that measures it).
        init_ms = bounded_duration(
            reply.init_us / 1000, (sandbox.received_ns - t_sent) / 1e6, LINK_SLACK_MS
        )
        init_ms += set_limits_us / 1000
        cold = ColdStart(source, init_ms, phases, stream)
        if isinstance(reply, messages.InitError):
            self.warm.discard(state, sandbox)
            sandbox.kill()
            error = init_error(reply.error)
            if not logged_by_runtime(error):
                stream.write_lines(error_log_lines(error))
            stream.platform(_init_report(init_ms, error))
            raise InitFailed(error, cold)
        return sandbox, cold


    # -- function templates ----------------------------------------------------------------

    async def _from_template(
        self, state: FunctionState[Sandbox], version: Version, taken: list[Sandbox]
    ) -> tuple[Sandbox, ColdStart]:
        """A copy of the version's template (made now, with this invocation waiting, if
        there is none: its Init is the one a caller sees fail): a ready one, restored ahead
        of demand, or one restored now."""
        cfg = version.config
        t_acquire = time.monotonic_ns()
        template, _ = await self.templates.get_or_make(
            version.key, lambda: self._make_template(state, version)
        )
        self.make_room(cfg.memory_mb, cfg.pids_max)
        t0 = time.monotonic_ns()
        restored = None
        while template.ready:
            candidate = template.ready.popleft()
            if candidate.sandbox.alive:
                restored = candidate
                break
            candidate.sandbox.kill()
        source_ready = restored is not None
        if restored is None:
            try:
                restored = await self._restore(template, version, taken)
            except SandboxDied:
                raise GenericLost(template.sandbox.id) from None  # the template died: anew
            except _RestoreFailed as exc:
                raise InitFailed(exc.error, exc.cold) from None
        else:
            taken.append(restored.sandbox)
        self._refill(template, version)
        copy, stream = restored.sandbox, restored.stream
        stream.hold()  # like any cold start's, until the caller's next await
        asyncio.get_running_loop().call_soon(stream.release)
        copy.move(State.SPECIALIZING)
        self.warm.add(state, copy)
        copy.drain_log()
        phases = {
            "template_wait": (t0 - t_acquire) // 1000,
            "restore_ready": 1 if source_ready else 0,  # restored ahead of demand
            **restored.phases,
        }
        return copy, ColdStart("template", 0.0, phases, stream, restored.restore_ms)

    async def _restore(
        self, template: Template, version: Version, taken: list[Sandbox] | None = None
    ) -> _Restored:
        """Fork and restore one copy (its log stream opened before it runs any code).

        Raises:
            SandboxDied: the template is gone. _RestoreFailed: the copy did not come up.
        """
        cfg = version.config
        t0 = time.monotonic_ns()
        streams: list[LogStream] = []

        def adopt(copy: Sandbox) -> None:  # before its after-restore hooks print anything
            if taken is not None:
                taken.append(copy)
            copy.function, copy.version, copy.memory_mb, copy.pids_max = (
                cfg.name, version.key, cfg.memory_mb, cfg.pids_max,
            )  # fmt: skip
            stream = copy.log_stream = self.logs.open_stream(
                cfg.name, str(version.number), copy.id
            )
            stream.hold()
            streams.append(stream)
            stream.platform(
                f"RESTORE_START Runtime: {cfg.runtime} Sandbox: {copy.id} Source: template"
            )

        limits = CgroupLimits(memory_mb=cfg.memory_mb, pids_max=cfg.pids_max)
        try:
            try:
                copy, restored = await template.fork(limits, cfg.tmp_mb, adopt)
            except CopyRefused as exc:
                stream = streams[0] if streams else None
                restore_ms = (time.monotonic_ns() - t0) / 1e6
                if stream is not None:
                    stream.platform(f"RESTORE_REPORT Restore Duration: {restore_ms:.2f} ms")
                raise _RestoreFailed(
                    init_exit_error(f"restore failed: {exc}"),
                    ColdStart("template", 0.0, {}, stream, restore_ms),
                ) from None
            copy.drain_log()
            restore_ms = (copy.received_ns - t0) / 1e6
            stream = streams[0]
            stream.platform(f"RESTORE_REPORT Restore Duration: {restore_ms:.2f} ms")
            phases = {"restore_roundtrip": (copy.received_ns - t0) // 1000}
            phases.update({k: v for k, v in restored.phases.items() if k not in phases})
            return _Restored(copy, stream, restore_ms, phases)
        finally:
            for stream in streams:
                asyncio.get_running_loop().call_soon(stream.release)

    def _refill(self, template: Template, version: Version) -> None:
        """Restore copies ahead of demand, up to :data:`READY_COPIES` (one at a time, in the
        background): the next new sandbox of the version is then one message away."""
        if template.refilling or len(template.ready) >= READY_COPIES or not template.alive:
            return
        template.refilling = True

        async def refill() -> None:
            try:
                while len(template.ready) < READY_COPIES and template.alive:
                    template.ready.append(await self._restore(template, version))
            except (SandboxDied, _RestoreFailed, OSError) as exc:
                log.info("template %s: refill stopped: %s", template.sandbox.id, exc)
            finally:
                template.refilling = False

        def start() -> None:
            task = asyncio.ensure_future(refill())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        # A little later, like the generic pool's refill: not on the cores the invocation
        # that just took a copy is using (measured: +2-4 ms on its latency otherwise).
        asyncio.get_running_loop().call_later(REFILL_DELAY_S, start)

    async def _make_template(self, state: FunctionState[Sandbox], version: Version) -> Template:
        """Specialize a pooled sandbox as the version's template (Init runs there, its log
        lines in that sandbox's stream). Raises InitFailed like a cold start."""
        taken: list[Sandbox] = []
        try:
            sandbox, cold = await self._cold_start(state, version, taken, False, template=True)
            try:
                status = check_template(sandbox.pid, sandbox.cgroup)
            except (CopyRefused, OSError) as exc:
                error = {
                    "errorType": "Sandbox.TemplateError",
                    "errorMessage": f"template = true: {exc}",
                }
                if cold.stream is not None:
                    cold.stream.platform(_init_report(cold.init_ms, error))
                raise InitFailed(error, cold) from None
        except BaseException:
            for sandbox in taken:
                self.warm.discard(state, sandbox)
                if sandbox.alive:
                    sandbox.kill()
            raise
        cfg = version.config
        limits = CgroupLimits(cfg.memory_mb, cfg.pids_max + TEMPLATE_PIDS_SLACK)
        return Template(sandbox, status, sandbox.zygote.cgroups, limits)


def _init_report(init_ms: float, error: dict[str, Any]) -> str:
    """Lambda's INIT_REPORT line for an Init that failed."""
    return (
        f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: error\t"
        f"Error Type: {error.get('errorType')}"
    )


class HostEgress(Component):
    """The host half of ``network = "egress"`` (NAT, filters), set up in a worker thread:
    pyroute2 must not run inside the event loop. What is unavailable goes to ``missing``."""

    name = "egress"

    def __init__(self, specializer: Specializer, disable: tuple[str, ...]) -> None:
        self.specializer = specializer
        self.disable = disable
        self.missing: list[str] = []
        self.unavailable: str | None = None  # why egress cannot be set up here (None: it can)
        self._egress: Any = None  # sandbox.egress.Egress once set up

    async def start(self) -> None:
        from sandbox.egress import Egress, find_nft

        reasons = []
        if os.geteuid() != 0 or "namespaces" in self.disable:
            try:
                find_nft()
            except OSError as exc:
                reasons.append(exc.strerror or str(exc))
            reasons.append("needs root and network namespaces")
        else:
            try:
                egress = Egress()
                await asyncio.to_thread(egress.setup_host)
            except Exception as exc:
                reasons.append(getattr(exc, "strerror", None) or str(exc))
            else:
                self._egress = egress
                self.specializer.egress = egress
        if reasons:
            self.unavailable = "; ".join(reasons)
            self.specializer.egress_unavailable = self.unavailable
            self.missing.append(f"egress unavailable: {self.unavailable}")

    async def stop(self) -> None:
        if self._egress is not None:
            await asyncio.to_thread(self._egress.teardown_host)


def _host_pids_budget() -> int:
    """The share of the host's tasks that specialized sandboxes may book together."""
    try:
        return pids_budget(HostLimits.read())
    except (OSError, ValueError, IndexError):
        return pids_budget(HostLimits(pid_max=32_768, threads_max=32_768))  # the kernel default
