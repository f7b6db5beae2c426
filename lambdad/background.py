"""The daemon's background work, as components: the sweeper and the async worker.

* :class:`Sweeper`, every 250 ms: flush log buffers, freeze idle sandboxes, reap expired ones
  (keeping ``min_warm``), provision ``min_warm`` (provisioned concurrency, with a backoff for a
  function whose Init fails), top up the generic pools.
* :class:`AsyncWorker`: runs accepted async events from the durable store with Lambda's retry
  policy (:meth:`lambdad.events.EventStore.run`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import LambdadError
from lambdad.events import EventStore
from lambdad.functions import Version
from lambdad.logs import LogStore
from lambdad.placement import FunctionState, WarmPool
from lambdad.registry import Registry
from lambdad.sandboxes import Sandbox
from lambdad.service import Service
from lambdad.specialize import GenericLost, InitFailed, Specializer
from lambdad.supervisor import RuntimeSupervisor

log = logging.getLogger("lambdad")

SWEEP_INTERVAL_S: Final = 0.25


class Sweeper(Component):
    name = "sweeper"

    def __init__(
        self,
        config: DaemonConfig,
        registry: Registry,
        logs: LogStore,
        warm: WarmPool[Sandbox],
        specializer: Specializer,
        runtimes: RuntimeSupervisor,
        service: Service,
    ) -> None:
        self.config = config
        self.registry = registry
        self.logs = logs
        self.warm = warm
        self.specializer = specializer
        self.runtimes = runtimes
        self.service = service
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.runtimes.replenish()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
        self.logs.flush_all()

    def reload(self, config: DaemonConfig) -> None:
        self.config = config

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                self.sweep()
            except Exception:
                log.exception("sweep failed")

    def sweep(self) -> None:
        self.logs.flush_all()
        self.warm.sweep(self.config.idle_ttl_s, self.config.freeze_after_s, self._min_warm)
        now = time.monotonic()
        for state in self.warm:
            fn = self.registry.functions.get(state.name)
            if fn is None or self.service.draining or now < state.provision_after:
                continue
            targets = self.service.provisioned_targets(fn)
            if len(targets) == 1:  # $LATEST's min_warm only: any sandbox of the function counts
                version, wanted = targets[0]
                missing = wanted - len(state.sandboxes) - state.provisioning
                self._provision_n(state, version, missing)
                continue
            # Provisioned concurrency per version (PutProvisionedConcurrencyConfig): count
            # each version's own sandboxes. In flight ones are not told apart by version, so
            # one version at a time is topped up.
            for version, wanted in targets:
                have = sum(1 for s in state.sandboxes if s.version == version.key)
                missing = wanted - have - state.provisioning
                if missing > 0:
                    self._provision_n(state, version, missing)
                    break
        self.runtimes.replenish()

    def _provision_n(self, state: FunctionState[Sandbox], version: Version, count: int) -> None:
        for _ in range(max(0, count)):
            state.provisioning += 1
            task = asyncio.ensure_future(self._provision(state, version))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _min_warm(self, name: str) -> int:
        fn = self.registry.functions.get(name)
        if fn is None:
            return 0
        return sum(count for _version, count in self.service.provisioned_targets(fn))

    async def _provision(self, state: FunctionState[Sandbox], version: Version) -> None:
        """Initialize one sandbox for ``min_warm`` (provisioned concurrency)."""
        try:
            sandbox, _cold = await self.specializer.cold_start(state, version, provisioned=True)
        except (InitFailed, LambdadError, GenericLost) as exc:
            # A function whose Init fails must not turn min_warm into a fork loop.
            state.provision_failures += 1
            delay = min(60.0, 0.5 * 2**state.provision_failures)
            state.provision_after = time.monotonic() + delay
            log.info("min_warm for %s: %r; retrying in %.1f s", state.name, exc, delay)
            return
        finally:
            state.provisioning -= 1
        state.provision_failures = 0
        if not sandbox.alive or not self.warm.current(state):
            self.warm.retire(state, sandbox)  # died meanwhile, or the function was deleted
            return
        self.warm.put_back(state, sandbox, coldest=True)


class AsyncWorker(Component):
    name = "async"

    def __init__(self, config: DaemonConfig, events: EventStore, service: Service) -> None:
        self.config = config
        self.events = events
        self.service = service
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.events.open(asyncio.get_running_loop())
        self.service.on_async_accepted = self.events.wake
        self._task = asyncio.ensure_future(self.events.run(self.service.run_event, self.config))

    def reload(self, config: DaemonConfig) -> None:
        self.config = config

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.events.close()
