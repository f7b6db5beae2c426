"""Async destinations and per-function async settings (Lambda's EventInvokeConfig), and
recursive loop detection.

``lambdad destination set FUNCTION --on-success fn:F|queue:Q --on-failure fn:F|queue:Q
--max-retries N --max-age S`` (and the Lambda API's ``PutFunctionEventInvokeConfig``): when an
async event of FUNCTION succeeds, or fails for good (retries exhausted, or too old), Lambda's
*destination record* goes to another function (as an async event) or to an embedded queue:

    {"version": "1.0", "timestamp": "...Z",
     "requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "requestPayload": <the event>,
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError"?},
     "responsePayload": <the result, or the error>}

This is how one function triggers another. Each such link adds one *hop* to the event chain;
the chain's hop count and its origin (the function whose event started it) travel with the
event (the async store's ``hops`` / ``origin``, the queue's message columns). Past
:data:`MAX_HOPS` the next link is not made: the event is counted (``loops_stopped``) and a
warning names the chain's origin, as Lambda's recursive loop detection stops a loop after
about 16 invocations.

The settings are persisted in ``<state>/event-invoke-configs.json`` (temp file + fsync +
rename).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import InvalidParameterValue, LambdadError, ResourceNotFound
from lambdad.events import EventStore, FinalOutcome
from lambdad.functions import NAME_RE
from lambdad.queues.store import QUEUE_NAME_RE, REGION, OutgoingMessage, QueueStore
from lambdad.service import Service

log = logging.getLogger("lambdad")

MAX_HOPS: Final = 16  # Lambda stops a recursive loop after about 16 invocations
MAX_RETRIES: Final = 2  # MaximumRetryAttempts: 0..2
MIN_AGE_S: Final = 60  # MaximumEventAgeInSeconds: 60..21600
MAX_AGE_S: Final = 21600
ACCOUNT_ID: Final = "000000000000"


def function_arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def parse_destination(value: object, field: str) -> str | None:
    """``fn:NAME`` or ``queue:NAME`` (or a function / queue ARN, as the Lambda API gives
    them); None clears it. Returns the normalised ``fn:NAME`` / ``queue:NAME``.

    Raises:
        InvalidParameterValue: anything else.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParameterValue(f"{field} must be fn:NAME or queue:NAME", field=field)
    if value.startswith("arn:aws:lambda:"):
        parts = value.split(":")
        if len(parts) >= 7 and parts[5] == "function":
            value = "fn:" + parts[6]
    elif value.startswith("arn:aws:sqs:"):
        value = "queue:" + value.split(":")[-1]
    kind, _, name = value.partition(":")
    if kind == "fn" and NAME_RE.fullmatch(name):
        return value
    if kind == "queue" and QUEUE_NAME_RE.fullmatch(name):
        return value
    raise InvalidParameterValue(
        f"{field}: {value!r} is not fn:FUNCTION or queue:QUEUE (or a function / queue ARN)",
        field=field,
    )


@dataclass(frozen=True, slots=True)
class InvokeConfig:
    """One function's async settings (PutFunctionEventInvokeConfig)."""

    function: str
    on_success: str | None = None  # fn:NAME | queue:NAME
    on_failure: str | None = None
    max_retries: int | None = None  # MaximumRetryAttempts (0..2); None: the daemon's default
    max_age_s: int | None = None  # MaximumEventAgeInSeconds (60..21600); None: the default
    last_modified: float = 0.0

    @classmethod
    def make(
        cls,
        function: object,
        on_success: object = None,
        on_failure: object = None,
        max_retries: object = None,
        max_age_s: object = None,
    ) -> InvokeConfig:
        """Raises InvalidParameterValue naming the field."""
        if not isinstance(function, str) or not NAME_RE.fullmatch(function):
            raise InvalidParameterValue(f"bad function name {function!r}", field="function")
        if max_retries is not None and (
            isinstance(max_retries, bool)
            or not isinstance(max_retries, int)
            or not 0 <= max_retries <= MAX_RETRIES
        ):
            raise InvalidParameterValue(
                f"max_retries (MaximumRetryAttempts) must be 0, 1 or 2, got {max_retries!r}",
                field="max_retries",
            )
        if max_age_s is not None and (
            isinstance(max_age_s, bool)
            or not isinstance(max_age_s, int)
            or not MIN_AGE_S <= max_age_s <= MAX_AGE_S
        ):
            raise InvalidParameterValue(
                f"max_age_s (MaximumEventAgeInSeconds) must be an integer from {MIN_AGE_S} to "
                f"{MAX_AGE_S}, got {max_age_s!r}",
                field="max_age_s",
            )
        return cls(
            function,
            parse_destination(on_success, "on_success"),
            parse_destination(on_failure, "on_failure"),
            max_retries,
            max_age_s,
            time.time(),
        )

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def destination_record(outcome: FinalOutcome) -> dict[str, Any]:
    """Lambda's destination record for an event that ended."""
    qualifier = outcome.qualifier or "$LATEST"
    result = outcome.result
    executed = result.get("executed_version")
    response: dict[str, Any] = {
        "statusCode": 200,
        "executedVersion": "$LATEST" if executed in (None, "") or not outcome.qualifier
        else str(executed),
    }  # fmt: skip
    if result.get("error") is not None:
        response["functionError"] = result.get("function_error") or "Unhandled"
        payload: Any = dict(result["error"])
    else:
        payload = _json_or_text(result.get("result"))
    if outcome.condition == "EventAgeExceeded":
        response = {"statusCode": 0, "executedVersion": "$LATEST"}
        payload = None
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    record = {
        "version": "1.0",
        "timestamp": stamp,
        "requestContext": {
            "requestId": outcome.event_id,
            "functionArn": function_arn(outcome.function, qualifier),
            "condition": outcome.condition,
            "approximateInvokeCount": outcome.attempts,
        },
        "requestPayload": _json_or_text(outcome.payload),
        "responseContext": response,
    }
    if payload is not None:
        record["responsePayload"] = payload
    return record


