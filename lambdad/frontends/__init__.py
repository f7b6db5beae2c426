"""The fronts: ways into the core. Each is a module with a ``create(service, config)`` factory.

Like uvicorn's ``config.py``: :data:`FRONTS` maps a front's *name* to an import string, and the
daemon resolves them with :func:`load` — so the daemon imports no front by name, and no front
imports the daemon. A front depends only on :class:`lambdad.service.Service` (what it calls) and
:class:`lambdad.config.DaemonConfig` (how it is set up). A new front (the Lambda HTTP API, the
HTTP gateway) is one module plus one line here; its factory returns None when the
configuration does not ask for it.

Fronts are :class:`~lambdad.component.Component` s: the daemon starts them after the core is
up and stops them first, before it lets in-flight invocations drain.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.service import Service

FrontFactory = Callable[[Service, DaemonConfig], Component | None]

# Started in this order (stopped in reverse); the socket last, so that a client that can
# connect finds every other front already up.
FRONTS: Final[dict[str, str]] = {
    "metrics": "lambdad.frontends.metrics:create",
    "api": "lambdad.frontends.lambda_api:create",
    "gateway": "lambdad.frontends.gateway:create",
    "unix": "lambdad.frontends.unix:create",
}


def load(name: str) -> FrontFactory:
    """The factory of the front called ``name``. Raises KeyError for an unknown name."""
    module_name, _, attr = FRONTS[name].partition(":")
    factory: FrontFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def create_all(service: Service, config: DaemonConfig) -> list[Component]:
    """Every front the configuration asks for, in :data:`FRONTS` order."""
    fronts = []
    for name in FRONTS:
        front = load(name)(service, config)
        if front is not None:
            fronts.append(front)
    return fronts
