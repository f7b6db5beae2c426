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
import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from lambdad import __version__
from lambdad.admission import Admission
from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.diskspace import Watermark
from lambdad.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    RequestTooLarge,
    ResourceConflict,
    ResourceNotFound,
    ServiceError,
    ShuttingDown,
    TooManyRequests,
)
from lambdad.events import EventStore
from lambdad.functions import FunctionConfig, Version, check_host_support, check_unzipped_size
from lambdad.invoke import Call, Invoker, new_request_id, new_trace_id
from lambdad.keys import ApiKey, KeyStore, NewKey
from lambdad.layers import Layers, LayerStore, parse_layer_version_arn
from lambdad.logs import (
    QUERY_LIMIT_DEFAULT,
    QUERY_LIMIT_MAX,
    LogPage,
    LogQuery,
    LogStore,
    wire_cursor,
)
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
    check_trace_context,
)
from lambdad.placement import INITIALIZED, FunctionState, WarmPool
from lambdad.registry import LATEST, VERSION_RE, Alias, Function, Registry, revision_id_of
from lambdad.rollups import Rollups
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
        layers: Layers | None = None,
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
        # Layers (lambdad/layers.py): the fronts publish, list and delete through this; a
        # deleted version stays while any version of any function references it.
        self.layers = layers or Layers(LayerStore(registry.state_dir, self._layers_in_use))
        self.missing: builtins.list[str] = []  # protections this host lacks (hello, stats)
        self.egress_unavailable: str | None = None  # why network = "egress" cannot run here
        self.addresses: dict[str, str] = {}  # what each front listens on, by front name
        self.listeners: builtins.list[Component] = []  # told about deploys and deletes
        # Components the fronts reach by name (queues and mappings, destinations): set by the
        # daemon when it builds them.
        self.components: dict[str, Component] = {}
        self.on_async_accepted: Callable[[], None] = lambda: None
        self.rollups: Rollups | None = None  # persisted per-minute statistics (the daemon's)
        # lambdad.triggers.Triggers, set by the daemon; the fronts reach it here
        # (lambdad.triggers.manager.of). Typed Any: the service may not import its callers.
        self.triggers: Any = None
        self._registry_lock = asyncio.Lock()
        self._code_sizes: dict[str, int] = {}
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
            TooManyRequests: over a concurrency limit or the memory budget, past the queue;
                async: the event queue is full (``AsyncEventQueueFull``) or the disk is below
                its watermark (``InsufficientDiskSpace``).
            InvalidRequest: the payload is not JSON (found by the sandbox).
            InvalidParameterValue: a ``trace_id`` or ``client_context`` the handler cannot be
                given (:func:`~lambdad.model.check_trace_context`).
        """
        kind = request.type
        limit = self.config.async_payload_max if kind == "async" else self.config.sync_payload_max
        if len(request.payload) > limit:
            raise RequestTooLarge(
                f"payload of {len(request.payload)} bytes is over the {kind} limit of "
                f"{limit} bytes",
                limit=limit,
            )
        if request.trace_id is not None or request.client_context is not None:
            check_trace_context(request.trace_id, request.client_context)
        version = self.registry.get(request.function).version(request.qualifier)
        if self.draining:
            raise ShuttingDown("lambdad is shutting down")
        if kind == "dryrun":
            return InvocationResult(request_id="", status=204, executed_version=str(version.number))
        if kind == "async":
            event_id = await self.enqueue(request.function, request.qualifier, request.payload)
            return InvocationResult(request_id=event_id, status=202, event_id=event_id)
        return await self.run(
            version,
            request.payload,
            log_tail=request.log_tail,
            request_id=request.request_id or "",
            force_cold=request.force_cold,
            trace_id=request.trace_id,
            client_context=request.client_context,
            qualifier=request.qualifier,
        )

    async def run(
        self,
        version: Version,
        payload: bytes,
        log_tail: bool = False,
        request_id: str = "",
        force_cold: bool = False,
        trace_id: str | None = None,
        client_context: str | None = None,
        qualifier: str | None = None,
    ) -> InvocationResult:
        """Admit and run one invocation of ``version`` (no payload or draining checks: the
        async worker's retries come through here).

        ``qualifier``: what the caller named (an alias, a version, ``$LATEST``); the handler's
        ``invoked_function_arn`` ends with it, as on Lambda.

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
                version,
                payload,
                log_tail,
                request_id or new_request_id(),
                force_cold,
                queue_us,
                trace_id or new_trace_id(),
                client_context,
                qualifier,
            )
            return await self.invoker.run(state, call)
        finally:
            state.stats.concurrent -= 1
            self.admission.release(ticket)

    async def deploy(self, config: FunctionConfig, code: bytes) -> Deployment:
        """Store ``code`` (a zip) and ``config`` as a new version, unless both equal $LATEST.

        Raises:
            InvalidParameterValue: the code is empty or not a usable zip, or building it passed
                a cap (``deploy_build_*``); the host cannot run the configuration
                (``network = "egress"`` without egress).
            CodeStorageExceeded: the disk is below its free-space watermark (the registry's
                check: every way of storing code makes it).
        """
        check_host_support(config, egress_unavailable=self.egress_unavailable)
        self.check_reservation(config.name, config.concurrency)
        if not code:
            raise InvalidParameterValue("code must be the bytes of a zip file", field="code")
        async with self._registry_lock:
            code_sha = await asyncio.to_thread(self.registry.store_code, code)
            previous = self.registry.functions.get(config.name)
            config = await self._with_layers(config, code_sha, previous)
            version, created = await asyncio.to_thread(self.registry.add_version, config, code_sha)
        state = self.warm.state(config.name)
        self.admission.set_reserved(config.name, config.concurrency)
        if created:
            # A deploy moves the function on: idle sandboxes of other versions retire now;
            # busy ones on release unless their version is still live (published).
            self.warm.retire_idle_except(state, {version.key})
        for listener in self.listeners:
            listener.on_deploy(config.name, version.number, created)
        return Deployment(self.get(config.name), created)

    async def _with_layers(
        self, config: FunctionConfig, code_sha: str, previous: Function | None
    ) -> FunctionConfig:
        """``config`` with its layers as version ARNs, once each is known to exist and code
        plus layers fit Lambda's 250 MB unzipped.

        A version this function already uses may have been deleted since (it is retained, as
        on Lambda); any other must be live.

        Raises:
            InvalidParameterValue: an unknown layer version, or over the size limit.
        """
        if not config.layers:
            return config
        used = {_layer_ref(a) for a in previous.latest.config.layers} if previous else set()
        store = self.layers.store
        arns: list[str] = []
        sizes: list[int] = []
        for ref in config.layers:
            name, number = _layer_ref(ref)
            try:
                if (name, number) in used:
                    version = store.resolve(name, number)
                else:
                    version = store.get(name, number)
            except ResourceNotFound:
                raise InvalidParameterValue(
                    f"Layer version {ref} does not exist.", field="layers"
                ) from None
            arns.append(version.arn(self.config.region))
            sizes.append(version.unzipped_size)
        code_bytes = await asyncio.to_thread(self.code_size, code_sha)
        check_unzipped_size(code_bytes, sizes)
        return dataclasses.replace(config, layers=tuple(arns))

    def _layers_in_use(self) -> set[tuple[str, int]]:
        """(layer, version) pairs any version of any function references (the store's
        ``in_use``: a deleted version among them is retained)."""
        return {
            _layer_ref(arn)
            for fn in self.registry
            for version in (fn.latest, *fn.versions)
            for arn in version.config.layers
        }

    def layer_dirs(self, version: Version) -> builtins.list[str]:
        """The host directories of ``version``'s layers, in order (the specializer's hook)."""
        store = self.layers.store
        return [store.tree_path(store.resolve(*_layer_ref(arn))) for arn in version.config.layers]

    async def enqueue(
        self,
        function: str,
        qualifier: str | None,
        payload: bytes,
        event_id: str | None = None,
        hops: int = 0,
        origin: str | None = None,
    ) -> str:
        """Accept an async event durably (an ``Event`` invoke, a schedule's fire, a
        destination's record); its id.

        ``event_id``: an idempotency key; an event already stored under it is not stored again.
        ``hops``/``origin``: the event chain it continues (recursive loop detection).

        Raises:
            TooManyRequests: the disk is below its watermark (``InsufficientDiskSpace``) or the
                queue is at a cap (``AsyncEventQueueFull``).
        """
        short = self._disk_shortfall()
        if short is not None:
            raise TooManyRequests(f"async event refused: {short}", reason="InsufficientDiskSpace")
        event_id = await self.events.put(
            function, qualifier, payload, self.config, event_id, hops, origin
        )
        self.on_async_accepted()
        return event_id

    def _disk_shortfall(self) -> str | None:
        c = self.config
        return Watermark(c.disk_min_free_mb, c.disk_min_free_percent).shortfall(c.state_dir)

    def check_reservation(self, name: str, limit: int | None) -> None:
        """Refuse a reserved concurrency that would starve the functions that reserve none.

        Raises:
            InvalidParameterValue: ``limit`` is more than ``name`` may reserve.
        """
        if limit is None:
            return
        most = self.max_reservation(name)
        if limit > most:
            raise InvalidParameterValue(
                f"Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of "
                f"[{self.unreserved_minimum()}] (global limit {self.admission.global_limit}): "
                f"at most {most} can be reserved for {name!r}",
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
            memory_in_use_mb=self.warm.memory_in_use(),
        )

    async def stats_since(self, since_s: float, name: str | None) -> dict[str, Any]:
        """Per-minute statistics of the last ``since_s`` seconds (all functions, or one),
        from the persisted roll-ups: they survive restarts.

        Raises:
            ResourceNotFound: ``name`` is not a function.
            InvalidParameterValue: ``since_s`` is not a positive number of seconds.
        """
        if name is not None:
            self.registry.get(name)
        if isinstance(since_s, bool) or not isinstance(since_s, int | float) or not since_s > 0:
            raise InvalidParameterValue(
                f"since must be a positive number of seconds, got {since_s!r}", field="since"
            )
        if self.rollups is None:
            raise ServiceError("this daemon keeps no statistics history")
        return await self.rollups.history(float(since_s), name)

    def generic_sandboxes(self) -> dict[str, int]:
        """Pre-forked sandboxes ready, by runtime."""
        return self.runtimes.generic_ready()

    async def logs(
        self,
        name: str,
        cursor: Mapping[str, Any] | None = None,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        request_id: str | None = None,
        pattern: str | None = None,
        limit: int | None = None,
    ) -> LogPage:
        """A function's log records, oldest first: without a cursor the newest ``limit``
        (default 1,000, at most 10,000, and 1 MB of messages) that match, rotated files
        included; with a cursor from an earlier page, what was written since.

        Raises:
            ResourceNotFound; InvalidParameterValue: a cursor that is not one of ours, a bad
                limit, time range or filter pattern.
        """
        self.registry.get(name)
        try:
            parsed = wire_cursor(cursor)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterValue(f"cursor: {exc}", field="cursor") from exc
        if limit is not None and not 1 <= limit <= QUERY_LIMIT_MAX:
            raise InvalidParameterValue(
                f"limit must be 1..{QUERY_LIMIT_MAX}, not {limit}", field="limit"
            )
        if since_ms is not None and until_ms is not None and since_ms > until_ms:
            raise InvalidParameterValue("since is after until", field="since")
        try:
            query = LogQuery(
                name,
                since_ms=since_ms,
                until_ms=until_ms,
                request_id=request_id,
                pattern=pattern,
                limit=limit or QUERY_LIMIT_DEFAULT,
                cursor=parsed,
            )
        except ValueError as exc:
            raise InvalidParameterValue(str(exc), field="filter") from None
        self.log_store.flush_all()  # on the loop: the streams are the loop's
        return await asyncio.to_thread(self.log_store.query, query)

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

    # -- versions, aliases, concurrency, tags: what the Lambda API's operations need ---------

    async def create_function(
        self, config: FunctionConfig, code: bytes, *, publish: bool = False
    ) -> Version:
        """``CreateFunction``: a new function whose ``$LATEST`` is ``config`` + ``code``.

        Returns ``$LATEST``, or the published version 1 with ``publish``.

        Raises:
            ResourceConflict: the function exists. InvalidParameterValue: the code.
        """
        if not code:
            raise InvalidParameterValue("code must be the bytes of a zip file", field="code")
        async with self._registry_lock:
            if config.name in self.registry.functions:
                raise ResourceConflict(f"Function already exist: {config.name}", name=config.name)
            code_sha = await asyncio.to_thread(self.registry.store_code, code)
            config = await self._with_layers(config, code_sha, None)
            version = await asyncio.to_thread(self.registry.set_latest, config, code_sha)
            if publish:
                version, _ = await asyncio.to_thread(self.registry.publish, config.name)
        self._versions_changed(config.name)
        return version

    async def update_function(
        self,
        name: str,
        *,
        config: FunctionConfig | None = None,
        code: bytes | None = None,
        publish: bool = False,
        revision_id: str | None = None,
    ) -> Version:
        """``UpdateFunctionCode`` / ``UpdateFunctionConfiguration``: a new ``$LATEST``.

        Returns ``$LATEST``, or the version ``publish`` made (or found identical).

        Raises:
            ResourceNotFound; PreconditionFailed (a stale ``revision_id``);
            InvalidParameterValue (the code).
        """
        async with self._registry_lock:
            fn = self.registry.get(name)
            if revision_id is not None and revision_id != revision_id_of(fn.latest):
                raise PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                    name=name,
                )
            code_sha = fn.latest.code_sha256
            if code is not None:
                code_sha = await asyncio.to_thread(self.registry.store_code, code)
            config = await self._with_layers(config or fn.latest.config, code_sha, fn)
            version = await asyncio.to_thread(self.registry.set_latest, config, code_sha)
            if publish:
                version, _ = await asyncio.to_thread(self.registry.publish, name)
        self._versions_changed(name)
        return version

    async def publish(
        self,
        name: str,
        *,
        description: str = "",
        code_sha256: str | None = None,
        revision_id: str | None = None,
    ) -> tuple[Version, bool]:
        """``PublishVersion`` (:meth:`Registry.publish`)."""
        async with self._registry_lock:
            result = await asyncio.to_thread(
                self.registry.publish,
                name,
                description=description,
                code_sha256=code_sha256,
                revision_id=revision_id,
            )
        self._versions_changed(name)
        return result

    async def delete_version(self, name: str, qualifier: str) -> None:
        """``DeleteFunction`` with a version qualifier (:meth:`Registry.delete_version`)."""
        async with self._registry_lock:
            await asyncio.to_thread(self.registry.delete_version, name, qualifier)
            if qualifier in self.registry.get(name).provisioned:
                await asyncio.to_thread(self.registry.set_provisioned, name, qualifier, None)
        self._versions_changed(name)

    async def create_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        description: str = "",
        weights: Mapping[str, float] | None = None,
    ) -> Alias:
        async with self._registry_lock:
            return await asyncio.to_thread(
                functools.partial(
                    self.registry.create_alias,
                    name, alias, version, description=description, weights=weights,
                )
            )  # fmt: skip

    async def update_alias(
        self,
        name: str,
        alias: str,
        *,
        version: str | None = None,
        description: str | None = None,
        weights: Mapping[str, float] | None = None,
        revision_id: str | None = None,
    ) -> Alias:
        async with self._registry_lock:
            return await asyncio.to_thread(
                functools.partial(
                    self.registry.update_alias, name, alias, version=version,
                    description=description, weights=weights, revision_id=revision_id,
                )
            )  # fmt: skip

    async def delete_alias(self, name: str, alias: str) -> None:
        async with self._registry_lock:
            await asyncio.to_thread(self.registry.delete_alias, name, alias)
            if alias in self.registry.get(name).provisioned:
                await asyncio.to_thread(self.registry.set_provisioned, name, alias, None)

    def max_reservation(self, name: str) -> int:
        """The most ``name`` may reserve (``Scheduler.max_reservation``) while the unreserved
        minimum stays shared by everyone else."""
        return self.admission.max_reservation(name, self.unreserved_minimum())

    def unreserved_minimum(self) -> int:
        """``unreserved_concurrency_min``, but never more than half the global limit (a small
        host must still be able to reserve something)."""
        return min(self.config.unreserved_concurrency_min, self.admission.global_limit // 2)

    async def set_concurrency(self, name: str, reserved: int | None) -> Version:
        """``Put``/``DeleteFunctionConcurrency``: reserve (or stop reserving) concurrency.

        Stored in ``$LATEST``'s configuration, where a msgpack deploy keeps it too.

        Raises:
            ResourceNotFound; InvalidParameterValue: more than :meth:`max_reservation`.
        """
        fn = self.registry.get(name)
        self.check_reservation(name, reserved)
        config = dataclasses.replace(fn.latest.config, concurrency=reserved)
        return await self.update_function(name, config=config)

    async def set_provisioned(self, name: str, qualifier: str, count: int | None) -> Function:
        """``Put``/``DeleteProvisionedConcurrencyConfig``: keep ``count`` sandboxes of what
        ``qualifier`` (a version number or an alias, never ``$LATEST``) resolves to
        initialized — the sweeper's ``min_warm`` for that version.

        Raises:
            ResourceNotFound (function, version or alias; a missing record on delete);
            InvalidParameterValue ($LATEST).
        """
        fn = self.registry.get(name)
        if qualifier in ("", LATEST):
            raise InvalidParameterValue(
                "Provisioned Concurrency Configs cannot be applied to unpublished function "
                "versions.",
                field="Qualifier",
            )
        fn.resolve(qualifier)  # raises ResourceNotFound for a missing version or alias
        alias = fn.aliases.get(qualifier)
        if alias is not None and alias.version == LATEST and count is not None:
            raise InvalidParameterValue(
                f"Alias {qualifier} points to $LATEST: provisioned concurrency needs a "
                "published version",
                field="Qualifier",
            )
        if count is None and qualifier not in fn.provisioned:
            raise ResourceNotFound(
                f"No Provisioned Concurrency Config found for this function: {name}:{qualifier}",
                name=name,
            )
        async with self._registry_lock:
            return await asyncio.to_thread(self.registry.set_provisioned, name, qualifier, count)

    def provisioned_targets(self, fn: Function) -> builtins.list[tuple[Version, int]]:
        """Which versions of ``fn`` keep how many sandboxes initialized: ``$LATEST``'s
        ``min_warm``, and each provisioned-concurrency record (an alias: its primary)."""
        targets = [(fn.latest, fn.latest.config.min_warm)]
        for qualifier, count in fn.provisioned.items():
            try:
                alias = fn.aliases.get(qualifier)
                target = alias.version if alias is not None else qualifier
                version = fn.latest if target == LATEST else fn.published(target)
            except ResourceNotFound:
                continue
            targets.append((version, count))
        return targets

    def provisioned_ready(self, name: str, qualifier: str) -> int:
        """How many initialized sandboxes the qualifier's provisioned version has now."""
        fn = self.registry.get(name)
        alias = fn.aliases.get(qualifier)
        target = alias.version if alias is not None else qualifier
        if not VERSION_RE.fullmatch(target):
            return 0
        key = fn.published(target).key
        state = self.warm.state(name)
        return sum(1 for s in state.sandboxes if s.version == key and s.state in INITIALIZED)

    async def tag(self, name: str, tags: Mapping[str, str]) -> None:
        async with self._registry_lock:
            fn = self.registry.get(name)
            await asyncio.to_thread(self.registry.set_tags, name, {**fn.tags, **tags})

    async def untag(self, name: str, keys: Iterable[str]) -> None:
        async with self._registry_lock:
            fn = self.registry.get(name)
            drop = set(keys)
            kept = {k: v for k, v in fn.tags.items() if k not in drop}
            await asyncio.to_thread(self.registry.set_tags, name, kept)

    async def account(self) -> dict[str, int]:
        """Limits and usage, as ``GetAccountSettings`` reports them."""
        scheduler = self.admission.scheduler
        trees = {v.code_sha256 for fn in self.registry for v in (fn.latest, *fn.versions)}
        sizes = [await asyncio.to_thread(self.package_size, tree) for tree in sorted(trees)]
        code_bytes = sum(sizes)
        return {
            "concurrent_executions": scheduler.global_limit,
            "unreserved_concurrent_executions": scheduler.unreserved_limit,
            "function_count": len(self.registry.functions),
            "total_code_size": code_bytes,
        }

    def package_size(self, code_sha256: str) -> int:
        """Lambda's ``CodeSize``: bytes of the zip deployed (the tree's, for code stored
        before zip sizes were recorded)."""
        size = self.registry.zip_size(code_sha256)
        return size if size is not None else self.code_size(code_sha256)

    def code_size(self, code_sha256: str) -> int:
        """Bytes of an extracted code tree (cached: trees are immutable)."""
        size = self._code_sizes.get(code_sha256)
        if size is None:
            size = _tree_size(os.path.join(self.registry.code_dir, code_sha256))
            self._code_sizes[code_sha256] = size
        return size

    @functools.cached_property
    def keys(self) -> KeyStore:
        """The Lambda API's keys (``<state>/api-keys.json``), loaded on first use.

        Raises:
            ValueError: the file exists but is not a key store.
        """
        return KeyStore(self.config.state_dir)

    async def create_key(self, name: str | None, admin: bool) -> NewKey:
        """A new API key; its secret is in the result only. Raises InvalidParameterValue."""
        return await asyncio.to_thread(functools.partial(self.keys.create, name=name, admin=admin))

    async def remove_key(self, id_or_name: str) -> ApiKey:
        """Raises ResourceNotFound."""
        return await asyncio.to_thread(self.keys.remove, id_or_name)

    def _versions_changed(self, name: str) -> None:
        """After ``$LATEST`` or the published versions changed: admission's reservation, and
        idle sandboxes of versions that are gone retire (busy ones when released)."""
        fn = self.registry.get(name)
        state = self.warm.state(name)
        self.admission.set_reserved(name, fn.latest.config.concurrency)
        self.warm.retire_idle_except(state, fn.live_keys())
        for listener in self.listeners:
            listener.on_deploy(name, fn.latest.number, True)

    # -- for the async worker --------------------------------------------------------------

    async def run_event(
        self, name: str, qualifier: str | None, payload: bytes, event_id: str
    ) -> dict[str, Any]:
        """One attempt of an accepted async event (the event id is its request id)."""
        version = self.registry.get(name).version(qualifier)
        result = await self.run(version, payload, request_id=event_id, qualifier=qualifier)
        # Destinations (lambdad/destinations.py) build their record from all of it.
        return {
            "error": result.error,
            "result": result.result,
            "function_error": result.function_error,
            "executed_version": result.executed_version,
        }


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _view(state: FunctionState[Sandbox]) -> FunctionStatsView:
    warm, initializing, idle, frozen = state.counts()
    return FunctionStatsView(
        name=state.name,
        stats=state.stats.to_wire(),
        sandboxes=SandboxCounts(warm, initializing, idle, frozen, live=len(state.sandboxes)),
    )


def _layer_ref(ref: str) -> tuple[str, int]:
    """A layer version ARN or ``NAME:VERSION`` -> (name, version)."""
    if ref.startswith("arn:"):
        return parse_layer_version_arn(ref)
    name, _, number = ref.rpartition(":")
    return name, int(number)
