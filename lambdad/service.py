"""The core's in-process API: what every front (the socket, the HTTP API, a trigger) calls.

:class:`Service` takes and returns the typed values of :mod:`lambdad.model`; it never sees a
wire-shaped request. One invocation reads top to bottom: :meth:`Service.invoke` validates and
routes (dryrun, async store, sync), :class:`~lambdad.admission.Admission` admits it,
:class:`~lambdad.invoke.Invoker` places it on a sandbox (warm from
:class:`~lambdad.placement.WarmPool`, or cold through :mod:`lambdad.specialize`) and turns the
sandbox's answer into an :class:`~lambdad.model.InvocationResult` (:mod:`lambdad.outcomes`).

Access control is the fronts' business (they know who is calling); the service trusts its
caller.
"""

from __future__ import annotations

import asyncio
import builtins
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lambdad import __version__
from lambdad.admission import Admission
from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import (
    InvalidParameterValue,
    RequestTooLarge,
    ResourceNotFound,
    ShuttingDown,
    TooManyRequests,
)
from lambdad.events import EventStore
from lambdad.functions import FunctionConfig, Version, check_host_support
from lambdad.invoke import Call, Invoker
from lambdad.logs import LogStore, wire_cursor
from lambdad.metering import merge
from lambdad.model import (
    Caller,
    Deployment,
    FunctionInfo,
    FunctionStatsView,
    GlobalStatsView,
    InvocationResult,
    InvokeRequest,
    SandboxCounts,
    ServerInfo,
)
from lambdad.placement import FunctionState, WarmPool
from lambdad.registry import Registry
from lambdad.sandboxes import Sandbox
from lambdad.scheduler import TicketState

PROTOCOL_VERSION = 1

__all__ = [
    "Caller",
    "Deployment",
    "FunctionInfo",
    "FunctionStatsView",
    "GlobalStatsView",
    "InvocationResult",
    "InvokeRequest",
    "SandboxCounts",
    "ServerInfo",
    "Service",
]


class Runtimes(Protocol):
    """What the service needs of the runtime supervisor."""

    missing: list[str]

    def generic_ready(self) -> dict[str, int]: ...


