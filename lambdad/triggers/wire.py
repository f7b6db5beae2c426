"""The socket's ``trigger_*`` operations (docs/protocol.md), added to the unix front's table.

Each takes the front (for its ``service``), the request's args and the peer, like the front's
own ops; who may call each is the front's ACCESS table (lambdad/frontends/unix.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from lambdad.errors import InvalidParameterValue
from lambdad.model import Caller, wire_name
from lambdad.service import Service
from lambdad.triggers.manager import of


class HasService(Protocol):
    service: Service


WireOp = Callable[[Any, dict[str, Any], Caller | None], Awaitable[dict[str, Any]]]


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidParameterValue(f"{key} must be a non-empty string", field=key)
    return value


async def trigger_add(
    front: HasService, args: dict[str, Any], peer: Caller | None
) -> dict[str, Any]:
    qualifier = args.get("qualifier")
    trigger = of(front.service).add(
        _text(args, "kind"),
        wire_name(args),
        _text(args, "function"),
        qualifier,
        args.get("settings"),
    )
    return {"trigger": trigger}


async def trigger_list(
    front: HasService, args: dict[str, Any], peer: Caller | None
) -> dict[str, Any]:
    function = args.get("function")
    if function is not None and not isinstance(function, str):
        raise InvalidParameterValue("function must be a string", field="function")
    return {"triggers": of(front.service).list(function)}


async def trigger_delete(
    front: HasService, args: dict[str, Any], peer: Caller | None
) -> dict[str, Any]:
    return of(front.service).remove(wire_name(args))


async def trigger_enable(
    front: HasService, args: dict[str, Any], peer: Caller | None
) -> dict[str, Any]:
    return {"trigger": of(front.service).set_enabled(wire_name(args), True)}


async def trigger_disable(
    front: HasService, args: dict[str, Any], peer: Caller | None
) -> dict[str, Any]:
    return {"trigger": of(front.service).set_enabled(wire_name(args), False)}


OPS: Final[dict[str, WireOp]] = {
    "trigger_add": trigger_add,
    "trigger_list": trigger_list,
    "trigger_delete": trigger_delete,
    "trigger_enable": trigger_enable,
    "trigger_disable": trigger_disable,
}
__all__ = ["OPS", "counters"]


def counters(service: Service) -> dict[str, dict[str, Any]]:
    """Every trigger's live counters, for ``stats`` (empty when triggers are not built)."""
    triggers = getattr(service, "triggers", None)
    return {} if triggers is None else of(service).counters_wire()
