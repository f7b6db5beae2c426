"""Zygote supervision: one zygote and one generic pool per registered runtime.

Starts every runtime's zygote (fork+exec), brings each sandbox it forks up to ``generic`` and
offers it to the pool, and restarts a zygote that dies (backoff 0.1 s doubling to 5 s; exit
status :data:`~sandbox.defaults.ZYGOTE_BOOT_ERROR` means "cannot boot": not restarted, like
gunicorn's ``WORKER_BOOT_ERROR``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import Any, Final

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import LambdadError, ServiceError
from lambdad.sandboxes import GenericPool, Sandbox, SandboxDied, State, Zygote
from sandbox import messages, runtimes
from sandbox.cgroups import CgroupBackend
from sandbox.defaults import ZYGOTE_BOOT_ERROR

log = logging.getLogger("lambdad")

READY_WAIT_S: Final = 30.0  # a forked sandbox that has not said "ready" by then is broken
RESTART_DELAY_MAX_S: Final = 5.0


class RuntimeSupervisor(Component):
    name = "runtimes"

    def __init__(
        self,
        config: DaemonConfig,
        cgroups: CgroupBackend | None,
        cgroup_parent: str,
        rootfs: str,
    ) -> None:
        self.config = config
        self.cgroups = cgroups
        self.cgroup_parent = cgroup_parent
        self.rootfs = rootfs
        self.zygotes: dict[str, Zygote] = {}
        self.pools: dict[str, GenericPool] = {}
        self.missing: list[str] = []  # protections the zygotes found unavailable
        self.stopping = False
        self._restart_delay: dict[str, float] = {}
        self._started: set[str] = set()  # zygotes started at least once (the rest: lazily)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if self.cgroups is not None:
            self.cgroups.cleanup()
        os.makedirs(self.rootfs, exist_ok=True)
        loop = asyncio.get_running_loop()
        # Which runtimes this host has (runs `node --version` once): off the loop.
        available = await asyncio.to_thread(runtimes.available)
        for runtime in available:
            zygote = Zygote(
                loop,
                runtime,
                self.rootfs,
                None if "cgroups" in self.config.disable_isolation else self.cgroups,
                self.cgroup_parent,
                self.config.disable_isolation,
                self._on_sandbox,
                self._on_zygote_down,
                memory_merge=self.config.memory_merge,
            )
            self.zygotes[runtime] = zygote
            self.pools[runtime] = GenericPool(zygote, self.config.pool_size, self.config.pool_max)
            if runtime in runtimes.EAGER:
                await self._start_zygote(zygote)

    async def _start_zygote(self, zygote: Zygote) -> None:
        self._started.add(zygote.runtime)
        await zygote.start()
        self.missing = sorted(set(self.missing) | set(zygote.missing))

    async def _start_lazily(self, runtime: str) -> None:
        """First use of a runtime that does not start with the daemon: start its zygote;
        whoever is waiting for a sandbox gets one when it is up."""
        zygote, pool = self.zygotes[runtime], self.pools[runtime]
        try:
            await self._start_zygote(zygote)
        except LambdadError as exc:
            log.info("%s", exc)
            pool.fail_waiters(ServiceError(f"the {runtime} runtime could not start: {exc}"))
            self._started.discard(runtime)  # the next use tries again
            return
        pool.replenish()

    def replenish(self) -> None:
        for pool in self.pools.values():
            pool.replenish()

    def pool(self, runtime: str) -> GenericPool:
        """The generic pool serving a function's ``runtime`` (an alias: its zygote's).

        Raises:
            ServiceError: this host has no zygote for it (a deploy would have been refused).
        """
        try:
            name = runtimes.canonical(runtime)
            pool = self.pools[name]
        except KeyError:
            raise ServiceError(f"runtime {runtime!r} is not available on this host") from None
        if name not in self._started and not self.stopping:
            self._started.add(name)
            self._spawn_task(self._start_lazily(name))
        return pool

    def generic_ready(self) -> dict[str, int]:
        return {runtime: len(pool.ready) for runtime, pool in sorted(self.pools.items())}

    def reload(self, config: DaemonConfig) -> None:
        self.config = config
        for pool in self.pools.values():
            pool.base, pool.ceiling = config.pool_size, config.pool_max

    async def stop(self) -> None:
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        for zygote in self.zygotes.values():
            zygote.close_link()  # in the loop's thread: it touches transports and readers
            await asyncio.to_thread(zygote.reap)
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.remove)

    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- zygote and sandbox events ------------------------------------------------------

    def _on_sandbox(self, sandbox: Sandbox, source: str) -> None:
        self.pools[sandbox.zygote.runtime].started(sandbox)
        self._spawn_task(self._bring_up(sandbox))

    async def _bring_up(self, sandbox: Sandbox) -> None:
        pool = self.pools[sandbox.zygote.runtime]
        try:
            if not sandbox.alive:  # its zygote went down before we got to it
                raise SandboxDied(f"{sandbox.id}: gone before it was ready")
            await sandbox.attach()
            ready = await sandbox.receive(messages.Ready, timeout=READY_WAIT_S)
            sandbox.generic_phases = dict(ready.phases)
            if not sandbox.alive:
                raise SandboxDied(f"{sandbox.id}: died while starting")
            sandbox.move(State.GENERIC)
        except (SandboxDied, TimeoutError, OSError, ValueError, TypeError) as exc:
            log.info("sandbox %s failed to start: %s", sandbox.id, exc)
            sandbox.kill()
            pool.failed()
            return
        pool.offer(sandbox)

    def _on_zygote_down(self, zygote: Zygote) -> None:
        pool = self.pools.get(zygote.runtime)
        if pool is not None:
            pool.reset()
        if self.stopping:
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
        if status == ZYGOTE_BOOT_ERROR:  # it would fail again; do not spin
            log.info("zygote %s cannot start; not restarting", zygote.runtime)
            self.pools[zygote.runtime].fail_waiters(ServiceError("the runtime's zygote is down"))
            return
        delay = self._restart_delay.get(zygote.runtime, 0.0)
        self._restart_delay[zygote.runtime] = min(RESTART_DELAY_MAX_S, delay * 2 or 0.1)
        log.info("zygote %s exited (status %s); restarting", zygote.runtime, status)
        await asyncio.sleep(delay)
        try:
            await zygote.start()
        except LambdadError as exc:
            log.info("%s", exc)
            self._on_zygote_down(zygote)
            return
        self._restart_delay[zygote.runtime] = 0.0
        self.pools[zygote.runtime].replenish()