def _json_or_text(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Destinations(Component):
    """Every function's async settings and destinations; routes finished async events."""

    name = "destinations"

    def __init__(self, config: DaemonConfig, service: Service, queues: QueueStore) -> None:
        self.config = config
        self.service = service
        self.events: EventStore = service.events
        self.queues = queues
        self.path = os.path.join(config.state_dir, "event-invoke-configs.json")
        self.configs: dict[str, InvokeConfig] = {}
        self.loops_stopped = 0  # chains stopped past MAX_HOPS
        self.delivered = 0  # records sent to a destination
        self.failed = 0  # records that could not be delivered (missing target ...)
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.configs = await asyncio.to_thread(self._load)
        self.events.invoke_config = self._invoke_config
        self.events.on_final = self.dispatch

    async def stop(self) -> None:
        self.events.on_final = None
        self.events.invoke_config = None

    def reload(self, config: DaemonConfig) -> None:
        self.config = config

    def on_delete(self, function: str) -> None:
        # Lambda deletes a function's EventInvokeConfig with the function.
        if self.configs.pop(function, None) is not None:
            self._save()  # a small file, once per function deletion

    # -- settings ---------------------------------------------------------------------------

    def _load(self) -> dict[str, InvokeConfig]:
        try:
            with open(self.path, encoding="utf-8") as f:
                docs = json.load(f)
        except FileNotFoundError:
            return {}
        known = {f.name for f in dataclasses.fields(InvokeConfig)}
        return {d["function"]: InvokeConfig(**{k: v for k, v in d.items() if k in known})
                for d in docs}  # fmt: skip

    def _save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump([c.to_wire() for c in self.configs.values()], f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _invoke_config(self, function: str) -> tuple[int | None, float | None]:
        c = self.configs.get(function)
        if c is None:
            return None, None
        return c.max_retries, None if c.max_age_s is None else float(c.max_age_s)

    def get(self, function: str) -> InvokeConfig:
        """Raises ResourceNotFound."""
        found = self.configs.get(function)
        if found is None:
            raise ResourceNotFound(
                f"The function {function} doesn't have an EventInvokeConfig", function=function
            )
        return found

    async def put(self, config: InvokeConfig) -> InvokeConfig:
        """Set (replace) a function's settings. Raises ResourceNotFound (the function, or a
        destination that does not exist)."""
        self.service.registry.get(config.function)
        for target in (config.on_success, config.on_failure):
            if target is None:
                continue
            kind, _, name = target.partition(":")
            if kind == "fn":
                self.service.registry.get(name)
            else:
                self.queues.get(name)
        async with self._lock:
            self.configs[config.function] = config
            await asyncio.to_thread(self._save)
        return config

    async def delete(self, function: str) -> None:
        self.get(function)
        async with self._lock:
            del self.configs[function]
            await asyncio.to_thread(self._save)

    def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed,
                "loops_stopped": self.loops_stopped, "last_error": self.last_error}  # fmt: skip

    # -- routing ------------------------------------------------------------------------------

    async def dispatch(self, outcome: FinalOutcome) -> None:
        """An async event ended: send its record where its function's settings say."""
        c = self.configs.get(outcome.function)
        if c is None:
            return
        target = c.on_success if outcome.condition == "Success" else c.on_failure
        if target is None:
            return
        hops = outcome.hops + 1
        origin = outcome.origin or outcome.function
        if hops > MAX_HOPS:
            self.loops_stopped += 1
            log.warning(
                "recursive loop detected: the event chain that started at function %r stopped "
                "after %d hops (at %s -> %s, event %s)",
                origin, MAX_HOPS, outcome.function, target, outcome.event_id,
            )  # fmt: skip
            return
        record = json.dumps(destination_record(outcome), separators=(",", ":")).encode()
        kind, _, name = target.partition(":")
        try:
            if kind == "fn":
                self.service.registry.get(name)
                await self.service.enqueue(name, None, record, hops=hops, origin=origin)
            else:
                message = OutgoingMessage(record, {}, 0.0, hops, origin)
                await self.queues.send(name, message)
        except LambdadError as exc:
            self.failed += 1
            self.last_error = f"{outcome.function} -> {target}: {exc.message}"
            log.warning("destination %s of %s: %s", target, outcome.function, exc.message)
            return
        self.delivered += 1
