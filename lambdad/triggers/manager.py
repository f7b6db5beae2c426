"""The triggers component: the trigger records, their live counters, and the schedules' clocks.

:class:`Triggers` is a :class:`~lambdad.component.Component` the daemon starts after the
async worker. It owns the :class:`~lambdad.triggers.store.TriggerStore`; the socket front's
``trigger_*`` ops and the gateway front reach it as ``service.triggers`` (:func:`of`).

Schedules: each enabled schedule is one task that sleeps until its next scheduled time and
then *fires*: it stores the Scheduled Event (or the configured input) as an async event in the
durable store (:mod:`lambdad.events`), whose worker runs it with Lambda's retries and dead
letters. The event's id is derived from the trigger's creation id and the scheduled time
(uuid5), and the store ignores a second put of an id it holds, so a fire repeated after a
``kill -9`` (stored, but ``last_fire`` not yet written) is the same event, not a second one:
exactly one event per scheduled time. ``last_fire`` is written after every fire; at start,
the times missed while the daemon was down are skipped (``catch_up = "none"``), or the latest
of them (``"last"``) or all of them (``"all"``, at most :data:`MAX_CATCH_UP`) are fired.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import (
    InvalidParameterValue,
    LambdadError,
    ResourceConflict,
    ResourceNotFound,
    ServiceError,
)
from lambdad.service import Service
from lambdad.triggers import apigw, expressions, routes
from lambdad.triggers.store import Counters, Trigger, TriggerStore, check_name, check_settings

log = logging.getLogger("lambdad")

REGION: Final = "us-east-1"
MAX_CATCH_UP: Final = 1000  # catch_up = "all": fires replayed at most, the latest ones
EVENT_NAMESPACE: Final = uuid.UUID("5b0e7a1c-8f0e-4d6b-9a58-1d2f1f8f2f7e")
URL_PREFIX: Final = "/lambda-url/"
S3_PUSH_PREFIX: Final = "/s3-events/"  # + trigger name: MinIO / Ceph RGW push (buckets/push.py)


def of(service: Service) -> Triggers:
    """The daemon's :class:`Triggers` (set as ``service.triggers`` when it is built)."""
    triggers = getattr(service, "triggers", None)
    if not isinstance(triggers, Triggers):
        raise ServiceError("triggers are not available in this daemon")
    return triggers


