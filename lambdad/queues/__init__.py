"""Queues and event-source mappings (issue 16, docs/triggers-queues.md).

* :mod:`lambdad.queues.store` — the embedded durable queue (SQLite, SQS's semantics);
* :mod:`lambdad.queues.sources` — a mapping's view of a queue: embedded or NATS JetStream;
* :mod:`lambdad.queues.records` — SQS's event shape and Lambda's partial batch responses;
* :mod:`lambdad.queues.mapping` — the mappings and their pollers (a component).
"""
