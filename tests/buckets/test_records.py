"""S3 event records (pure): the shape, key encoding and filters, read back by Powertools'
S3Event the way handler code reads them."""

from __future__ import annotations

import dataclasses
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.data_classes import S3Event

from lambdad.buckets import records
from lambdad.errors import InvalidParameterValue
from lambdad.triggers.store import check_settings

EVENT = records.ObjectEvent(
    "uploads", "photos/red flower+1 é.jpg", records.CREATED_PUT, 1234, 1_700_000_000_123_456_789,
    "0123456789abcdef0123456789abcdef", 1_700_000_000.5,
)  # fmt: skip


def test_record_reads_as_an_s3_event_in_powertools() -> None:
    event = S3Event(records.notification(EVENT, "on-upload", "eu-west-1"))
    r = event.record
    assert r.event_version == "2.1" and r.event_source == "aws:s3"
    assert r.aws_region == "eu-west-1" and r.event_name == "ObjectCreated:Put"
    assert r.event_time == "2023-11-14T22:13:20.500Z"
    assert r.s3.configuration_id == "on-upload" and r.s3.s3_schema_version == "1.0"
    assert r.s3.bucket.name == "uploads" and r.s3.bucket.arn == "arn:aws:s3:::uploads"
    assert r.s3.get_object.key == "photos/red+flower%2B1+%C3%A9.jpg"
    assert event.object_key == "photos/red flower+1 é.jpg"  # Powertools unquote_plus-es it
    assert unquote_plus(r.s3.get_object.key) == EVENT.key
    assert r.s3.get_object.size == 1234 and r.s3.get_object.etag == EVENT.etag
    assert r.s3.get_object.sequencer == "17979CFE3D85CD15"  # hex of mtime_ns
    assert r.user_identity.principal_id and r.request_parameters.source_ip_address


def test_removal_has_no_size_and_a_later_sequencer() -> None:
    gone = records.ObjectEvent("b", "k", records.REMOVED_DELETE, 0, EVENT.mtime_ns + 1, "", 0.0)
    obj = records.record(gone, "c", "us-east-1")["s3"]["object"]
    assert set(obj) == {"key", "sequencer"}
    assert obj["sequencer"] > records.sequencer(EVENT.mtime_ns)


@pytest.mark.parametrize(
    ("name", "patterns", "key", "prefix", "suffix", "expected"),
    [
        ("ObjectCreated:Put", ["s3:ObjectCreated:*"], "a.jpg", "", "", True),
        ("ObjectCreated:Put", ["s3:ObjectCreated:Put"], "a.jpg", "", ".jpg", True),
        ("ObjectRemoved:Delete", ["s3:ObjectCreated:*"], "a.jpg", "", "", False),
        ("ObjectRemoved:Delete", ["s3:ObjectRemoved:*"], "a.jpg", "", "", True),
        ("ObjectCreated:Put", ["s3:ObjectCreated:*"], "a.png", "", ".jpg", False),
        ("ObjectCreated:Put", ["s3:ObjectCreated:*"], "in/a b.jpg", "in/", ".jpg", True),
        ("ObjectCreated:Put", ["s3:ObjectCreated:*"], "out/a.jpg", "in/", "", False),
    ],
)
def test_filters(
    name: str, patterns: list[str], key: str, prefix: str, suffix: str, expected: bool
) -> None:
    assert records.matches(name, patterns, key, prefix, suffix) is expected


def test_event_ids_are_stable_per_version() -> None:
    assert records.event_id("t", EVENT) == records.event_id("t", EVENT)
    later = dataclasses.replace(EVENT, mtime_ns=EVENT.mtime_ns + 1)
    assert records.event_id("t", later) != records.event_id("t", EVENT)
    assert records.event_id("other", EVENT) != records.event_id("t", EVENT)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "needs a bucket"),
        ({"bucket": "b", "events": ["s3:ObjectRestore:*"]}, "unknown event type"),
        ({"bucket": "b", "events": []}, "at least one"),
        ({"bucket": "b", "prefix": 3}, "prefix must be"),
        ({"bucket": "b", "colour": "red"}, "unknown setting"),
        ({"push": True, "secret": "short"}, "16 characters"),
    ],
)
def test_s3_trigger_settings_are_checked(settings: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        check_settings("s3", settings)
