"""The daemon: registry, pools, scheduling, invocations, metering and logs.

One asyncio loop (uvloop where installed) owns all state; nothing here blocks it for long (disk
work of deploys and async events runs in worker threads) and nothing forks once it runs (the
zygotes are started with fork+exec). See docs/architecture.md for the life of an invocation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import gc
import grp
import hashlib
import os
import signal
import socket
import struct
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from lambdad import __version__
from lambdad import config as config_mod
from lambdad.config import DaemonConfig
from lambdad.errors import (
    AccessDenied,
    InvalidParameterValue,
    InvalidRequest,
    LambdadError,
    ProtocolError,
    RequestTooLarge,
    ServiceError,
    ShuttingDown,
    TooManyRequests,
)
from lambdad.events import EventStore
from lambdad.functions import Version, validate
from lambdad.logs import LogStore, wire_cursor
from lambdad.metering import FunctionStats, Report, billed, merge
from lambdad.registry import Registry
from lambdad.sandboxes import (
    GenericPool,
    Sandbox,
    SandboxDied,
    State,
    Zygote,
)
from lambdad.scheduler import ACCOUNT_EXCEEDED, Scheduler, Ticket, TicketState
from sandbox import _libc, cgroups, wire
from sandbox.cgroups import CgroupBackend, CgroupLimits
from sandbox.zygote import POOL_LIMITS

RUNTIMES: Final = ("python3",)
INIT_TIMEOUT_S: Final = 10.0  # Lambda's init phase limit
EXIT_INFO_WAIT_S: Final = 5.0  # how long to wait for the zygote's word on how a sandbox died
SWEEP_INTERVAL_S: Final = 0.25
LOG_TAIL_BYTES: Final = 4096
GC_THRESHOLD_0: Final = 20_000  # allocations between young-generation collections (700)
GENERIC_RETRIES: Final = 3  # pooled sandboxes found dead before one is taken for good


@dataclass
class FunctionState:
    """Run-time state of one function (the registry holds its configuration)."""

    name: str
    idle: list[Sandbox] = field(default_factory=list)  # warm and waiting, most recent last
    sandboxes: set[Sandbox] = field(default_factory=set)  # every specialized, live sandbox
    provisioning: int = 0  # min_warm specializations in flight
    provision_failures: int = 0  # consecutive min_warm Init failures (for the backoff)
    provision_after: float = 0.0  # monotonic time before which min_warm is not retried
    stats: FunctionStats = field(default_factory=FunctionStats)


@dataclass(frozen=True)
class ColdStart:
    source: str  # "pool" or "fork"
    init_ms: float
    phases_us: dict[str, int]


@dataclass
class Peer:
    pid: int
    uid: int
    gid: int


class _EgressUnavailable(Exception):
    pass


class _GenericLost(Exception):
    """A pooled sandbox was dead when its specialization began."""


@dataclass(frozen=True)
class _Call:
    """One admitted invocation, as it travels down to a sandbox."""

    version: Version
    payload: bytes  # the event, JSON text, never parsed by the daemon
    log_tail: bool  # collect this invocation's last 4 KB of log
    request_id: str
    force_cold: bool  # use a fresh sandbox and retire it afterwards
    queue_us: int  # time spent waiting for concurrency


class InitFailed(Exception):
    def __init__(self, error: dict[str, Any], cold: ColdStart) -> None:
        super().__init__(error.get("errorMessage", ""))
        self.error = error
        self.cold = cold


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        os.makedirs(config.state_dir, mode=0o755, exist_ok=True)
        os.chmod(config.state_dir, 0o755)
        self.registry = Registry(config.state_dir)
        self.logs = LogStore(
            os.path.join(config.state_dir, "logs"), config.log_max_bytes, config.log_keep
        )
        self.events = EventStore(os.path.join(config.state_dir, "events.sqlite3"))
        self.cgroups: CgroupBackend | None = None
        self.cgroup_parent = _cgroup_parent(config)
        if os.geteuid() == 0:
            try:
                self.cgroups = cgroups.detect(self.cgroup_parent)
            except OSError as exc:
                print(f"lambdad: cgroups unusable: {exc}", file=sys.stderr)
        budget = config.memory_budget_mb or _host_memory_mb() * 3
        self.memory_budget_mb = budget
        limit = config.global_concurrency or max(1, budget // 128)
        self.scheduler = Scheduler(limit, config.queue_max)
        self.functions: dict[str, FunctionState] = {}
        self.zygotes: dict[str, Zygote] = {}
        self.pools: dict[str, GenericPool] = {}
        self.missing: list[str] = []
        self.draining = False
        self.server: asyncio.AbstractServer | None = None
        self.stopped = asyncio.Event()
        self._waiting: dict[Ticket, asyncio.Future[None]] = {}
        self._registry_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._admin_gid = _group_id(config.admin_group)
        self._restart_delay: dict[str, float] = {}
        self.egress: Any = None  # sandbox.egress.Egress once set up
        self.metrics: Any = None  # lambdad.metrics.MetricsServer when metrics_address is set
        for fn in self.registry:
            self._function_state(fn.name)
            self.scheduler.set_reserved(fn.name, fn.latest.config.concurrency)

    # -- start and stop --------------------------------------------------------------------

    async def start(self) -> None:
        for line in self.registry.load_errors:
            print(f"lambdad: skipped a damaged function record: {line}", file=sys.stderr)
        if self.cgroups is not None:
            self.cgroups.cleanup()
        rootfs = os.path.join(self.config.state_dir, "rootfs")
        os.makedirs(rootfs, exist_ok=True)
        for runtime in RUNTIMES:
            zygote = Zygote(
                self.loop,
                runtime,
                rootfs,
                None if "cgroups" in self.config.disable_isolation else self.cgroups,
                self.cgroup_parent,
                self.config.disable_isolation,
                self._on_sandbox,
                self._on_zygote_down,
            )
            await zygote.start()
            self.zygotes[runtime] = zygote
            self.pools[runtime] = GenericPool(zygote, self.config.pool_size, self.config.pool_max)
            self.missing = sorted(set(self.missing) | set(zygote.missing))
        for line in self.missing:
            print(f"lambdad: WARNING: {line}", file=sys.stderr)
        if self.missing and self.config.strict:
            await self._stop_zygotes()
            raise ServiceError(
                "--strict: refusing to start without every protection: " + "; ".join(self.missing)
            )
        await self._setup_egress()
        if self.config.metrics_address:
            from lambdad.metrics import MetricsServer

            self.metrics = MetricsServer(self)
            await self.metrics.start(self.config.metrics_address)
        self.server = await self._listen()
        for pool in self.pools.values():
            pool.replenish()
        await self.events.open(self.loop)
        self._spawn_task(self._sweeper())
        self._spawn_task(self._async_worker())
        print(
            f"lambdad {__version__} serving on {self.config.socket_path} "
            f"(state {self.config.state_dir}, {len(self.registry.functions)} functions, "
            f"cgroup v{self.cgroups.version if self.cgroups else '-'})",
            file=sys.stderr,
            flush=True,
        )

    async def _setup_egress(self) -> None:
        """Host half of ``network = "egress"`` (NAT, filters), in a worker thread: pyroute2
        must not run inside the event loop."""
        if os.geteuid() != 0 or "namespaces" in self.config.disable_isolation:
            self.missing.append("egress: needs root: network = 'egress' functions cannot run")
            return
        try:
            from sandbox.egress import Egress

            egress = Egress()
            await asyncio.to_thread(egress.setup_host)
        except Exception as exc:
            self.missing.append(f"egress unavailable ({exc}): network = 'egress' cannot run")
            return
        self.egress = egress

    async def _listen(self) -> asyncio.AbstractServer:
        from lambdad.server import ClientProtocol

        path = self.config.socket_path
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale, from a daemon that died
            else:
                raise ServiceError(f"another lambdad is already serving on {path}")
            finally:
                probe.close()
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            server = await self.loop.create_unix_server(
                lambda: ClientProtocol(self), path=path, backlog=4096
            )
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        group = _group_id("lambdad")
        if group is not None and os.geteuid() == 0:
            os.chown(path, 0, group)
        return server

    def request_stop(self) -> None:
        if not self.draining:
            self.draining = True
            self._spawn_task(self.stop())

    async def stop(self) -> None:
        """Stop accepting, let in-flight invocations finish within the grace period, stop
        sandboxes and zygotes, remove the socket."""
        self.draining = True
        if self.server is not None:
            self.server.close()
        if self.metrics is not None:
            self.metrics.close()
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while self._busy_count() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()
        await self._stop_zygotes()
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.remove)
        if self.egress is not None:
            await asyncio.to_thread(self.egress.teardown_host)
        self.logs.flush_all()
        await self.events.close()
        try:
            os.unlink(self.config.socket_path)
        except FileNotFoundError:
            pass
        self.stopped.set()

    async def _stop_zygotes(self) -> None:
        for zygote in self.zygotes.values():
            zygote.close_link()  # in the loop's thread: it touches transports and readers
            await asyncio.to_thread(zygote.reap)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration file; settings that need a restart are kept."""
        path = os.environ.get("LAMBDAD_CONFIG_FILE")
        try:
            new = config_mod.load(
                path,
                socket_path=self.config.socket_path,
                state_dir=self.config.state_dir,
                strict=self.config.strict,
            )
        except Exception as exc:
            print(f"lambdad: SIGHUP: configuration not reloaded: {exc}", file=sys.stderr)
            return
        self.config = new
        for pool in self.pools.values():
            pool.base, pool.ceiling = new.pool_size, new.pool_max
        if new.global_concurrency:
            self._wake(self.scheduler.set_global_limit(new.global_concurrency))
        print("lambdad: configuration reloaded", file=sys.stderr, flush=True)

    def _spawn_task(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- zygote and sandbox events ------------------------------------------------------

    def _on_sandbox(self, sandbox: Sandbox, source: str) -> None:
        self._spawn_task(self._bring_up(sandbox))

    async def _bring_up(self, sandbox: Sandbox) -> None:
        pool = self.pools[sandbox.zygote.runtime]
        try:
            if not sandbox.alive:  # its zygote went down before we got to it
                raise SandboxDied(f"{sandbox.id}: gone before it was ready")
            await sandbox.attach()
            msg = await sandbox.receive(timeout=30.0)
            if msg.get("t") != wire.READY:
                raise SandboxDied(f"{sandbox.id}: unexpected {msg.get('t')!r} before ready")
            sandbox.generic_phases = {k: int(v) for k, v in dict(msg.get("phases", {})).items()}
            if not sandbox.alive:
                raise SandboxDied(f"{sandbox.id}: died while starting")
            sandbox.move(State.GENERIC)
        except (SandboxDied, TimeoutError, OSError, ValueError, TypeError) as exc:
            print(f"lambdad: sandbox {sandbox.id} failed to start: {exc}", file=sys.stderr)
            sandbox.kill()
            pool.failed()
            return
        pool.offer(sandbox)

    def _on_zygote_down(self, zygote: Zygote) -> None:
        pool = self.pools.get(zygote.runtime)
        if pool is not None:
            pool.reset()
        if self.draining:
            return
        self._spawn_task(self._restart_zygote(zygote))

    async def _restart_zygote(self, zygote: Zygote) -> None:
        for _ in range(100):  # reap the old process without blocking the loop
            status = zygote.exit_status()
            if status is not None:
                break
            await asyncio.sleep(0.01)
        else:
            status = None
        if status == 3:  # ZYGOTE_BOOT_ERROR: it would fail again; do not spin
            print(f"lambdad: zygote {zygote.runtime} cannot start; not restarting", file=sys.stderr)
            self.pools[zygote.runtime].fail_waiters(ServiceError("the runtime's zygote is down"))
            return
        delay = self._restart_delay.get(zygote.runtime, 0.0)
        self._restart_delay[zygote.runtime] = min(5.0, delay * 2 or 0.1)
        print(
            f"lambdad: zygote {zygote.runtime} exited (status {status}); restarting",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.sleep(delay)
        try:
            await zygote.start()
        except LambdadError as exc:
            print(f"lambdad: {exc}", file=sys.stderr)
            self._on_zygote_down(zygote)
            return
        self._restart_delay[zygote.runtime] = 0.0
        self.pools[zygote.runtime].replenish()

    # -- requests ------------------------------------------------------------------------

    async def dispatch(self, op: str, args: dict[str, Any], peer: Peer | None) -> dict[str, Any]:
        handler = self._ops.get(op)
        if handler is None:
            raise ProtocolError(f"unknown op {op!r}", ops=sorted(self._ops))
        if op in ("deploy", "delete", "redrive") and not self._is_admin(peer):
            raise AccessDenied(
                f"{op} needs root or membership of group {self.config.admin_group!r}"
            )
        return await handler(self, args)

    def _is_admin(self, peer: Peer | None) -> bool:
        if peer is None:
            return True
        if peer.uid in (0, os.geteuid()):
            return True
        if self._admin_gid is None:
            return False
        if peer.gid == self._admin_gid:
            return True
        try:
            return _user_name(peer.uid) in grp.getgrgid(self._admin_gid).gr_mem
        except KeyError:
            return False

    async def op_hello(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"version": 1, "server": f"lambdad {__version__}", "missing": self.missing}

    async def op_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def op_deploy(self, args: dict[str, Any]) -> dict[str, Any]:
        fn_config = validate(args)
        code = args.get("code")
        if not isinstance(code, bytes) or not code:
            raise InvalidParameterValue("code must be the bytes of a zip file", field="code")
        async with self._registry_lock:
            code_sha = await asyncio.to_thread(self.registry.store_code, code)
            version, created = await asyncio.to_thread(
                self.registry.add_version, fn_config, code_sha
            )
        state = self._function_state(fn_config.name)
        self._wake(self.scheduler.set_reserved(fn_config.name, fn_config.concurrency))
        if created:
            # Warm sandboxes of older versions drain: idle ones retire now, busy ones on release.
            for sandbox in [s for s in state.idle if s.version != version.number]:
                state.idle.remove(sandbox)
                state.sandboxes.discard(sandbox)
                sandbox.retire()
        return {"function": self._describe(fn_config.name), "created": created}

    async def op_get(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"function": self._describe(_name(args))}

    async def op_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"functions": [self._describe(fn.name) for fn in self.registry]}

    async def op_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        async with self._registry_lock:
            self.registry.get(name)
            state = self.functions.pop(name, None)
            if state is not None:
                for sandbox in list(state.sandboxes):
                    if sandbox.state is State.BUSY:
                        continue  # it retires when its invocation ends (state is gone)
                    sandbox.retire()
            self._wake(self.scheduler.set_reserved(name, None))
            await asyncio.to_thread(self.registry.delete, name)
            self.logs.delete_function(name)
        return {"deleted": name}

    async def op_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        sandboxes = {
            "generic": sum(len(p.ready) for p in self.pools.values()),
            "warm": sum(len(s.sandboxes) for s in self.functions.values()),
        }
        if name is not None:
            self.registry.get(_name(args))
            state = self._function_state(str(name))
            body = state.stats.to_wire()
            body["sandboxes"] = {
                "warm": sum(1 for s in state.sandboxes if s.state in _INITIALIZED),
                "initializing": sum(1 for s in state.sandboxes if s.state is State.SPECIALIZING),
                "idle": len(state.idle),
                "frozen": sum(1 for s in state.idle if s.state is State.FROZEN),
            }
            return {"name": name, "stats": body}
        body = merge([s.stats for s in self.functions.values()])
        body["sandboxes"] = sandboxes
        body["global_concurrency_limit"] = self.scheduler.global_limit
        body["memory_budget_mb"] = self.memory_budget_mb
        body["async"] = await self.events.counts()
        body["missing"] = self.missing
        body["metrics_address"] = self.metrics.address if self.metrics is not None else None
        return {"stats": body}

    async def op_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        self.registry.get(name)
        try:
            cursor = wire_cursor(args.get("cursor"))
        except (TypeError, ValueError) as exc:
            raise InvalidParameterValue(f"cursor: {exc}", field="cursor") from exc
        data, new_cursor = await asyncio.to_thread(self.logs.read, name, cursor)
        return {"data": data, "cursor": new_cursor}

    async def op_invoke(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        kind = args.get("type", "sync")
        if kind not in ("sync", "async", "dryrun"):
            raise InvalidParameterValue(
                f"type must be sync, async or dryrun, got {kind!r}", field="type"
            )
        payload = args.get("payload", b"")
        if isinstance(payload, str):
            payload = payload.encode()
        if not isinstance(payload, bytes):
            raise InvalidParameterValue("payload must be JSON text (bin or str)", field="payload")
        qualifier = args.get("qualifier")
        if qualifier is not None and not isinstance(qualifier, str):
            raise InvalidParameterValue("qualifier must be a string", field="qualifier")
        limit = self.config.async_payload_max if kind == "async" else self.config.sync_payload_max
        if len(payload) > limit:
            raise RequestTooLarge(
                f"payload of {len(payload)} bytes is over the {kind} limit of {limit} bytes",
                limit=limit,
            )
        version = self.registry.get(name).version(qualifier)
        if self.draining:
            raise ShuttingDown("lambdad is shutting down")
        if kind == "dryrun":
            return {"status": 204, "version": str(version.number)}
        if kind == "async":
            event_id = await self.events.put(name, qualifier, payload)
            self._spawn_task(self._async_kick())
            return {"status": 202, "event_id": event_id}
        return await self.run(
            version,
            payload,
            log_tail=bool(args.get("log_tail")),
            force_cold=bool(args.get("force_cold")),
        )

    async def op_dead_letters(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if name is not None:
            self.registry.get(_name(args))
        return {"events": await self.events.dead_letters(name)}

    async def op_redrive(self, args: dict[str, Any]) -> dict[str, Any]:
        event_id = args.get("event_id")
        if event_id is not None and not isinstance(event_id, str):
            raise InvalidParameterValue("event_id must be a string", field="event_id")
        name = None if event_id is not None else _name(args)
        return {"redriven": await self.events.redrive(name, event_id)}

    _ops: Final[dict[str, Callable[[Daemon, dict[str, Any]], Awaitable[dict[str, Any]]]]] = {
        "hello": op_hello,
        "ping": op_ping,
        "deploy": op_deploy,
        "get": op_get,
        "list": op_list,
        "delete": op_delete,
        "invoke": op_invoke,
        "stats": op_stats,
        "logs": op_logs,
        "dead_letters": op_dead_letters,
        "redrive": op_redrive,
    }

    def _describe(self, name: str) -> dict[str, Any]:
        fn = self.registry.get(name)
        latest = fn.latest
        return {
            **latest.config.to_dict(),
            "version": str(latest.number),
            "versions": [str(v.number) for v in fn.versions],
            "code_sha256": latest.code_sha256,
            "sha256": latest.sha256,
            "last_modified": latest.created,
        }

    def _function_state(self, name: str) -> FunctionState:
        state = self.functions.get(name)
        if state is None:
            state = self.functions[name] = FunctionState(name)
        return state

    # -- invocations -----------------------------------------------------------------------

    async def run(
        self,
        version: Version,
        payload: bytes,
        log_tail: bool = False,
        request_id: str = "",
        force_cold: bool = False,
    ) -> dict[str, Any]:
        """Run one invocation: admission, a sandbox, the call, the report.

        ``force_cold`` (for benchmarks and cold-start studies) ignores warm sandboxes and
        retires the one it used, so every such invocation pays a full cold start.
        """
        name = version.config.name
        state = self._function_state(name)
        queued_at = time.monotonic_ns()
        ticket = self.scheduler.request(name)
        if ticket.state is TicketState.WAITING:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._waiting[ticket] = waiter
            timer = self.loop.call_later(self.config.queue_timeout_s, _expire_ticket, waiter)
            try:
                await waiter
            except TimeoutError:
                self.scheduler.expire(ticket)
            finally:
                timer.cancel()
                self._waiting.pop(ticket, None)
        if ticket.state is TicketState.THROTTLED:
            state.stats.throttles += 1
            raise TooManyRequests(
                f"Rate Exceeded: {ticket.reason}", reason=ticket.reason, function=name
            )
        queue_us = (time.monotonic_ns() - queued_at) // 1000
        state.stats.concurrent += 1
        state.stats.max_concurrent = max(state.stats.max_concurrent, state.stats.concurrent)
        try:
            return await self._run_admitted(
                state,
                _Call(
                    version,
                    payload,
                    log_tail,
                    request_id or str(uuid.uuid4()),
                    force_cold,
                    queue_us,
                ),
            )
        finally:
            state.stats.concurrent -= 1
            self._wake(self.scheduler.release(ticket))

    def _wake(self, tickets: list[Ticket]) -> None:
        for ticket in tickets:
            waiter = self._waiting.get(ticket)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _run_admitted(self, state: FunctionState, call: _Call) -> dict[str, Any]:
        version, log_tail, queue_us, request_id = (
            call.version,
            call.log_tail,
            call.queue_us,
            call.request_id,
        )
        try:
            sandbox, cold = await self._sandbox_for(state, version, call.force_cold)
        except InitFailed as exc:
            report = self._report(request_id, exc.cold.init_ms, version, None, exc.cold, queue_us)
            state.stats.record(report, error=True)
            return {
                "request_id": request_id,
                "result": None,
                "error": exc.error,
                "function_error": "Unhandled",
                "report": report.to_wire(),
                **({"log_tail": ""} if log_tail else {}),
            }
        try:
            return await self._call_sandbox(state, sandbox, cold, call)
        except BaseException:
            # Whatever went wrong (a bug, a cancellation), a sandbox is never left BUSY and
            # counted against the budget: it is condemned and forgotten.
            if sandbox.state is State.BUSY:
                sandbox.kill()
            state.sandboxes.discard(sandbox)
            raise

    async def _call_sandbox(
        self, state: FunctionState, sandbox: Sandbox, cold: ColdStart | None, call: _Call
    ) -> dict[str, Any]:
        version, payload, request_id = call.version, call.payload, call.request_id
        cfg = version.config
        stream = sandbox.log_stream
        assert stream is not None
        stream.write(f"START RequestId: {request_id} Version: {version.number}\n".encode())
        if call.log_tail:
            sandbox.log_tail = bytearray(
                f"START RequestId: {request_id} Version: {version.number}\n".encode()
            )
        started = time.monotonic_ns()
        error: dict[str, Any] | None = None
        function_error: str | None = None
        result: bytes | None = None
        duration_ms: float
        maxrss_kb = 0
        try:
            sandbox.send(
                {
                    "t": wire.INVOKE,
                    "request_id": request_id,
                    "payload": payload,
                    "timeout_ms": int(cfg.timeout_s * 1000),
                }
            )
            msg = await sandbox.receive(timeout=cfg.timeout_s)
        except TimeoutError:
            # The loop's timer has millisecond granularity and may fire a hair early; a
            # timed-out invocation ran for (at least) its whole timeout, as Lambda reports.
            duration_ms = max((time.monotonic_ns() - started) / 1e6, cfg.timeout_s * 1000)
            peak = sandbox.memory_peak_mb()
            sandbox.kill()
            function_error = "Unhandled"
            error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {cfg.timeout_s:.2f} seconds",
            }
            stream.write(
                f"{_utc()} {request_id} Task timed out after {cfg.timeout_s:.2f} seconds\n".encode()
            )
            msg = {}
            maxrss_kb = peak * 1024
        except SandboxDied:
            duration_ms = (time.monotonic_ns() - started) / 1e6
            info = await self._exit_info(sandbox)
            function_error = "Unhandled"
            error = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: "
                f"{info[0]}",
            }
            if info[2]:
                error["oom"] = True
            stream.write(f"{_utc()} {error['errorMessage']}\n".encode())
            msg = {}
            maxrss_kb = info[1] // 1024
        else:
            sandbox.drain_log()
            if "bad_payload" in msg:
                sandbox.log_tail = None
                self._release(state, sandbox, version)
                raise InvalidRequest(str(msg.get("bad_payload"))[:1000])
            try:
                result, error, duration_ms, maxrss_kb = _parse_result(
                    msg, self.config.sync_payload_max
                )
            except ValueError as exc:
                # The sandbox runs untrusted code: a malformed answer condemns it.
                sandbox.violation(f"malformed result ({exc})")
                duration_ms = (time.monotonic_ns() - started) / 1e6
                error = {
                    "errorType": "Runtime.InvalidResponse",
                    "errorMessage": f"RequestId: {request_id} Error: the runtime sent a "
                    f"malformed result ({exc})",
                }
                result, maxrss_kb = None, 0
                stream.write(f"{_utc()} {error['errorMessage']}\n".encode())
                function_error = "Unhandled"
            else:
                if error is not None:
                    # Lambda answers Unhandled for a raised exception too; the runtime has
                    # already logged the error in Lambda's format.
                    function_error = "Unhandled"
        memory_used = (
            sandbox.memory_peak_mb(maxrss_kb) if sandbox.alive else max(1, maxrss_kb // 1024)
        )
        report = self._report(request_id, duration_ms, version, memory_used, cold, call.queue_us)
        stream.write(f"END RequestId: {request_id}\n{report.line()}\n".encode())
        tail = None
        if sandbox.log_tail is not None:
            sandbox.log_tail += f"END RequestId: {request_id}\n{report.line()}\n".encode()
            tail = bytes(sandbox.log_tail[-LOG_TAIL_BYTES:]).decode("utf-8", "replace")
            sandbox.log_tail = None
        state.stats.record(report, error=error is not None)
        if sandbox.alive and not call.force_cold:
            self._release(state, sandbox, version)
        else:
            state.sandboxes.discard(sandbox)
            # After the response is written (it is, before this callback runs): tearing a
            # sandbox down is not the caller's business.
            self.loop.call_soon(sandbox.retire)
        body: dict[str, Any] = {
            "request_id": request_id,
            "result": result,
            "error": error,
            "function_error": function_error,
            "report": report.to_wire(),
        }
        if tail is not None:
            body["log_tail"] = tail
        return body

    def _report(
        self,
        request_id: str,
        duration_ms: float,
        version: Version,
        memory_used: int | None,
        cold: ColdStart | None,
        queue_us: int,
    ) -> Report:
        duration_ms = round(duration_ms, 2)  # what the REPORT line shows is what is billed
        return Report(
            request_id=request_id,
            duration_ms=duration_ms,
            billed_ms=billed(duration_ms),
            memory_mb=version.config.memory_mb,
            max_memory_used_mb=memory_used or 1,
            init_ms=round(cold.init_ms, 3) if cold else None,
            cold=cold is not None,
            source=cold.source if cold else "warm",
            version=str(version.number),
            queue_us=queue_us,
            phases_us=cold.phases_us if cold else {},
        )

    def _release(self, state: FunctionState, sandbox: Sandbox, version: Version) -> None:
        current = self.functions.get(state.name) is state
        latest = current and self.registry.functions.get(state.name) is not None
        if (
            not latest
            or self.draining
            or self.registry.get(state.name).latest.number != version.number
        ):
            state.sandboxes.discard(sandbox)
            sandbox.retire()
            return
        sandbox.move(State.IDLE)
        sandbox.last_used = time.monotonic()
        state.idle.append(sandbox)

    async def _exit_info(self, sandbox: Sandbox) -> tuple[str, int, int]:
        """(description, memory peak bytes, oom kills) of a sandbox that died."""
        sandbox.kill()
        try:
            info = await asyncio.wait_for(asyncio.shield(sandbox.exit_info), EXIT_INFO_WAIT_S)
        except TimeoutError:
            return "signal: killed", 0, 0
        description = info.describe()
        return description, info.memory_peak, info.oom_kills

    async def _sandbox_for(
        self, state: FunctionState, version: Version, force_cold: bool = False
    ) -> tuple[Sandbox, ColdStart | None]:
        while state.idle and not force_cold:
            sandbox = state.idle.pop()
            if not sandbox.alive:
                state.sandboxes.discard(sandbox)
                continue
            if sandbox.version != version.number:
                state.sandboxes.discard(sandbox)
                sandbox.retire()
                continue
            if sandbox.state is State.FROZEN and sandbox.cgroup is not None:
                try:
                    sandbox.cgroup.thaw()
                except OSError:
                    sandbox.kill()
                    state.sandboxes.discard(sandbox)
                    continue
            sandbox.move(State.BUSY)
            return sandbox, None
        for attempt in range(GENERIC_RETRIES):
            try:
                sandbox, cold = await self._cold_start(state, version)
                break
            except _GenericLost:
                if attempt == GENERIC_RETRIES - 1:
                    raise ServiceError("no live sandbox could be had for this invocation") from None
        if not sandbox.alive:  # died between its init-done and now (e.g. its zygote went down)
            state.sandboxes.discard(sandbox)
            raise InitFailed(
                {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": "Runtime exited with error: signal: killed",
                },
                cold,
            )
        sandbox.move(State.BUSY)
        return sandbox, cold

    async def _cold_start(
        self, state: FunctionState, version: Version, provisioned: bool = False
    ) -> tuple[Sandbox, ColdStart]:
        cfg = version.config
        self._make_room(cfg.memory_mb)
        pool = self.pools[cfg.runtime]
        t_acquire = time.monotonic_ns()
        sandbox, source = await pool.acquire()
        sandbox.move(State.SPECIALIZING)
        sandbox.function, sandbox.version, sandbox.memory_mb = (
            cfg.name,
            version.number,
            cfg.memory_mb,
        )
        state.sandboxes.add(sandbox)
        t0 = time.monotonic_ns()
        tree_fd = -1
        try:
            limits = CgroupLimits(memory_mb=cfg.memory_mb, pids_max=cfg.pids_max)
            if sandbox.cgroup is not None and limits != POOL_LIMITS:
                sandbox.cgroup.set_limits(limits)
            set_limits_us = (time.monotonic_ns() - t0) // 1000
            code_path = self.registry.code_path(version)
            sandbox.log_stream = self.logs.open_stream(cfg.name, str(version.number), sandbox.id)
            init_line = f"INIT_START Runtime: {cfg.runtime} Sandbox: {sandbox.id} Source: {source}"
            sandbox.log_stream.write(init_line.encode() + b"\n")
            egress = None
            if cfg.network == "egress":
                if self.egress is None:
                    raise _EgressUnavailable("network = 'egress' is not available on this host")
                egress = await asyncio.to_thread(self.egress.attach, sandbox.id, sandbox.pid)
                egress_off = self.egress.detach
                # detach() never blocks (the veth is deleted by egress's own thread).
                sandbox.on_close = lambda: egress_off(sandbox.id)
            fds = []
            if os.geteuid() == 0 or sandbox.zygote.missing == []:
                try:
                    tree_fd = _libc.open_tree_clone(code_path)
                    fds.append(tree_fd)
                except OSError:
                    pass
            try:
                sandbox.send_with_fds(
                    {
                        "t": wire.INIT,
                        "function": {**cfg.to_dict(), "version": str(version.number)},
                        "code_path": code_path,
                        "log_stream": sandbox.log_stream.name,
                        "pids_max": cfg.pids_max,
                        "egress": egress,
                        "region": self.config.region,
                        # AWS_LAMBDA_INITIALIZATION_TYPE, as Lambda sets it
                        "initialization_type": "provisioned-concurrency"
                        if provisioned
                        else "on-demand",
                    },
                    fds,
                )
            except SandboxDied:
                # A pooled sandbox that died before it was given anything (its EOF not yet
                # seen): no code of the function ran. Not the function's failure: try another.
                state.sandboxes.discard(sandbox)
                sandbox.kill()
                raise _GenericLost(sandbox.id) from None
            if tree_fd >= 0:
                os.close(tree_fd)
                tree_fd = -1
            t_sent = time.monotonic_ns()
            msg = await sandbox.receive(timeout=INIT_TIMEOUT_S)
        except (SandboxDied, TimeoutError, OSError, _EgressUnavailable) as exc:
            state.sandboxes.discard(sandbox)
            if isinstance(exc, _EgressUnavailable):
                sandbox.kill()
                description = str(exc)
            elif isinstance(exc, SandboxDied):
                description = (await self._exit_info(sandbox))[0]
            elif isinstance(exc, TimeoutError):
                sandbox.kill()
                description = f"init did not finish within {INIT_TIMEOUT_S:.0f} s"
            else:
                sandbox.kill()
                description = f"sandbox set-up failed: {exc}"
            init_ms = (time.monotonic_ns() - t0) / 1e6
            raise InitFailed(
                {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"Runtime exited with error: {description}",
                },
                ColdStart(source, init_ms, dict(sandbox.generic_phases)),
            ) from None
        finally:
            if tree_fd >= 0:
                os.close(tree_fd)
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
        phases.update({k: int(v) for k, v in dict(msg.get("phases", {})).items()})
        init_ms = float(msg.get("init_us", 0)) / 1000 + set_limits_us / 1000
        cold = ColdStart(source, init_ms, phases)
        if msg.get("t") != wire.INIT_DONE:
            state.sandboxes.discard(sandbox)
            sandbox.kill()
            error = dict(msg.get("error") or {"errorType": "Runtime.Unknown", "errorMessage": ""})
            raise InitFailed(error, cold)  # the runtime has logged it, as Lambda's does
        return sandbox, cold

    def _make_room(self, memory_mb: int) -> None:
        """Keep specialized sandboxes within the memory budget: reap least recently used idle
        ones first; throttle only if that cannot make room."""
        used = sum(s.memory_mb for st in self.functions.values() for s in st.sandboxes)
        if used + memory_mb <= self.memory_budget_mb:
            return
        idle = sorted(
            ((s, st) for st in self.functions.values() for s in st.idle),
            key=lambda p: p[0].last_used,
        )
        for sandbox, st in idle:
            st.idle.remove(sandbox)
            st.sandboxes.discard(sandbox)
            sandbox.retire()
            used -= sandbox.memory_mb
            if used + memory_mb <= self.memory_budget_mb:
                return
        raise TooManyRequests(
            f"Rate Exceeded: memory budget of {self.memory_budget_mb} MB is in use",
            reason=ACCOUNT_EXCEEDED,
        )

    def _busy_count(self) -> int:
        return sum(s.stats.concurrent for s in self.functions.values())

    # -- background work ----------------------------------------------------------------

    async def _sweeper(self) -> None:
        """Freeze idle sandboxes, reap expired ones, keep min_warm, flush logs."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                self._sweep()
            except Exception:
                traceback.print_exc()

    def _sweep(self) -> None:
        now = time.monotonic()
        self.logs.flush_all()
        for state in list(self.functions.values()):
            fn = self.registry.functions.get(state.name)
            min_warm = fn.latest.config.min_warm if fn else 0
            keep = len(state.sandboxes)
            for sandbox in list(state.idle):
                idle_for = now - sandbox.last_used
                if not sandbox.alive:
                    state.idle.remove(sandbox)
                    state.sandboxes.discard(sandbox)
                elif idle_for > self.config.idle_ttl_s and keep > min_warm:
                    state.idle.remove(sandbox)
                    state.sandboxes.discard(sandbox)
                    sandbox.retire()
                    keep -= 1
                elif (
                    idle_for > self.config.freeze_after_s
                    and sandbox.state is State.IDLE
                    and sandbox.cgroup is not None
                ):
                    try:
                        sandbox.cgroup.freeze()
                        sandbox.move(State.FROZEN)
                    except OSError:
                        pass
            if fn is not None and not self.draining and now >= state.provision_after:
                missing = min_warm - len(state.sandboxes) - state.provisioning
                for _ in range(max(0, missing)):
                    state.provisioning += 1
                    self._spawn_task(self._provision(state, fn.latest))
        for pool in self.pools.values():
            pool.replenish()

    async def _provision(self, state: FunctionState, version: Version) -> None:
        """Initialize one sandbox for ``min_warm`` (provisioned concurrency)."""
        try:
            sandbox, _cold = await self._cold_start(state, version, provisioned=True)
        except (InitFailed, LambdadError, _GenericLost) as exc:
            # A function whose Init fails must not turn min_warm into a fork loop.
            state.provision_failures += 1
            delay = min(60.0, 0.5 * 2**state.provision_failures)
            state.provision_after = time.monotonic() + delay
            print(
                f"lambdad: min_warm for {state.name}: {exc!r}; retrying in {delay:.1f} s",
                file=sys.stderr,
            )
            return
        finally:
            state.provisioning -= 1
        state.provision_failures = 0
        if not sandbox.alive or self.functions.get(state.name) is not state:
            state.sandboxes.discard(sandbox)  # died meanwhile, or the function was deleted
            sandbox.retire()
            return
        sandbox.move(State.IDLE)
        sandbox.last_used = time.monotonic()
        state.idle.insert(0, sandbox)

    # -- async invocations ---------------------------------------------------------------

    async def _async_kick(self) -> None:
        self.events.wake()

    async def _async_worker(self) -> None:
        await self.events.run(self._run_event, self.config)

    async def _run_event(
        self, name: str, qualifier: str | None, payload: bytes, event_id: str
    ) -> dict[str, Any]:
        version = self.registry.get(name).version(qualifier)
        return await self.run(version, payload, request_id=event_id)


_INITIALIZED: Final = frozenset({State.IDLE, State.BUSY, State.FROZEN})


def _parse_result(
    msg: dict[str, Any], max_result: int
) -> tuple[bytes | None, dict[str, Any] | None, float, int]:
    """(result, error, duration_ms, maxrss_kb) from a sandbox's result message.

    Raises:
        ValueError: the message is not what the runtime sends (wrong types, sizes).
    """
    duration_us = msg.get("duration_us", 0)
    maxrss_kb = msg.get("maxrss_kb", 0)
    if not isinstance(duration_us, int | float) or isinstance(duration_us, bool):
        raise ValueError("duration_us is not a number")
    if not 0 <= duration_us < 1e12 or duration_us != duration_us:
        raise ValueError(f"duration_us {duration_us!r} out of range")
    if not isinstance(maxrss_kb, int) or isinstance(maxrss_kb, bool) or maxrss_kb < 0:
        raise ValueError("maxrss_kb is not a non-negative integer")
    raw_error = msg.get("error")
    if raw_error is not None:
        if not isinstance(raw_error, dict):
            raise ValueError("error is not a map")
        trace = raw_error.get("stackTrace", [])
        if not isinstance(trace, list) or not all(isinstance(t, str) for t in trace):
            raise ValueError("stackTrace is not a list of strings")
        error = {
            "errorMessage": str(raw_error.get("errorMessage", ""))[: 64 * 1024],
            "errorType": str(raw_error.get("errorType", "Error"))[:256],
            "stackTrace": [t[:4096] for t in trace[:256]],
        }
        return None, error, duration_us / 1000, maxrss_kb
    result = msg.get("result")
    if not isinstance(result, bytes):
        raise ValueError("result is not bytes")
    if len(result) > max_result:
        raise ValueError(f"result of {len(result)} bytes is over {max_result}")
    return result, None, duration_us / 1000, maxrss_kb


def _name(args: dict[str, Any]) -> str:
    name = args.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidParameterValue("name must be a non-empty string", field="name")
    return name


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def _expire_ticket(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _cgroup_parent(config: DaemonConfig) -> str:
    """The parent cgroup of this daemon's sandboxes: ``lambdad`` for the standard state dir,
    ``lambdad-<hash>`` for any other, so that daemons with different state dirs (tests,
    benchmarks, a second instance) never reap each other's sandboxes at start."""
    if os.path.realpath(config.state_dir) == os.path.realpath(config_mod.default_state_dir()):
        return config.cgroup_parent
    digest = hashlib.sha256(os.path.realpath(config.state_dir).encode()).hexdigest()[:10]
    return f"{config.cgroup_parent}-{digest}"


def _host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _user_name(uid: int) -> str:
    import pwd

    return pwd.getpwuid(uid).pw_name


def peer_credentials(sock: socket.socket) -> Peer | None:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def raise_nofile_limit() -> None:
    """10,000 idle client connections need more than the default 1,024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config: DaemonConfig, ready: Callable[[Daemon], None] | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (graceful) — the body of ``lambdad serve``."""
    faulthandler.enable()  # a crash in C code (uvloop, ctypes) leaves a Python stack trace
    raise_nofile_limit()
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    # Signal handlers only record the signal; the loop does the work.
    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    try:
        await daemon.start()
    except BaseException:
        await daemon._stop_zygotes()
        raise
    # Everything allocated so far lives as long as the daemon: move it out of the collector's
    # sight, and collect the young generation less often. A full collection over a big heap
    # is a multi-millisecond pause in the middle of somebody's invocation.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, *gc.get_threshold()[1:])
    if ready is not None:
        ready(daemon)
    await daemon.stopped.wait()


__all__ = ["Daemon", "dataclasses", "serve"]
