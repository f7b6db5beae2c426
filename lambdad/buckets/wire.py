"""The socket's ``bucket_*`` operations (docs/protocol.md) and ``bucket:`` mounts at deploy.

Added to the unix front's table like the trigger ops; who may call each is the front's ACCESS
table (lambdad/frontends/unix.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from lambdad.buckets.component import of
from lambdad.errors import InvalidParameterValue
from lambdad.model import Caller, wire_name
from lambdad.service import Service

WireOp = Callable[[Any, dict[str, Any], Caller | None], Awaitable[dict[str, Any]]]
MOUNT_PREFIX: Final = "bucket:"


async def bucket_create(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    buckets = of(front.service)
    return {"bucket": buckets.describe(await buckets.create(args.get("name"), args.get("path")))}


async def bucket_list(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    buckets = of(front.service)
    return {"buckets": [buckets.describe(b) for b in buckets.store]}


async def bucket_delete(front: Any, args: dict[str, Any], peer: Caller | None) -> dict[str, Any]:
    bucket = await of(front.service).remove(wire_name(args))
    return {"deleted": bucket.name}


def resolve_mounts(service: Service, mounts: Any) -> Any:
    """``bucket:NAME:/mnt/X[:ro]`` -> ``DIR:/mnt/X[:ro]`` with the bucket's directory; other
    entries unchanged (checked by the deploy). Raises InvalidParameterValue (no such bucket)."""
    if not isinstance(mounts, list):
        return mounts
    resolved: list[Any] = []
    for spec in mounts:
        if isinstance(spec, str) and spec.startswith(MOUNT_PREFIX):
            name, sep, rest = spec[len(MOUNT_PREFIX) :].partition(":")
            if not sep or not rest:
                raise InvalidParameterValue(
                    f"a bucket mount looks like bucket:NAME:/mnt/NAME[:ro], got {spec!r}",
                    field="mounts",
                )
            bucket = of(service).store.buckets.get(name)
            if bucket is None:
                raise InvalidParameterValue(f"mount {spec!r}: no bucket named {name!r}",
                                            field="mounts")  # fmt: skip
            spec = f"{bucket.path}:{rest}"
        resolved.append(spec)
    return resolved


def with_bucket_mounts(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """A deploy's arguments with its ``bucket:`` mounts resolved."""
    if "mounts" not in args:
        return args
    return {**args, "mounts": resolve_mounts(service, args["mounts"])}


OPS: Final[dict[str, WireOp]] = {
    "bucket_create": bucket_create,
    "bucket_list": bucket_list,
    "bucket_delete": bucket_delete,
}

__all__ = ["OPS", "resolve_mounts", "with_bucket_mounts"]
