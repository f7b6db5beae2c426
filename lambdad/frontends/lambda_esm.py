"""The Lambda API's event-source mapping and async-destination operations.

``CreateEventSourceMapping`` / ``GetEventSourceMapping`` / ``ListEventSourceMappings`` /
``UpdateEventSourceMapping`` / ``DeleteEventSourceMapping`` with a lambdad queue's ARN
(``arn:aws:sqs:REGION:000000000000:NAME``) or a ``nats://HOST:PORT/STREAM`` URL as
``EventSourceArn``; and ``PutFunctionEventInvokeConfig`` / ``UpdateFunctionEventInvokeConfig``
/ ``GetFunctionEventInvokeConfig`` / ``ListFunctionEventInvokeConfigs`` /
``DeleteFunctionEventInvokeConfig`` with a function or queue ARN as destination. Request and
response shapes are botocore's (``EventSourceMappingConfiguration``,
``FunctionEventInvokeConfig``); this module only translates, the work is the core's
(:mod:`lambdad.queues.mapping`, :mod:`lambdad.destinations`).

The Lambda API front adds them to its operation table with :func:`register`::

    register(handlers, backend)

where ``backend`` is a :class:`QueueBackend`: :class:`ComponentBackend` over the daemon's
components, or anything with the same coroutines (the tests drive a real daemon through its
socket client, which has them).

Differences from AWS, on purpose: only queue sources (no Kinesis, DynamoDB, Kafka, MQ);
``BisectBatchOnFunctionError``, ``FilterCriteria``, ``DestinationConfig`` of a mapping and the
stream-only fields are refused with InvalidParameterValueException rather than ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from lambdad.destinations import Destinations, InvokeConfig
from lambdad.frontends.http import Response
from lambdad.frontends.lambda_api_routes import (
    ApiError,
    Call,
    Handler,
    function_arn,
    json_body,
    json_response,
    parse_function_name,
    qualified,
)
from lambdad.queues.mapping import DEFAULT_BATCH, QueueTriggers, check_settings
from lambdad.queues.store import ACCOUNT_ID

if TYPE_CHECKING:
    from lambdad.frontends.lambda_api import Context

MAX_ITEMS: Final = 100  # ListEventSourceMappings' MaxItems: 1..10000, default 100
MAPPING_FIELDS: Final = frozenset(
    {"EventSourceArn", "FunctionName", "Enabled", "BatchSize", "MaximumBatchingWindowInSeconds",
     "FunctionResponseTypes", "ScalingConfig"}
)  # fmt: skip
INVOKE_CONFIG_FIELDS: Final = frozenset(
    {"MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"}
)


class QueueBackend(Protocol):
    """What these operations need: the socket ops' shapes (docs/protocol.md)."""

    async def create_mapping(
        self, name: str, function: str, queue: str, **settings: Any
    ) -> dict[str, Any]: ...
    async def get_mapping(self, name: str) -> dict[str, Any]: ...
    async def list_mappings(self, function: str | None = None) -> list[dict[str, Any]]: ...
    async def update_mapping(self, name: str, **changes: Any) -> dict[str, Any]: ...
    async def delete_mapping(self, name: str) -> None: ...
    async def set_destination(self, function: str, **settings: Any) -> dict[str, Any]: ...
    async def get_destination(self, function: str | None = None) -> dict[str, Any]: ...
    async def delete_destination(self, function: str) -> None: ...


