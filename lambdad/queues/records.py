"""SQS's event shape and Lambda's partial batch responses: pure logic, no I/O.

:func:`sqs_event` builds what a function triggered by a queue receives, field for field as
Lambda delivers an SQS batch (``Records[]`` with ``messageId``, ``receiptHandle``, ``body``,
``attributes``, ``messageAttributes``, ``md5OfBody``, ``md5OfMessageAttributes``,
``eventSource``, ``eventSourceARN``, ``awsRegion``), so SQS handler code and Powertools'
``BatchProcessor`` run unchanged.

:func:`failed_items` reads a function's answer the way Lambda does with
``FunctionResponseTypes: ["ReportBatchItemFailures"]`` (AWS, "Handling errors for an SQS event
source in Lambda"):

* complete success: an empty or null ``batchItemFailures`` list, an empty or null response;
* complete failure: a function error, a response that is not JSON, an ``itemIdentifier``
  that is an empty string, null, missing (a wrong key name) or not the id of a message in the
  batch;
* otherwise exactly the listed messages failed.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

SENDER_ID: Final = "000000000000"


@dataclass(frozen=True, slots=True)
class Record:
    """One message of a batch, whatever the backend (embedded queue or NATS)."""

    message_id: str
    receipt: str
    body: bytes
    attributes: Mapping[str, Mapping[str, str]]  # name -> {DataType, StringValue}
    sent: float  # seconds since the epoch
    receive_count: int
    first_receive: float


def md5_of_attributes(attributes: Mapping[str, Mapping[str, str]]) -> str | None:
    """SQS's MD5OfMessageAttributes: over the attributes sorted by name, each encoded as
    length-prefixed name, data type, a transport byte (1 = string) and value."""
    if not attributes:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        for part in (name, value["DataType"]):
            raw = part.encode()
            digest.update(struct.pack(">I", len(raw)) + raw)
        raw = value["StringValue"].encode()
        digest.update(b"\x01" + struct.pack(">I", len(raw)) + raw)
    return digest.hexdigest()


def sqs_record(record: Record, source_arn: str, region: str) -> dict[str, Any]:
    """The ``Records[]`` entry of an SQS event."""
    body = record.body.decode("utf-8", "replace")
    return {
        "messageId": record.message_id,
        "receiptHandle": record.receipt,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(record.receive_count),
            "SentTimestamp": str(int(record.sent * 1000)),
            "SenderId": SENDER_ID,
            "ApproximateFirstReceiveTimestamp": str(int(record.first_receive * 1000)),
        },
        "messageAttributes": {
            name: {
                "stringValue": value["StringValue"],
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in record.attributes.items()
        },
        "md5OfBody": hashlib.md5(record.body, usedforsecurity=False).hexdigest(),
        "md5OfMessageAttributes": md5_of_attributes(record.attributes),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }


def sqs_event(records: Sequence[Record], source_arn: str, region: str) -> bytes:
    """The JSON payload of one batch."""
    doc = {"Records": [sqs_record(r, source_arn, region) for r in records]}
    return json.dumps(doc, separators=(",", ":")).encode()


class BatchFailed(Exception):
    """The whole batch counts as failed; the message says why (for the mapping's last error)."""


def failed_items(result: bytes | None, ids: Sequence[str]) -> set[str]:
    """Which messages of a batch failed, from a function's successful answer under
    ReportBatchItemFailures.

    Raises:
        BatchFailed: the answer makes the whole batch a failure (see the module docstring).
    """
    if result is None or not result.strip():
        return set()
    try:
        doc = json.loads(result)
    except ValueError as exc:
        raise BatchFailed(f"the function's response is not JSON: {exc}") from None
    if doc is None:
        return set()
    if not isinstance(doc, dict):
        # Not an EventResponse at all (a bare string, a number, a list): Lambda finds no
        # batchItemFailures in it, which is a complete success.
        return set()
    failures = doc.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise BatchFailed(f"batchItemFailures must be a list, got {type(failures).__name__}")
    known = set(ids)
    failed: set[str] = set()
    for item in failures:
        if not isinstance(item, dict) or "itemIdentifier" not in item:
            raise BatchFailed(f"a batchItemFailures entry has no itemIdentifier: {item!r}")
        ident = item["itemIdentifier"]
        if ident is None or ident == "":
            raise BatchFailed(f"a batchItemFailures entry has an empty itemIdentifier: {item!r}")
        if not isinstance(ident, str) or ident not in known:
            raise BatchFailed(f"itemIdentifier {ident!r} is not a message of this batch")
        failed.add(ident)
    return failed
