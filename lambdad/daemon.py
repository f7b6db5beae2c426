"""The daemon: composition and lifecycle, nothing else.

It builds the core (registry, logs, async store, admission, placement, specialization,
invocation: :class:`lambdad.service.Service`), the components that do background work, and
the fronts named in :data:`lambdad.frontends.FRONTS`; then starts them in order, stops them in
reverse, reloads them on SIGHUP. One asyncio loop (uvloop where installed) owns all state;
nothing forks once it runs (the zygotes are started with fork+exec). See
docs/architecture.md for the layers and the life of an invocation.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from lambdad import __version__, daemonlog, frontends, notify, statedir
from lambdad import config as config_mod
from lambdad.admission import Admission
from lambdad.background import AsyncWorker, Sweeper
from lambdad.buckets.component import Buckets
from lambdad.codebuild import BuildLimits
from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.destinations import Destinations
from lambdad.diskspace import Watermark
from lambdad.errors import ServiceError
from lambdad.events import EventStore
from lambdad.invoke import Invoker
from lambdad.logs import LogStore
from lambdad.placement import WarmPool
from lambdad.queues.mapping import QueueTriggers
from lambdad.registry import Registry
from lambdad.rollups import Rollups
from lambdad.sandboxes import Sandbox
from lambdad.scheduler import Scheduler
from lambdad.service import Service
from lambdad.specialize import HostEgress, Specializer
from lambdad.supervisor import RuntimeSupervisor
from lambdad.triggers.manager import Triggers
from sandbox import cgroups
from sandbox.cgroups import CgroupBackend

GC_THRESHOLD_0: Final = 20_000  # allocations between young-generation collections (700)
DRAIN_POLL_S: Final = 0.02

log = logging.getLogger("lambdad")


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        # Private by default: every file the daemon creates from here on is 0600 and every
        # directory 0700 (logs, async payloads, records). What sandboxes must read (code) is
        # given its modes explicitly by the registry; the zygotes get their own umask.
        os.umask(0o077)
        # First, before anything touches the directory: one daemon per state directory.
        self.state_lock = statedir.lock(config.state_dir)
        for line in statedir.secure(config.state_dir):
            log.warning("state directory was readable by others; fixed %s", line)
        self.registry = Registry(config.state_dir)
        self.registry.build_policy = self._build_policy
        self.logs = LogStore(
            os.path.join(config.state_dir, "logs"),
            config.log_max_bytes,
            config.log_keep,
            limits=config.log_limits(),
        )
        events = EventStore(os.path.join(config.state_dir, "events.sqlite3"))
        cgroup_parent = statedir.cgroup_parent(config.cgroup_parent, config.state_dir)
        self.cgroups: CgroupBackend | None = None
        if os.geteuid() == 0:
            try:
                self.cgroups = cgroups.detect(cgroup_parent)
            except OSError as exc:
                log.info("cgroups unusable: %s", exc)
        if config.memory_merge:
            log.info("%s", _start_ksm())
        if self.cgroups is not None and config.cgroup_favordynmods:
            try:
                log.info("%s", cgroups.favor_dynmods())
            except OSError as exc:
                log.info("cgroup2 favordynmods not set: %s", exc)
        budget = config.memory_budget_mb or _host_memory_mb() * 3
        limit = config.global_concurrency or max(1, budget // 128)
        self.admission = Admission(Scheduler(limit, config.queue_max), config.queue_timeout_s)
        self.warm: WarmPool[Sandbox] = WarmPool()
        self.runtimes = RuntimeSupervisor(
            config, self.cgroups, cgroup_parent, os.path.join(config.state_dir, "rootfs")
        )
        specializer = Specializer(
            self.warm, self.runtimes, self.registry, self.logs, budget, config.region
        )
        self.invoker = Invoker(self.warm, specializer, self._live_versions, config.sync_payload_max)
        self.service = Service(
            config, self.registry, self.logs, events, self.admission, self.warm,
            self.invoker, self.runtimes, budget,
        )  # fmt: skip
        specializer.layer_dirs = self.service.layer_dirs
        self.egress = HostEgress(specializer, config.disable_isolation)
        # Persisted per-minute statistics; first of the workers, so that the counters are
        # back (from the store) before anything can invoke.
        self.rollups = Rollups(
            config,
            os.path.join(config.state_dir, "rollups.sqlite3"),
            lambda: [(state.name, state.stats) for state in self.warm],
        )
        self.service.rollups = self.rollups
        self.triggers = Triggers(config, self.service)
        self.service.triggers = self.triggers
        # Queues, event-source mappings and async destinations (issue 16), reached by the
        # fronts through service.components.
        queues = QueueTriggers(config, self.service)
        destinations = Destinations(config, self.service, queues.queues)
        self.service.components.update({"queues": queues, "destinations": destinations})
        # Buckets and their object events (docs/triggers-buckets.md): started after the
        # async worker and the triggers, so the rescan at start finds both.
        buckets = Buckets(config, self.service)
        self.service.components["buckets"] = buckets
        # Background work, started once the runtimes are up.
        self.workers: list[Component] = [
            self.rollups,
            queues,
            destinations,
            AsyncWorker(config, events, self.service),
            Sweeper(config, self.registry, self.logs, self.warm, specializer, self.runtimes,
                    self.service),
            self.triggers,
            buckets,
        ]  # fmt: skip
        # The core's components, in start order (stopped in reverse).
        self.components: list[Component] = [self.egress, self.runtimes, *self.workers]
        self.fronts: list[Component] = []
        self.started: list[Component] = []
        self.stopping = False
        self.stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _build_policy(self) -> tuple[BuildLimits, Watermark]:
        """How deploys build code, as configured now (docs/operations.md, "Deploys")."""
        c = self.config
        limits = BuildLimits(
            c.deploy_build_memory_mb, c.deploy_build_cpu_s, c.deploy_build_timeout_s
        )
        return limits, Watermark(c.disk_min_free_mb, c.disk_min_free_percent)

    def _live_versions(self, name: str) -> frozenset[str]:
        fn = self.registry.functions.get(name)
        return fn.live_keys() if fn is not None else frozenset()

    # -- start, stop, reload ---------------------------------------------------------------

    async def start(self) -> None:
        for line in self.registry.load_errors:
            log.info("skipped a damaged function record: %s", line)
        for line in self.service.layers.store.load_errors:
            log.warning("skipped a damaged layer record: %s", line)
        try:
            await self._start(self.egress)
            await self._start(self.runtimes)
            missing = self.runtimes.missing + self.egress.missing
            for line in missing:
                log.warning("%s", line)
            if missing and self.config.strict:
                raise ServiceError(
                    "--strict: refusing to start without every protection: " + "; ".join(missing)
                )
            self.service.missing = missing
            self.service.egress_unavailable = self.egress.unavailable
            if self.egress.unavailable is not None:
                for fn in self.registry:
                    if fn.latest.config.network == "egress":
                        log.warning(
                            "function %r has network = 'egress': its invocations fail until "
                            "egress is available", fn.name,
                        )  # fmt: skip
            for component in self.workers:
                await self._start(component)
            self.fronts = frontends.create_all(self.service, self.config)
            for front in self.fronts:
                await self._start(front)
        except BaseException:
            await self._stop_started()
            raise
        self.service.listeners = [*self.components, *self.fronts]
        log.info(
            "lambdad %s serving on %s (state %s, %d functions, cgroup v%s)",
            __version__, self.config.socket_path, self.config.state_dir,
            len(self.registry.functions), self.cgroups.version if self.cgroups else "-",
            extra={"bare": True},
        )  # fmt: skip
        # Lifecycle hook: start done (the daemon serves).

    async def _start(self, component: Component) -> None:
        await component.start()
        self.started.append(component)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: begin a graceful stop (once)."""
        if not self.stopping:
            self.stopping = True
            self.spawn_task(self.stop())

    async def stop(self) -> None:
        """Stop the fronts, let in-flight invocations finish within the grace period, stop
        the rest (sandboxes and zygotes last), flush the logs."""
        # Lifecycle hook: stop begins.
        self.stopping = True
        self.service.begin_drain()
        for front in reversed(self.fronts):
            if front in self.started:
                self.started.remove(front)
                await front.stop()
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while self.service.busy_count() and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()
        await self._stop_started()
        self.stopped.set()

    async def _stop_started(self) -> None:
        while self.started:
            component = self.started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s", component.name)
        self.logs.flush_all()

    def reload(self) -> None:
        """SIGHUP: re-read the configuration file; settings that need a restart are kept."""
        # Lifecycle hook: reload begins.
        path = os.environ.get("LAMBDAD_CONFIG_FILE")
        try:
            new = config_mod.load(
                path,
                socket_path=self.config.socket_path,
                state_dir=self.config.state_dir,
                strict=self.config.strict,
                api_address=self.config.api_address or None,
            )
        except Exception as exc:
            log.info("SIGHUP: configuration not reloaded: %s", exc)
            return
        self.config = new
        self.service.config = new
        self.logs.configure(new.log_limits())
        for component in [*self.components, *self.fronts]:
            component.reload(new)
        if new.global_concurrency:
            self.admission.set_global_limit(new.global_concurrency)
        log.info("configuration reloaded")
        # Lifecycle hook: reload done.

    def spawn_task(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the daemon keeps (and cancels when it stops)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


KSM_RUN = "/sys/kernel/mm/ksm/run"


def _start_ksm(run_file: str = KSM_RUN) -> str:
    """``memory_merge``: make sure ksmd runs (the zygotes mark their memory mergeable).
    Returns what was done, for the log; nothing is fatal (sandboxes are then not merged)."""
    try:
        with open(run_file) as f:
            if f.read().strip() == "1":
                return "memory_merge: ksmd already runs"
        with open(run_file, "w") as f:
            f.write("1")
    except OSError as exc:
        return f"memory_merge: cannot start ksmd ({exc}); sandboxes' pages will not be merged"
    return "memory_merge: started ksmd (/sys/kernel/mm/ksm/run = 1)"


def _host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def raise_nofile_limit() -> None:
    """10,000 idle client connections need more than the default 1,024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config: DaemonConfig, ready: Callable[[Daemon], None] | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (graceful) — the body of ``lambdad serve``."""
    faulthandler.enable()  # a crash in C code (uvloop, ctypes) leaves a Python stack trace
    daemonlog.configure()
    raise_nofile_limit()
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    # systemd (Type=notify): READY/STATUS/WATCHDOG/RELOADING/STOPPING; see lambdad/notify.py.
    notifier = notify.Notifier.from_environment()
    heartbeat = notify.Heartbeat(notifier, loop, lambda: _status_line(daemon))
    stop_signals: list[str] = []  # a stop asked for before start() finished waits for it
    started = False

    def on_stop_signal(sig: signal.Signals) -> None:
        stop_signals.append(sig.name)
        if started:
            notifier.stopping(f"draining {daemon.service.busy_count()} in flight")
            daemon.request_stop()

    def on_reload() -> None:
        notifier.reloading()
        daemon.reload()
        notifier.ready(_status_line(daemon))

    # Signal handlers only record the signal; the loop does the work.
    loop.add_signal_handler(signal.SIGTERM, on_stop_signal, signal.SIGTERM)
    loop.add_signal_handler(signal.SIGINT, on_stop_signal, signal.SIGINT)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # see cli._serve
    await daemon.start()
    started = True
    heartbeat.start()  # READY=1: the socket answers
    if stop_signals:
        on_stop_signal(signal.Signals[stop_signals[0]])
    # Everything allocated so far lives as long as the daemon: move it out of the collector's
    # sight, and collect the young generation less often. A full collection over a big heap
    # is a multi-millisecond pause in the middle of somebody's invocation.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, *gc.get_threshold()[1:])
    if ready is not None:
        ready(daemon)
    await daemon.stopped.wait()
    heartbeat.stop()
    notifier.close()
    log.info("stopped (%s)", stop_signals[0] if stop_signals else "stop")


def _status_line(daemon: Daemon) -> str:
    return notify.status_line(
        functions=len(daemon.registry.functions),
        generic=sum(daemon.runtimes.generic_ready().values()),
        warm=sum(len(s.sandboxes) for s in daemon.warm),
        in_flight=daemon.service.busy_count(),
    )


__all__ = ["Daemon", "serve"]
