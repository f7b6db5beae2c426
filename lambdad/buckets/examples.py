"""Buckets and s3 triggers of the examples ``lambdad serve --examples DIR`` deploys.

An example directory may hold a ``buckets.json``::

    {"buckets": ["uploads", "thumbnails"],
     "triggers": [{"name": "on-upload", "bucket": "uploads", "suffix": ".jpg"}]}

:func:`prepare` creates the buckets that do not exist yet (before the function's deploy, so
that its ``bucket:NAME`` mounts resolve); :func:`bind` adds the s3 triggers, bound to the
example's function, that do not exist yet (after it). Both are idempotent across restarts.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lambdad.buckets.component import of
from lambdad.buckets.wire import with_bucket_mounts
from lambdad.service import Service
from lambdad.triggers.manager import of as triggers_of

FILE = "buckets.json"


def _read(path: str) -> dict[str, Any] | None:
    name = os.path.join(path, FILE)
    if not os.path.isfile(name):
        return None
    with open(name) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{name}: not a JSON object")
    return data


async def prepare(service: Service, path: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Create the example's buckets; its function settings with ``bucket:`` mounts resolved."""
    data = _read(path)
    if data is not None:
        buckets = of(service)
        for name in data.get("buckets", []):
            if name not in buckets.store.buckets:
                await buckets.create(name)
    return with_bucket_mounts(service, settings) if "mounts" in settings else settings


def bind(service: Service, path: str, function: str) -> list[str]:
    """Add the example's s3 triggers (bound to ``function``); the names added."""
    data = _read(path)
    if data is None:
        return []
    triggers = triggers_of(service)
    added = []
    for spec in data.get("triggers", []):
        spec = dict(spec)
        name = spec.pop("name")
        if name not in triggers.store.triggers:
            triggers.add("s3", name, function, None, spec)
            added.append(name)
    return added


__all__ = ["bind", "prepare"]
