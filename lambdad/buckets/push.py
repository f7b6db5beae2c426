"""S3 event notifications pushed by S3-compatible servers, received by the gateway.

``lambdad trigger add s3 NAME FUNCTION --push`` makes a *push trigger* with a secret; the
gateway then accepts ``POST /s3-events/NAME`` from:

* **MinIO's webhook target** (``notify_webhook``, ``endpoint=.../s3-events/NAME``,
  ``auth_token=SECRET``): MinIO sends ``Authorization: Bearer SECRET`` and a body
  ``{"EventName": ..., "Key": "bucket/key", "Records": [record]}``;
* **Ceph RGW's HTTP push** (a topic with ``push-endpoint=.../s3-events/NAME/SECRET``: RGW sets
  no header of its own, so the secret may be the path's last segment) and a body
  ``{"Records": [record]}``.

The function gets ``{"Records": [...]}`` with the records exactly as the server sent them
(``eventSource`` ``minio:s3`` or ``ceph:s3``, their own extra fields) as an async event through
the durable store, whose id is derived from the trigger and the body: a server's retry of the
same notification is not a second event. The answer is 200 once the event is stored, so the
server's own retry covers a refusal (429/503).

Pure with respect to HTTP: the gateway passes the request's parts and maps :class:`Answer`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

from lambdad.errors import LambdadError, ResourceNotFound, TooManyRequests
from lambdad.service import Service
from lambdad.triggers.manager import S3_PUSH_PREFIX, of
from lambdad.triggers.store import Counters

NAMESPACE: Final = uuid.UUID("3c1f0f5e-6a47-4d1b-8f5a-9d2e7b6c4a10")
MAX_RECORDS: Final = 1000


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def _secret_of(path_tail: str, authorization: str | None) -> tuple[str, str | None]:
    """(trigger name, secret given) from ``NAME[/SECRET]`` and an Authorization header."""
    name, _, in_path = path_tail.partition("/")
    given: str | None = in_path or None
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        given = token.strip() if scheme.lower() == "bearer" and token else authorization.strip()
    return name, given


async def accept(
    service: Service, method: str, path: str, authorization: str | None, body: bytes
) -> Answer:
    """Store one pushed notification for the push trigger that ``path`` names."""
    name, given = _secret_of(path[len(S3_PUSH_PREFIX) :].rstrip("/"), authorization)
    triggers = of(service)
    trigger = triggers.push_trigger(name)
    if trigger is None or not trigger.enabled:
        return Answer(404, {"message": "Not Found"})
    if method == "HEAD":  # MinIO's liveness probe of a webhook target
        return Answer(200, {})
    if method != "POST":
        return Answer(405, {"message": "POST the notification"})
    secret = str(trigger.settings["secret"])
    if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
        return Answer(401, {"message": "a valid secret is required (Authorization: Bearer)"})
    counters = triggers.counters.setdefault(trigger.name, Counters())
    counters.received += 1
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        counters.failed += 1
        counters.last_error = f"not JSON: {exc}"
        return Answer(400, {"message": f"the body is not JSON: {exc}"})
    records = parsed.get("Records") if isinstance(parsed, dict) else None
    if (
        not isinstance(records, list)
        or not 1 <= len(records) <= MAX_RECORDS
        or not all(isinstance(r, dict) for r in records)
    ):
        counters.failed += 1
        counters.last_error = "no Records list in the notification"
        return Answer(400, {"message": f"the body needs a Records list of 1-{MAX_RECORDS} maps"})
    event_id = str(uuid.uuid5(NAMESPACE, trigger.uid + hashlib.sha256(body).hexdigest()))
    try:
        await service.enqueue(
            trigger.function,
            trigger.qualifier,
            json.dumps({"Records": records}).encode(),
            event_id=event_id,
            origin=f"s3-push:{trigger.name}",
        )
    except TooManyRequests as exc:
        counters.failed += 1
        counters.last_error = f"{exc.type}: {exc.message}"
        return Answer(429, {"message": exc.message})
    except ResourceNotFound as exc:
        counters.failed += 1
        counters.last_error = f"{exc.type}: {exc.message}"
        return Answer(404, {"message": exc.message})
    except LambdadError as exc:
        counters.failed += 1
        counters.last_error = f"{exc.type}: {exc.message}"
        return Answer(503, {"message": exc.message})
    counters.invoked += 1
    return Answer(200, {"eventId": event_id})


__all__ = ["Answer", "accept"]
