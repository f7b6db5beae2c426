"""Pure logic: SQS's record shape, its attribute digest, and Lambda's partial-batch rules."""

from __future__ import annotations

import hashlib
import json

import pytest

from lambdad.errors import InvalidParameterValue
from lambdad.queues.records import BatchFailed, Record, failed_items, md5_of_attributes, sqs_event
from lambdad.queues.sources import NatsTarget
from lambdad.queues.store import OutgoingMessage, QueueSettings, check_attributes, parse_queue_ref

IDS = ["a", "b", "c"]


@pytest.mark.parametrize(
    "answer",
    [None, b"", b"null", b"{}", b'{"batchItemFailures": []}', b'{"batchItemFailures": null}',
     b'"done"', b"[1, 2]", b'{"other": 1}'],
)  # fmt: skip
def test_complete_success(answer: bytes | None) -> None:
    assert failed_items(answer, IDS) == set()


@pytest.mark.parametrize(
    "answer, why",
    [
        (b"{not json", "not JSON"),
        (b'{"batchItemFailures": {"itemIdentifier": "a"}}', "must be a list"),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', "empty itemIdentifier"),
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', "empty itemIdentifier"),
        (b'{"batchItemFailures": [{"ItemIdentifier": "a"}]}', "no itemIdentifier"),
        (b'{"batchItemFailures": ["a"]}', "no itemIdentifier"),
        (b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}', "not a message of this batch"),
        (b'{"batchItemFailures": [{"itemIdentifier": 1}]}', "not a message of this batch"),
    ],
)
def test_complete_failure(answer: bytes, why: str) -> None:
    with pytest.raises(BatchFailed, match=why):
        failed_items(answer, IDS)


def test_listed_items_fail() -> None:
    answer = json.dumps({"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "c"}]})
    assert failed_items(answer.encode(), IDS) == {"b", "c"}


def test_md5_of_message_attributes_is_sqs_encoding() -> None:
    attributes = {"b": {"DataType": "String", "StringValue": "2"},
                  "a": {"DataType": "Number", "StringValue": "10"}}  # fmt: skip
    # Sorted by name; each: 4-byte big-endian length + name, length + type, 0x01, length + value.
    encoded = (
        b"\x00\x00\x00\x01a" b"\x00\x00\x00\x06Number" b"\x01" b"\x00\x00\x00\x0210"
        b"\x00\x00\x00\x01b" b"\x00\x00\x00\x06String" b"\x01" b"\x00\x00\x00\x012"
    )  # fmt: skip
    assert md5_of_attributes(attributes) == hashlib.md5(encoded).hexdigest()
    assert md5_of_attributes({}) is None


def test_record_shape() -> None:
    record = Record("id-1", "rh", "héllo".encode(), {}, 1700000000.5, 2, 1700000001.25)
    [doc] = json.loads(sqs_event([record], "arn:aws:sqs:us-east-1:000000000000:q", "us-east-1"))[
        "Records"
    ]
    assert doc["body"] == "héllo"
    assert doc["md5OfBody"] == hashlib.md5("héllo".encode()).hexdigest()
    assert doc["attributes"] == {
        "ApproximateReceiveCount": "2", "SentTimestamp": "1700000000500",
        "SenderId": "000000000000", "ApproximateFirstReceiveTimestamp": "1700000001250",
    }  # fmt: skip
    assert doc["md5OfMessageAttributes"] is None and doc["messageAttributes"] == {}


def test_input_checks_name_the_field() -> None:
    assert parse_queue_ref("arn:aws:sqs:eu-west-1:123456789012:orders") == "orders"
    with pytest.raises(InvalidParameterValue, match="not a queue ARN"):
        parse_queue_ref("arn:aws:sns:eu-west-1:1:x")
    with pytest.raises(InvalidParameterValue, match="visibility_timeout_s"):
        QueueSettings.make("q", visibility_timeout_s=-1)
    with pytest.raises(InvalidParameterValue, match="own dead-letter queue"):
        QueueSettings.make("q", max_receive_count=2, dead_letter="q")
    with pytest.raises(InvalidParameterValue, match=r"over SQS.s limit of 262144"):
        OutgoingMessage.make("x" * (256 * 1024 + 1))
    with pytest.raises(InvalidParameterValue, match="reserved"):
        check_attributes({"AWS.TraceHeader": "x"})
    with pytest.raises(InvalidParameterValue, match="DataType"):
        check_attributes({"k": {"DataType": "Binary", "StringValue": "x"}})
    target = NatsTarget.parse("nats://h:4222/S?visibility_timeout=5&max_receive_count=3")
    assert (target.server, target.stream, target.visibility_timeout_s, target.max_receive_count) \
        == ("nats://h:4222", "S", 5.0, 3)  # fmt: skip
    assert target.dead_letter_subject == "S.dead-letter"
    with pytest.raises(InvalidParameterValue, match="unknown option"):
        NatsTarget.parse("nats://h:4222/S?ack=1")
    with pytest.raises(InvalidParameterValue, match="max_receive_count"):
        NatsTarget.parse("nats://h:4222/S?max_receive_count=0")
