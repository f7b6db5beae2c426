"""Triggers (event sources): persisted bindings of an event source to a function.

* :mod:`~lambdad.triggers.store` — the records and their settings, persisted;
* :mod:`~lambdad.triggers.manager` — :class:`Triggers`, the component (counters, schedules);
* :mod:`~lambdad.triggers.expressions` — EventBridge ``rate``/``cron``/``at`` (pure);
* :mod:`~lambdad.triggers.routes` — HTTP API route keys and matching (pure);
* :mod:`~lambdad.triggers.apigw` — API Gateway events and response mapping (pure);
* :mod:`~lambdad.triggers.wire` — the socket's ``trigger_*`` ops.

The HTTP gateway that serves http and url triggers is a front,
:mod:`lambdad.frontends.gateway`. See docs/triggers-http.md and docs/triggers-schedules.md.
"""