class ComponentBackend:
    """:class:`QueueBackend` over the daemon's own components (in-process)."""

    def __init__(self, queues: QueueTriggers, destinations: Destinations) -> None:
        self.queues = queues
        self.destinations = destinations

    async def create_mapping(
        self, name: str, function: str, queue: str, **settings: Any
    ) -> dict[str, Any]:
        m = check_settings(name, function, queue, **settings)
        return self.queues.describe(await self.queues.create(m))

    async def get_mapping(self, name: str) -> dict[str, Any]:
        return self.queues.describe(self.queues.get(name))

    async def list_mappings(self, function: str | None = None) -> list[dict[str, Any]]:
        return [self.queues.describe(m) for m in self.queues.list(function)]

    async def update_mapping(self, name: str, **changes: Any) -> dict[str, Any]:
        return self.queues.describe(await self.queues.update(name, **changes))

    async def delete_mapping(self, name: str) -> None:
        await self.queues.delete(name)

    async def set_destination(self, function: str, **settings: Any) -> dict[str, Any]:
        return (await self.destinations.put(InvokeConfig.make(function, **settings))).to_wire()

    async def get_destination(self, function: str | None = None) -> dict[str, Any]:
        if function is None:
            return {"configs": [c.to_wire() for c in self.destinations.configs.values()]}
        return {"config": self.destinations.get(function).to_wire()}

    async def delete_destination(self, function: str) -> None:
        await self.destinations.delete(function)


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValueException", message)


def _source(arn: object) -> str:
    """EventSourceArn → the mapping's source (a queue name or a nats:// URL)."""
    if not isinstance(arn, str) or not arn:
        raise _invalid("EventSourceArn is required")
    if arn.startswith("nats://"):
        return arn
    parts = arn.split(":")
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "sqs":
        return parts[5]
    raise _invalid(
        f"EventSourceArn {arn!r}: lambdad maps queues only (arn:aws:sqs:REGION:{ACCOUNT_ID}:NAME "
        "or nats://HOST:PORT/STREAM)"
    )


def _settings(body: dict[str, Any], *, create: bool) -> dict[str, Any]:
    """The mapping settings a Create/Update body gives, in the socket op's names."""
    unknown = sorted(set(body) - MAPPING_FIELDS - ({"UUID"} if not create else set()))
    if unknown:
        raise _invalid(f"lambdad does not support {', '.join(unknown)} on queue mappings")
    out: dict[str, Any] = {}
    if "BatchSize" in body:
        out["batch_size"] = body["BatchSize"]
    if "MaximumBatchingWindowInSeconds" in body:
        out["window_s"] = body["MaximumBatchingWindowInSeconds"]
    if "Enabled" in body:
        out["enabled"] = body["Enabled"]
    if "FunctionResponseTypes" in body:
        types = body["FunctionResponseTypes"]
        if not isinstance(types, list) or any(t != "ReportBatchItemFailures" for t in types):
            raise _invalid(
                f"FunctionResponseTypes must be [] or ['ReportBatchItemFailures'], got {types!r}"
            )
        out["report_batch_item_failures"] = bool(types)
    if "ScalingConfig" in body:
        scaling = body["ScalingConfig"]
        if not isinstance(scaling, dict) or set(scaling) - {"MaximumConcurrency"}:
            raise _invalid("ScalingConfig takes MaximumConcurrency only")
        out["max_concurrency"] = scaling.get("MaximumConcurrency")
    return out


def mapping_doc(m: dict[str, Any], region: str, state: str | None = None) -> dict[str, Any]:
    """EventSourceMappingConfiguration."""
    counters = m["counters"]
    if counters.get("last_error"):
        last = f"PROBLEM: {counters['last_error']}"
    elif counters.get("batches"):
        last = "OK"
    else:
        last = "No records processed"
    doc: dict[str, Any] = {
        "UUID": m["uuid"],
        "BatchSize": m["batch_size"],
        "MaximumBatchingWindowInSeconds": int(m["window_s"]),
        "EventSourceArn": m["source_arn"],
        "FunctionArn": function_arn(region, m["function"], m["qualifier"]),
        "LastModified": m["last_modified"],
        "LastProcessingResult": last,
        "State": state or ("Enabled" if m["enabled"] else "Disabled"),
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": ["ReportBatchItemFailures"]
        if m["report_batch_item_failures"] else [],
    }  # fmt: skip
    if m["max_concurrency"] is not None:
        doc["ScalingConfig"] = {"MaximumConcurrency": m["max_concurrency"]}
    return doc