class Service:
    """Functions and their invocations, for every front."""

    def __init__(
        self,
        config: DaemonConfig,
        registry: Registry,
        logs: LogStore,
        events: EventStore,
        admission: Admission,
        warm: WarmPool[Sandbox],
        invoker: Invoker,
        runtimes: Runtimes,
        memory_budget_mb: int,
    ) -> None:
        self.config = config
        self.registry = registry
        self.log_store = logs
        self.events = events
        self.admission = admission
        self.warm = warm
        self.invoker = invoker
        self.runtimes = runtimes
        self.memory_budget_mb = memory_budget_mb
        self.missing: builtins.list[str] = []  # protections this host lacks (hello, stats)
        self.egress_unavailable: str | None = None  # why network = "egress" cannot run here
        self.addresses: dict[str, str] = {}  # what each front listens on, by front name
        self.listeners: builtins.list[Component] = []  # told about deploys and deletes
        self.on_async_accepted: Callable[[], None] = lambda: None
        # lambdad.triggers.Triggers, set by the daemon; the fronts reach it here
        # (lambdad.triggers.manager.of). Typed Any: the service may not import its callers.
        self.triggers: Any = None
        self._registry_lock = asyncio.Lock()
        for fn in registry:
            warm.state(fn.name)
            admission.set_reserved(fn.name, fn.latest.config.concurrency)

    @property
    def draining(self) -> bool:
        return self.invoker.draining

    def begin_drain(self) -> None:
        """Refuse new invocations; warm sandboxes retire as their invocations end."""
        self.invoker.draining = True

    def busy_count(self) -> int:
        return self.warm.busy_count()

    # -- the API -------------------------------------------------------------------------

    def hello(self) -> ServerInfo:
        return ServerInfo(PROTOCOL_VERSION, f"lambdad {__version__}", tuple(self.missing))

    async def invoke(self, request: InvokeRequest) -> InvocationResult:
        """Run (sync), accept (async) or validate (dryrun) one invocation.

        Raises:
            ResourceNotFound: no such function or version.
            RequestTooLarge: the payload is over the type's limit.
            ShuttingDown: the daemon is draining.
            TooManyRequests: over a concurrency limit or the memory budget, past the queue.
            InvalidRequest: the payload is not JSON (found by the sandbox).
        """
        kind = request.type
        limit = self.config.async_payload_max if kind == "async" else self.config.sync_payload_max
        if len(request.payload) > limit:
            raise RequestTooLarge(
                f"payload of {len(request.payload)} bytes is over the {kind} limit of "
                f"{limit} bytes",
                limit=limit,
            )
        version = self.registry.get(request.function).version(request.qualifier)
        if self.draining:
            raise ShuttingDown("lambdad is shutting down")
        if kind == "dryrun":
            return InvocationResult(request_id="", status=204, executed_version=str(version.number))
        if kind == "async":
            event_id = await self.events.put(request.function, request.qualifier, request.payload)
            self.on_async_accepted()
            return InvocationResult(request_id=event_id, status=202, event_id=event_id)
        return await self.run(
            version,
            request.payload,
            log_tail=request.log_tail,
            request_id=request.request_id or "",
            force_cold=request.force_cold,
        )

    async def run(
        self,
        version: Version,
        payload: bytes,
        log_tail: bool = False,
        request_id: str = "",
        force_cold: bool = False,
    ) -> InvocationResult:
        """Admit and run one invocation of ``version`` (no payload or draining checks: the
        async worker's retries come through here).

        ``force_cold`` (for benchmarks and cold-start studies) ignores warm sandboxes and
        retires the one it used, so every such invocation pays a full cold start.
        """
        name = version.config.name
        state = self.warm.state(name)
        queued_at = time.monotonic_ns()
        ticket = self.admission.request(name)
        if ticket.state is not TicketState.ADMITTED:
            try:
                await self.admission.wait(ticket)
            except TooManyRequests:
                state.stats.throttles += 1
                raise
        queue_us = (time.monotonic_ns() - queued_at) // 1000
        state.stats.concurrent += 1
        state.stats.max_concurrent = max(state.stats.max_concurrent, state.stats.concurrent)
        try:
            call = Call(
                version, payload, log_tail, request_id or str(uuid.uuid4()), force_cold, queue_us
            )
            return await self.invoker.run(state, call)
        finally:
            state.stats.concurrent -= 1
            self.admission.release(ticket)

    async def deploy(self, config: FunctionConfig, code: bytes) -> Deployment:
        """Store ``code`` (a zip) and ``config`` as a new version, unless both equal $LATEST.

        Raises:
            InvalidParameterValue: the code is empty or not a usable zip; the host cannot run
                the configuration (``network = "egress"`` without egress).
        """
        check_host_support(config, egress_unavailable=self.egress_unavailable)
        self.check_reservation(config.name, config.concurrency)
        if not code:
            raise InvalidParameterValue("code must be the bytes of a zip file", field="code")
        async with self._registry_lock:
            code_sha = await asyncio.to_thread(self.registry.store_code, code)
            version, created = await asyncio.to_thread(self.registry.add_version, config, code_sha)
        state = self.warm.state(config.name)
        self.admission.set_reserved(config.name, config.concurrency)
        if created:
            # Warm sandboxes of older versions drain: idle ones retire now, busy ones on release.
            self.warm.retire_idle_except(state, version.number)
        for listener in self.listeners:
            listener.on_deploy(config.name, version.number, created)
        return Deployment(self.get(config.name), created)

    def check_reservation(self, name: str, limit: int | None) -> None:
        """Refuse a reserved concurrency that would starve the functions that reserve none.

        Raises:
            InvalidParameterValue: ``limit`` is more than ``name`` may reserve.
        """
        if limit is None:
            return
        total = self.admission.global_limit
        keep = min(self.config.unreserved_concurrency_min, total // 2)
        most = self.admission.max_reservation(name, keep)
        if limit > most:
            raise InvalidParameterValue(
                f"reserved concurrency {limit} for {name!r} would leave the unreserved functions "
                f"less than {keep} of the global limit of {total}: at most {most} can be reserved",
                field="concurrency",
                limit=most,
            )

    def get(self, name: str) -> FunctionInfo:
        """Raises ResourceNotFound."""
        fn = self.registry.get(name)
        latest = fn.latest
        return FunctionInfo(
            config=latest.config,
            version=str(latest.number),
            versions=tuple(str(v.number) for v in fn.versions),
            code_sha256=latest.code_sha256,
            sha256=latest.sha256,
            last_modified=latest.created,
        )

    def list(self) -> builtins.list[FunctionInfo]:
        return [self.get(fn.name) for fn in self.registry]

    async def delete(self, name: str) -> None:
        """Delete a function, its versions, code and logs. Busy sandboxes finish their
        invocation first. Raises ResourceNotFound."""
        async with self._registry_lock:
            self.registry.get(name)
            self.warm.drop(name)
            self.admission.set_reserved(name, None)
            await asyncio.to_thread(self.registry.delete, name)
            self.log_store.delete_function(name)
        for listener in self.listeners:
            listener.on_delete(name)

    def function_stats(self, name: str) -> FunctionStatsView:
        """Raises ResourceNotFound."""
        self.registry.get(name)
        return _view(self.warm.state(name))

    def all_function_stats(self) -> builtins.list[FunctionStatsView]:
        """Every function with run-time state, by name (what the metrics endpoint shows)."""
        return [_view(state) for state in sorted(self.warm, key=lambda s: s.name)]

    async def stats(self) -> GlobalStatsView:
        states = list(self.warm)
        return GlobalStatsView(
            stats=merge([s.stats for s in states]),
            generic_sandboxes=sum(self.runtimes.generic_ready().values()),
            warm_sandboxes=sum(len(s.sandboxes) for s in states),
            global_concurrency_limit=self.admission.global_limit,
            memory_budget_mb=self.memory_budget_mb,
            async_events=await self.events.counts(),
            missing=tuple(self.missing),
            addresses=dict(self.addresses),
        )

    def generic_sandboxes(self) -> dict[str, int]:
        """Pre-forked sandboxes ready, by runtime."""
        return self.runtimes.generic_ready()

    async def logs(
        self, name: str, cursor: Mapping[str, Any] | None
    ) -> tuple[bytes, dict[str, int]]:
        """(data, cursor): the recent log without a cursor, what is new since with one.

        Raises:
            ResourceNotFound; InvalidParameterValue: a cursor that is not one of ours.
        """
        self.registry.get(name)
        try:
            parsed = wire_cursor(cursor)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterValue(f"cursor: {exc}", field="cursor") from exc
        return await asyncio.to_thread(self.log_store.read, name, parsed)

    async def dead_letters(self, name: str | None) -> builtins.list[dict[str, Any]]:
        if name is not None:
            self.registry.get(name)
        return await self.events.dead_letters(name)

    async def redrive(self, name: str | None, event_id: str | None) -> int:
        """Re-queue dead letters: one event, or all of a function's (or everyone's).

        Raises:
            ResourceNotFound: ``event_id`` names no dead letter.
        """
        redriven = await self.events.redrive(name, event_id)
        if event_id is not None and not redriven:
            raise ResourceNotFound(f"no dead letter with event id {event_id!r}", event_id=event_id)
        return redriven

    # -- for the async worker --------------------------------------------------------------

    async def run_event(
        self, name: str, qualifier: str | None, payload: bytes, event_id: str
    ) -> dict[str, Any]:
        """One attempt of an accepted async event (the event id is its request id)."""
        version = self.registry.get(name).version(qualifier)
        result = await self.run(version, payload, request_id=event_id)
        return {"error": result.error}


def _view(state: FunctionState[Sandbox]) -> FunctionStatsView:
    warm, initializing, idle, frozen = state.counts()
    return FunctionStatsView(
        name=state.name,
        stats=state.stats.to_wire(),
        sandboxes=SandboxCounts(warm, initializing, idle, frozen, live=len(state.sandboxes)),
    )