def fire_id(trigger: Trigger, scheduled: float) -> str:
    """The idempotency key of one fire: the same trigger and scheduled time, the same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{trigger.uid}/{scheduled:.3f}"))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(trigger: Trigger, event_id: str, scheduled: float) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" for one fire."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": apigw.ACCOUNT_ID,
        "time": iso(scheduled),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{apigw.ACCOUNT_ID}:rule/{trigger.name}"],
        "detail": {},
    }


class Triggers(Component):
    name = "triggers"

    def __init__(self, config: DaemonConfig, service: Service) -> None:
        self.config = config
        self.service = service
        self.store = TriggerStore(config.state_dir)
        self.counters: dict[str, Counters] = {t.name: Counters() for t in self.store}
        self._clocks: dict[str, asyncio.Task[None]] = {}
        self._routes: list[tuple[routes.Route, object]] | None = None
        self._started = False
        for line in self.store.load_errors:
            log.warning("skipped a damaged trigger record: %s", line)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        for trigger in self.store:
            if trigger.enabled and trigger.function not in self.service.registry.functions:
                self._disable(trigger, f"function {trigger.function!r} does not exist")
            self._start_clock(trigger)

    async def stop(self) -> None:
        self._started = False
        clocks = list(self._clocks.values())
        self._clocks.clear()
        for task in clocks:
            task.cancel()
        await asyncio.gather(*clocks, return_exceptions=True)

    def on_delete(self, function: str) -> None:
        """A deleted function's triggers are disabled (kept, and listed with the reason):
        re-deploying the function and ``trigger enable`` brings them back."""
        for trigger in self.store:
            if trigger.function == function and trigger.enabled:
                self._disable(trigger, f"function {function!r} was deleted")
                log.info("trigger %r disabled: function %r was deleted", trigger.name, function)

    # -- operations ------------------------------------------------------------------------

    def add(
        self, kind: str, name: str, function: str, qualifier: str | None, settings: Any
    ) -> dict[str, Any]:
        """Create a trigger. Raises InvalidParameterValue, ResourceNotFound (function or
        version), ResourceConflict (name, route or function URL taken)."""
        check_name(name)
        check_name(function, "function")
        if qualifier is not None and not isinstance(qualifier, str):
            raise InvalidParameterValue("qualifier must be a string", field="qualifier")
        if kind == "s3" and isinstance(settings, dict) and settings.get("push"):
            settings = {"secret": secrets.token_urlsafe(24), **settings}
        checked = check_settings(kind, settings)
        self.service.registry.get(function).version(qualifier)  # raises ResourceNotFound
        if kind == "s3" and not checked["push"]:
            self._check_bucket(checked["bucket"])
        for other in self.store:
            if (
                kind == "http"
                and other.kind == "http"
                and other.settings["route"] == checked["route"]
                and other.settings["api"] == checked["api"]
            ):
                raise ResourceConflict(
                    f"route {checked['route']!r} is taken by trigger {other.name!r}",
                    trigger=other.name,
                )
            if (
                kind == "url"
                and other.kind == "url"
                and (other.function, other.qualifier) == (function, qualifier)
            ):
                raise ResourceConflict(
                    f"{function!r} already has a function URL (trigger {other.name!r})",
                    trigger=other.name,
                )
        trigger = self.store.add(name, kind, function, qualifier, checked)
        self.counters[name] = Counters()
        self._routes = None
        self._start_clock(trigger)
        return self.describe(trigger)

    def _check_bucket(self, name: str) -> None:
        """Raises ResourceNotFound unless bucket ``name`` exists (the buckets component is
        reached through ``service.components``: it imports this package, not the reverse)."""
        buckets = self.service.components.get("buckets")
        store = getattr(buckets, "store", None)
        if store is None or name not in getattr(store, "buckets", {}):
            raise ResourceNotFound(f"no bucket named {name!r}", bucket=name)

    def update_settings(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some of a trigger's settings (checked as a whole). Raises like ``add``."""
        trigger = self.store.get(name)
        merged = {**trigger.settings, **changes}
        trigger.settings = check_settings(trigger.kind, merged)
        self.store.save(trigger)
        self._routes = None
        return self.describe(trigger)

    def remove(self, name: str) -> dict[str, Any]:
        trigger = self.store.remove(name)
        self._stop_clock(name)
        self.counters.pop(name, None)
        self._routes = None
        return {"removed": trigger.name}

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        trigger = self.store.get(name)
        if enabled:
            self.service.registry.get(trigger.function).version(trigger.qualifier)
            trigger.enabled = True
            trigger.disabled_reason = None
            self.store.save(trigger)
            self._start_clock(trigger)
        else:
            self._disable(trigger, "disabled")
        self._routes = None
        return self.describe(trigger)

    def list(self, function: str | None = None) -> builtins.list[dict[str, Any]]:
        return [self.describe(t) for t in self.store if function in (None, t.function)]

    def describe(self, trigger: Trigger) -> dict[str, Any]:
        body = trigger.to_dict()
        del body["uid"]
        body["counters"] = self.counters.setdefault(trigger.name, Counters()).to_wire()
        if trigger.kind == "url":
            body["url"] = self.function_url(trigger)
        if trigger.kind == "s3" and trigger.settings["push"]:
            body["endpoint"] = self.push_endpoint(trigger)
        if trigger.kind == "schedule":
            nxt = self.next_fire(trigger) if trigger.enabled else None
            body["next_fire"] = None if nxt is None else iso(nxt)
        return body

    def function_url(self, trigger: Trigger) -> str | None:
        address = self.service.addresses.get("gateway")
        if not address:
            return None
        return f"http://{address}{URL_PREFIX}{trigger.target}/"

    def push_endpoint(self, trigger: Trigger) -> str | None:
        """Where an S3-compatible server POSTs this push trigger's notifications."""
        address = self.service.addresses.get("gateway")
        return None if not address else f"http://{address}{S3_PUSH_PREFIX}{trigger.name}"

    def push_trigger(self, name: str) -> Trigger | None:
        trigger = self.store.triggers.get(name)
        if trigger is None or trigger.kind != "s3" or not trigger.settings["push"]:
            return None
        return trigger

    def counters_wire(self) -> dict[str, dict[str, Any]]:
        return {
            t.name: {
                "kind": t.kind,
                "function": t.function,
                "enabled": t.enabled,
                **self.counters.setdefault(t.name, Counters()).to_wire(),
            }
            for t in self.store
        }

    # -- for the gateway -------------------------------------------------------------------

    def http_routes(self) -> builtins.list[tuple[routes.Route, object]]:
        """(route, trigger) of every enabled http trigger (cached until a change)."""
        if self._routes is None:
            self._routes = [
                (routes.parse(t.settings["route"]), t)
                for t in self.store
                if t.kind == "http" and t.enabled
            ]
        return self._routes

    def url_trigger(self, target: str) -> Trigger | None:
        for t in self.store:
            if t.kind == "url" and t.enabled and t.target == target:
                return t
        return None

    # -- schedules -------------------------------------------------------------------------

    def _disable(self, trigger: Trigger, reason: str) -> None:
        trigger.enabled = False
        trigger.disabled_reason = reason
        self.store.save(trigger)
        self._stop_clock(trigger.name)
        self._routes = None

    def _schedule(self, trigger: Trigger) -> expressions.Schedule:
        s = trigger.settings
        return expressions.parse(s["expression"], s["timezone"], anchor=trigger.created)

    def next_fire(self, trigger: Trigger, after: float | None = None) -> float | None:
        after = max(time.time(), trigger.last_fire or 0.0) if after is None else after
        nxt = self._schedule(trigger).next_after(datetime.fromtimestamp(after, UTC))
        return None if nxt is None else nxt.timestamp()

    def _start_clock(self, trigger: Trigger) -> None:
        if not self._started or trigger.kind != "schedule" or not trigger.enabled:
            return
        if trigger.name not in self._clocks:
            self._clocks[trigger.name] = asyncio.ensure_future(self._clock(trigger))

    def _stop_clock(self, name: str) -> None:
        task = self._clocks.pop(name, None)
        if task is not None:
            task.cancel()

    async def _clock(self, trigger: Trigger) -> None:
        schedule = self._schedule(trigger)
        now = time.time()
        since = trigger.last_fire if trigger.last_fire is not None else trigger.created
        missed = schedule.fires_between(
            datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(now, UTC), MAX_CATCH_UP
        )
        catch_up = trigger.settings["catch_up"]
        if missed and catch_up == "none" and trigger.last_fire is not None:
            log.info(
                "schedule %r: skipped %d fire(s) missed while stopped (catch_up = none)",
                trigger.name,
                len(missed),
            )
        replay = missed if catch_up == "all" else missed[-1:] if catch_up == "last" else []
        for missed_at in replay:
            await self._fire(trigger, missed_at.timestamp())
        after = now
        while True:
            nxt = schedule.next_after(datetime.fromtimestamp(after, UTC))
            if nxt is None:
                return  # an at() that fired, or a cron whose years are over
            scheduled = nxt.timestamp()
            # The wall clock is re-read after each wake-up: a sleep is on the loop's
            # monotonic clock, and a wall-clock step must not fire early.
            while (delay := scheduled - time.time()) > 0:
                await asyncio.sleep(min(delay, 3600.0))
            if self.service.draining:
                return  # stopping: this time is missed, as if the daemon were down (catch_up)
            await self._fire(trigger, scheduled)
            after = scheduled

    async def _fire(self, trigger: Trigger, scheduled: float) -> None:
        counters = self.counters.setdefault(trigger.name, Counters())
        counters.received += 1
        lag_ms = (time.time() - scheduled) * 1000
        counters.lag_ms = round(lag_ms, 3)
        counters.lags_ms = [*counters.lags_ms[-999:], lag_ms]
        event_id = fire_id(trigger, scheduled)
        try:
            if trigger.settings["overlap"] == "skip" and trigger.last_fire is not None:
                previous = await self.service.events.state(fire_id(trigger, trigger.last_fire))
                if previous in ("pending", "running"):
                    counters.last_error = f"skipped {iso(scheduled)}: the previous run is going"
                    await self._mark_fired(trigger, scheduled)
                    return
            self.service.registry.get(trigger.function).version(trigger.qualifier)
            text = trigger.settings["input"]
            if text is None:
                text = json.dumps(scheduled_event(trigger, event_id, scheduled))
            await self.service.enqueue(
                trigger.function, trigger.qualifier, text.encode(), event_id=event_id
            )
            counters.invoked += 1
        except LambdadError as exc:
            counters.failed += 1
            counters.last_error = f"{exc.type}: {exc.message}"
        await self._mark_fired(trigger, scheduled)

    async def _mark_fired(self, trigger: Trigger, scheduled: float) -> None:
        trigger.last_fire = scheduled
        await asyncio.to_thread(self.store.save, trigger)  # an fsync: off the loop


__all__ = ["Triggers", "fire_id", "of", "scheduled_event"]