def _destination_arn(target: str | None, region: str) -> str | None:
    if target is None:
        return None
    kind, _, name = target.partition(":")
    if kind == "fn":
        return function_arn(region, name)
    return f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"


def invoke_config_doc(c: dict[str, Any], region: str) -> dict[str, Any]:
    """FunctionEventInvokeConfig."""
    destinations: dict[str, Any] = {}
    for key, field in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
        arn = _destination_arn(c[field], region)
        destinations[key] = {"Destination": arn} if arn else {}
    doc: dict[str, Any] = {
        "LastModified": c["last_modified"],
        "FunctionArn": function_arn(region, c["function"], "$LATEST"),
        "DestinationConfig": destinations,
    }
    if c["max_retries"] is not None:
        doc["MaximumRetryAttempts"] = c["max_retries"]
    if c["max_age_s"] is not None:
        doc["MaximumEventAgeInSeconds"] = c["max_age_s"]
    return doc


def _invoke_settings(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - INVOKE_CONFIG_FIELDS)
    if unknown:
        raise _invalid(f"unknown field(s) {', '.join(unknown)}")
    out: dict[str, Any] = {}
    if "MaximumRetryAttempts" in body:
        out["max_retries"] = body["MaximumRetryAttempts"]
    if "MaximumEventAgeInSeconds" in body:
        out["max_age_s"] = body["MaximumEventAgeInSeconds"]
    config = body.get("DestinationConfig")
    if config is not None:
        if not isinstance(config, dict) or set(config) - {"OnSuccess", "OnFailure"}:
            raise _invalid("DestinationConfig takes OnSuccess and OnFailure")
        for key, field in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
            if key in config:
                target = config[key]
                if not isinstance(target, dict):
                    raise _invalid(f"DestinationConfig.{key} must be {{Destination: ARN}}")
                out[field] = target.get("Destination")
    return out


