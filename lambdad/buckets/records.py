"""S3 event notification records, as S3 delivers them to Lambda: pure logic, no I/O.

The shape is S3's "Event message structure" (eventVersion 2.1; AWS S3 User Guide,
"Event notification content structure"): one record per event, in ``{"Records": [record]}``.
Object keys are URL-encoded the way S3 encodes them there (``quote_plus``: a space is ``+``,
``/`` kept), which is why handlers call ``urllib.parse.unquote_plus`` on them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote_plus

PRINCIPAL: Final = "lambdad"
CREATED_PUT: Final = "ObjectCreated:Put"
REMOVED_DELETE: Final = "ObjectRemoved:Delete"
NAMESPACE: Final = uuid.UUID("8d6f3a52-2b0c-4f0e-9a0e-4b1f6c3d2a71")


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One change of one object, as the watcher or the rescan saw it."""

    bucket: str
    key: str  # the path relative to the bucket's directory, with "/" separators
    name: str  # CREATED_PUT or REMOVED_DELETE
    size: int  # 0 for a removal
    mtime_ns: int  # the object's (last known) modification time: its version
    etag: str  # hex MD5 of the content ("" for a removal)
    time: float  # when the change was seen (eventTime)


def encode_key(key: str) -> str:
    """A key as S3 writes it in a notification (``red flower.jpg`` -> ``red+flower.jpg``)."""
    return quote_plus(key, safe="/")


def sequencer(mtime_ns: int) -> str:
    """S3's ``sequencer``: a hex string that grows with each event of a key (here the
    modification time in nanoseconds, so a later write has a larger one)."""
    return f"{mtime_ns:016X}"


def event_time(ts: float) -> str:
    """``eventTime``: ISO 8601 with milliseconds, ``Z`` (``2026-12-01T14:00:00.123Z``)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def matches(event_name: str, patterns: Sequence[str], key: str, prefix: str, suffix: str) -> bool:
    """Whether a trigger with these ``events`` and prefix/suffix filters takes this event.
    S3's filters compare the (unencoded) key; ``*`` ends an event type."""
    if not key.startswith(prefix) or not key.endswith(suffix):
        return False
    return any(fnmatch.fnmatchcase("s3:" + event_name, p) for p in patterns)


def event_id(trigger_uid: str, event: ObjectEvent) -> str:
    """The idempotency key of one delivery: one trigger, one key, one version, one change.
    A redelivery after a restart (the rescan seeing the same change) has the same id, and
    the durable store keeps the first."""
    text = f"{trigger_uid}/{event.bucket}/{event.key}/{event.name}/{event.mtime_ns}/{event.size}"
    return str(uuid.uuid5(NAMESPACE, text))


def record(
    event: ObjectEvent, configuration_id: str, region: str, source_ip: str = "127.0.0.1"
) -> dict[str, Any]:
    """One S3 event notification record (eventVersion 2.1)."""
    request_id = hashlib.sha1(f"{event.bucket}/{event.key}/{event.mtime_ns}".encode()).hexdigest()
    obj: dict[str, Any] = {"key": encode_key(event.key)}
    if event.name.startswith("ObjectCreated"):
        obj.update(size=event.size, eTag=event.etag)
    obj["sequencer"] = sequencer(event.mtime_ns)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time(event.time),
        "eventName": event.name,
        "userIdentity": {"principalId": PRINCIPAL},
        "requestParameters": {"sourceIPAddress": source_ip},
        "responseElements": {
            "x-amz-request-id": request_id[:16].upper(),
            "x-amz-id-2": request_id,
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": event.bucket,
                "ownerIdentity": {"principalId": PRINCIPAL},
                "arn": f"arn:aws:s3:::{event.bucket}",
            },
            "object": obj,
        },
    }


def notification(event: ObjectEvent, configuration_id: str, region: str) -> dict[str, Any]:
    """What the function receives: ``{"Records": [record]}``, one record per event as S3."""
    return {"Records": [record(event, configuration_id, region)]}


__all__ = [
    "CREATED_PUT", "REMOVED_DELETE", "ObjectEvent", "encode_key", "event_id",
    "event_time", "matches", "notification", "record", "sequencer",
]  # fmt: skip
