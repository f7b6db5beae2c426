"""The socket front's queue, event-source mapping and destination ops (docs/protocol.md).

Added to :data:`lambdad.frontends.unix.OPS` by that module; each op takes the front (for its
service), the request's arguments and the peer, like the ops defined there. The components
they call are the daemon's (``service.components``: ``queues``, ``destinations``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from lambdad.destinations import Destinations, InvokeConfig
from lambdad.errors import InvalidParameterValue, ServiceError
from lambdad.model import Caller
from lambdad.queues.mapping import DEFAULT_BATCH, QueueTriggers, check_settings
from lambdad.queues.store import (
    DEFAULT_RETENTION_S,
    DEFAULT_VISIBILITY_S,
    MAX_RECEIVE,
    OutgoingMessage,
    QueueSettings,
    parse_queue_ref,
)
from lambdad.service import Service

QueueOp = Callable[[Any, dict[str, Any], Caller | None], Awaitable[dict[str, Any]]]

def _queues(front: Any) -> QueueTriggers:
    service: Service = front.service
    component = service.components.get("queues")
    if not isinstance(component, QueueTriggers):
        raise ServiceError("queues are not running in this daemon")
    return component


def _destinations(front: Any) -> Destinations:
    service: Service = front.service
    component = service.components.get("destinations")
    if not isinstance(component, Destinations):
        raise ServiceError("destinations are not running in this daemon")
    return component


def _string(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidParameterValue(f"{key} must be a non-empty string, got {value!r}", field=key)
    return value


async def queue_create(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    settings = QueueSettings.make(
        args.get("name"),
        args.get("visibility_timeout_s", DEFAULT_VISIBILITY_S),
        args.get("retention_s", DEFAULT_RETENTION_S),
        args.get("max_receive_count"),
        args.get("dead_letter"),
    )
    return {"queue": (await _queues(front).queues.create(settings)).to_wire()}


async def queue_delete(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    name = parse_queue_ref(args.get("name"))
    triggers = _queues(front)
    users = [m.name for m in triggers.list(source=name)]
    if users:
        from lambdad.errors import ResourceConflict

        raise ResourceConflict(
            f"queue {name!r} is the source of event source mapping(s) {', '.join(users)}",
            queue=name,
        )
    await triggers.queues.delete_queue(name)
    return {"deleted": name}


async def queue_send(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    name = parse_queue_ref(args.get("name"))
    message = OutgoingMessage.make(args.get("body"), args.get("attributes"), args.get("delay_s", 0))
    return {"message_id": await _queues(front).queues.send(name, message)}


async def queue_list(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    return {"queues": await _queues(front).queues.list()}


async def queue_purge(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    name = parse_queue_ref(args.get("name"))
    return {"purged": await _queues(front).queues.purge(name)}


async def queue_receive(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    """Read and delete up to ``max`` visible messages (e.g. from a dead-letter queue)."""
    name = parse_queue_ref(args.get("name"))
    limit = args.get("max", 1)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RECEIVE:
        raise InvalidParameterValue(
            f"max must be an integer from 1 to {MAX_RECEIVE}, got {limit!r}", field="max"
        )
    store = _queues(front).queues
    messages = await store.receive(name, limit)
    await store.delete([m.receipt for m in messages])
    return {"messages": [m.to_wire() for m in messages]}


async def mapping_create(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    settings = check_settings(
        args.get("name"),
        args.get("function"),
        args.get("queue"),
        batch_size=args.get("batch_size", DEFAULT_BATCH),
        window_s=args.get("window_s", 0.0),
        report_batch_item_failures=args.get("report_batch_item_failures", False),
        max_concurrency=args.get("max_concurrency"),
        enabled=args.get("enabled", True),
    )
    triggers = _queues(front)
    return {"mapping": triggers.describe(await triggers.create(settings))}


async def mapping_get(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    triggers = _queues(front)
    return {"mapping": triggers.describe(triggers.get(_string(args, "name")))}


async def mapping_list(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    triggers = _queues(front)
    function = args.get("function")
    if function is not None and not isinstance(function, str):
        raise InvalidParameterValue("function must be a string", field="function")
    return {"mappings": [triggers.describe(m) for m in triggers.list(function)]}


UPDATABLE: Final = (
    "function", "batch_size", "window_s", "report_batch_item_failures", "max_concurrency",
    "enabled",
)  # fmt: skip


async def mapping_update(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    triggers = _queues(front)
    changes = {k: args[k] for k in UPDATABLE if k in args}
    updated = await triggers.update(_string(args, "name"), **changes)
    return {"mapping": triggers.describe(updated)}


async def mapping_delete(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    deleted = await _queues(front).delete(_string(args, "name"))
    return {"deleted": deleted.uuid, "name": deleted.name}


async def destination_set(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    config = InvokeConfig.make(
        args.get("function"),
        args.get("on_success"),
        args.get("on_failure"),
        args.get("max_retries"),
        args.get("max_age_s"),
    )
    return {"config": (await _destinations(front).put(config)).to_wire()}


async def destination_get(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    destinations = _destinations(front)
    function = args.get("function")
    if function is None:
        return {"configs": [c.to_wire() for c in destinations.configs.values()],
                "stats": destinations.stats()}  # fmt: skip
    if not isinstance(function, str):
        raise InvalidParameterValue("function must be a string", field="function")
    return {"config": destinations.get(function).to_wire(), "stats": destinations.stats()}


async def destination_delete(
    front: Any, args: dict[str, Any], peer: Caller | None
) -> dict[str, Any]:
    function = _string(args, "function")
    await _destinations(front).delete(function)
    return {"deleted": function}


QUEUE_OPS: Final[dict[str, QueueOp]] = {
    "queue_create": queue_create,
    "queue_delete": queue_delete,
    "queue_send": queue_send,
    "queue_list": queue_list,
    "queue_purge": queue_purge,
    "queue_receive": queue_receive,
    "mapping_create": mapping_create,
    "mapping_get": mapping_get,
    "mapping_list": mapping_list,
    "mapping_update": mapping_update,
    "mapping_delete": mapping_delete,
    "destination_set": destination_set,
    "destination_get": destination_get,
    "destination_delete": destination_delete,
}