class EsmOperations:
    def __init__(self, backend: QueueBackend) -> None:
        self.backend = backend

    # -- event-source mappings --------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        body = json_body(call.request)
        source = _source(body.get("EventSourceArn"))
        fn = body.get("FunctionName")
        if not isinstance(fn, str):
            raise _invalid("FunctionName is required")
        name, qualifier = parse_function_name(fn)
        settings = _settings(body, create=True)
        settings.setdefault("batch_size", DEFAULT_BATCH)
        mapping_name = "esm-" + call.request_id  # the API names mappings by UUID only
        function = f"{name}:{qualifier}" if qualifier else name
        m = await self.backend.create_mapping(mapping_name, function, source, **settings)
        return json_response(202, mapping_doc(m, call.region, "Creating"))

    async def get(self, call: Call) -> Response:
        m = await self.backend.get_mapping(call.match.params["UUID"])
        return json_response(200, mapping_doc(m, call.region))

    async def list(self, call: Call) -> Response:
        fn = call.match.query_one("FunctionName")
        arn = call.match.query_one("EventSourceArn")
        name = parse_function_name(fn)[0] if fn is not None else None
        items = await self.backend.list_mappings(name)
        if arn is not None:
            items = [m for m in items if m["source_arn"] == arn]
        raw = call.match.query_one("MaxItems")
        limit = MAX_ITEMS
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
                raise _invalid(f"MaxItems must be from 1 to 10000, got {raw!r}")
            limit = int(raw)
        marker = call.match.query_one("Marker")
        if marker is not None:
            try:
                start = base64.urlsafe_b64decode(marker.encode()).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _invalid(f"Invalid Marker: {marker!r}") from None
            items = [m for m in items if m["uuid"] >= start]
        items.sort(key=lambda m: m["uuid"])
        doc: dict[str, Any] = {
            "EventSourceMappings": [mapping_doc(m, call.region) for m in items[:limit]]
        }
        if len(items) > limit:
            doc["NextMarker"] = base64.urlsafe_b64encode(items[limit]["uuid"].encode()).decode()
        return json_response(200, doc)

    async def update(self, call: Call) -> Response:
        body = json_body(call.request)
        changes = _settings(body, create=False)
        if "FunctionName" in body:
            name, qualifier = parse_function_name(str(body["FunctionName"]))
            changes["function"] = f"{name}:{qualifier}" if qualifier else name
        m = await self.backend.update_mapping(call.match.params["UUID"], **changes)
        return json_response(202, mapping_doc(m, call.region, "Updating"))

    async def delete(self, call: Call) -> Response:
        m = await self.backend.get_mapping(call.match.params["UUID"])
        await self.backend.delete_mapping(m["uuid"])
        return json_response(202, mapping_doc(m, call.region, "Deleting"))

    # -- async settings and destinations ----------------------------------------------------

    def _function(self, call: Call) -> str:
        name, qualifier = qualified(call.match)
        if qualifier not in (None, "$LATEST"):
            raise _invalid("lambdad keeps one EventInvokeConfig per function ($LATEST)")
        return name

    async def put_invoke_config(self, call: Call) -> Response:
        function = self._function(call)
        settings = _invoke_settings(json_body(call.request))
        c = await self.backend.set_destination(function, **settings)
        return json_response(200, invoke_config_doc(c, call.region))

    async def update_invoke_config(self, call: Call) -> Response:
        """Update = Put of the fields given over the ones already set."""
        function = self._function(call)
        try:
            old = (await self.backend.get_destination(function))["config"]
            merged = {k: old[k] for k in ("on_success", "on_failure", "max_retries", "max_age_s")}
        except Exception as exc:
            if getattr(exc, "type", None) != "ResourceNotFound":
                raise
            merged = {}
        merged.update(_invoke_settings(json_body(call.request)))
        c = await self.backend.set_destination(function, **merged)
        return json_response(200, invoke_config_doc(c, call.region))

    async def get_invoke_config(self, call: Call) -> Response:
        c = (await self.backend.get_destination(self._function(call)))["config"]
        return json_response(200, invoke_config_doc(c, call.region))

    async def list_invoke_configs(self, call: Call) -> Response:
        function = parse_function_name(call.match.params["FunctionName"])[0]
        configs = (await self.backend.get_destination(None))["configs"]
        doc = {
            "FunctionEventInvokeConfigs": [
                invoke_config_doc(c, call.region) for c in configs if c["function"] == function
            ]
        }
        return json_response(200, doc)

    async def delete_invoke_config(self, call: Call) -> Response:
        await self.backend.delete_destination(self._function(call))
        return Response(204)


def handlers(backend: QueueBackend) -> dict[str, Handler]:
    """Operation name → handler, for the Lambda API's operation table."""
    ops = EsmOperations(backend)
    return {
        "CreateEventSourceMapping": ops.create,
        "GetEventSourceMapping": ops.get,
        "ListEventSourceMappings": ops.list,
        "UpdateEventSourceMapping": ops.update,
        "DeleteEventSourceMapping": ops.delete,
        "PutFunctionEventInvokeConfig": ops.put_invoke_config,
        "UpdateFunctionEventInvokeConfig": ops.update_invoke_config,
        "GetFunctionEventInvokeConfig": ops.get_invoke_config,
        "ListFunctionEventInvokeConfigs": ops.list_invoke_configs,
        "DeleteFunctionEventInvokeConfig": ops.delete_invoke_config,
    }


def register(table: MutableMapping[str, Handler], backend: QueueBackend) -> None:
    """Add the event-source mapping and EventInvokeConfig operations to an operation table."""
    table.update(handlers(backend))


def setup(ctx: Context) -> None:
    """The Lambda API front's extension hook (lambdad.frontends.lambda_api.EXTENSIONS): the
    operations over the daemon's own queue and destination components."""
    components = ctx.service.components
    queues, destinations = components.get("queues"), components.get("destinations")
    if isinstance(queues, QueueTriggers) and isinstance(destinations, Destinations):
        register(ctx.handlers, ComponentBackend(queues, destinations))
