"""Embedded queues and event-source mappings against a real daemon.

Each test deploys a real function, sends real messages through the socket, and waits (with a
deadline, never a sleep) for what the mapping must do: deliver SQS-shaped batches, delete what
succeeded, bring back what failed, dead-letter past the receive count, deliver nothing while
disabled. The SQS shape is checked in this process with Powertools' ``SQSEvent`` data class and
its ``BatchProcessor`` runs, unmodified, inside a function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from tests.conftest import DaemonProcess, wait_for, write_function

pytestmark = pytest.mark.root

# Failed messages come back after this; it must outlast a batching window plus a cold start
# on a loaded machine, or a message would come back while its batch is still running.
VT = 2.0

# Returns the event it got, so the test can read the batch from the function's log.
RECORDER = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event))
    bodies = [r["body"] for r in event["Records"]]
    if any(b.startswith("fail") for b in bodies):
        raise RuntimeError("failing on purpose: " + ",".join(bodies))
    return {"n": len(bodies)}
"""

# Fails the messages whose body says so, through a partial batch response; the rest of the
# answer shape comes from the message body (to test the whole-batch-failed cases).
PARTIAL = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event))
    failures = []
    for r in event["Records"]:
        body = r["body"]
        if body.startswith("answer:"):
            return json.loads(body[len("answer:"):])
        if body.startswith("bad"):
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
"""

POWERTOOLS = """
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor, EventType, process_partial_response,
)

processor = BatchProcessor(event_type=EventType.SQS)

def record_handler(record):
    if record.body.startswith("bad"):
        raise ValueError("bad record " + record.message_id)
    print("OK " + record.body)

def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=processor, context=context)
"""


def events_in_log(c: Client, function: str) -> list[dict[str, Any]]:
    text, _ = c.logs(function)
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("EVENT ")]


def bodies_seen(c: Client, function: str) -> list[str]:
    return [r["body"] for e in events_in_log(c, function) for r in e["Records"]]


def queue_info(c: Client, name: str) -> dict[str, Any]:
    return next(q for q in c.list_queues() if q["name"] == name)


def test_batches_arrive_in_sqs_shape_and_succeeded_messages_are_deleted(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    with shared_daemon.client() as c:
        c.deploy("rec1", write_function(tmp_path / "f", RECORDER))
        c.create_queue("orders", visibility_timeout_s=30)
        for i in range(5):
            c.send_message("orders", f"order-{i}", attributes={"kind": "test", "n": str(i)})
        mapping = c.create_mapping("orders-to-rec1", "rec1", "orders", batch_size=10)
        assert mapping["source_arn"] == "arn:aws:sqs:us-east-1:000000000000:orders"
        assert mapping["state"] == "enabled"
        wait_for(lambda: sorted(bodies_seen(c, "rec1")) == [f"order-{i}" for i in range(5)])
        event = events_in_log(c, "rec1")[0]
        parsed = SQSEvent(event)
        record = next(iter(parsed.records))
        assert record.event_source == "aws:sqs"
        assert record.event_source_arn == "arn:aws:sqs:us-east-1:000000000000:orders"
        assert record.aws_region == "us-east-1"
        assert record.attributes.approximate_receive_count == "1"
        assert int(record.attributes.sent_timestamp) > 1_700_000_000_000
        assert record.message_attributes["kind"].string_value == "test"
        assert record.message_attributes["kind"].data_type == "String"
        raw = event["Records"][0]
        assert set(raw) == {
            "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
            "md5OfBody", "md5OfMessageAttributes", "eventSource", "eventSourceARN", "awsRegion",
        }  # fmt: skip
        import hashlib

        assert raw["md5OfBody"] == hashlib.md5(raw["body"].encode()).hexdigest()
        # Deleted once processed: nothing visible, nothing in flight.
        wait_for(lambda: queue_info(c, "orders")["visible"] + queue_info(c, "orders")["in_flight"]
                 == 0)  # fmt: skip
        wait_for(lambda: c.get_mapping("orders-to-rec1")["counters"]["succeeded"] == 5)


def test_a_failed_batch_comes_back_and_lands_in_the_dead_letter_queue_with_its_attributes(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("rec2", write_function(tmp_path / "f", RECORDER))
        c.create_queue("jobs-dlq")
        c.create_queue("jobs", visibility_timeout_s=VT, max_receive_count=2, dead_letter="jobs-dlq")
        mid = c.send_message("jobs", "fail-me", attributes={"trace": "abc"})
        c.create_mapping("jobs-to-rec2", "rec2", "jobs", batch_size=1)
        wait_for(lambda: queue_info(c, "jobs-dlq")["visible"] == 1, timeout=30)
        assert bodies_seen(c, "rec2").count("fail-me") == 2  # received twice, then moved
        assert queue_info(c, "jobs")["visible"] + queue_info(c, "jobs")["in_flight"] == 0
        [dead] = c.receive_messages("jobs-dlq", max=10)
        assert dead["message_id"] == mid
        assert bytes(dead["body"]) == b"fail-me"
        assert dead["attributes"] == {"trace": {"DataType": "String", "StringValue": "abc"}}
        mapping = c.get_mapping("jobs-to-rec2")
        assert mapping["counters"]["failed"] == 2
        assert "failing on purpose" in mapping["counters"]["last_error"]
        assert queue_info(c, "jobs-dlq")["visible"] == 0  # receive deleted it


def test_partial_batch_responses_fail_only_the_reported_items(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("part1", write_function(tmp_path / "f", PARTIAL))
        c.create_queue("pb-dlq")
        c.create_queue("pb", visibility_timeout_s=VT, max_receive_count=1, dead_letter="pb-dlq")
        for body in ("good-1", "bad-1", "good-2"):
            c.send_message("pb", body)
        c.create_mapping(
            "pb-to-part1", "part1", "pb", batch_size=10, window_s=0.5,
            report_batch_item_failures=True,
        )  # fmt: skip
        wait_for(lambda: queue_info(c, "pb-dlq")["visible"] == 1)
        [dead] = c.receive_messages("pb-dlq")
        assert bytes(dead["body"]) == b"bad-1"
        assert queue_info(c, "pb")["visible"] + queue_info(c, "pb")["in_flight"] == 0


@pytest.mark.parametrize(
    "answer, whole_batch_fails",
    [
        ('{"batchItemFailures": []}', False),
        ('{"batchItemFailures": null}', False),
        ("{}", False),
        ("null", False),
        ('{"batchItemFailures": [{"itemIdentifier": ""}]}', True),
        ('{"batchItemFailures": [{"itemIdentifier": null}]}', True),
        ('{"batchItemFailures": [{"itemId": "x"}]}', True),
        ('{"batchItemFailures": [{"itemIdentifier": "not-a-message-of-the-batch"}]}', True),
    ],
)
def test_whole_batch_success_and_failure_cases(
    shared_daemon: DaemonProcess, tmp_path: Path, answer: str, whole_batch_fails: bool
) -> None:
    """AWS's table: empty/null lists and responses are a complete success; an empty, null,
    misnamed or unknown itemIdentifier a complete failure (the other message comes back)."""
    key = abs(hash(answer)) % 10**8
    fn, queue, dlq = f"ans{key}", f"ans{key}", f"ans{key}-dlq"
    with shared_daemon.client() as c:
        c.deploy(fn, write_function(tmp_path / "f", PARTIAL))
        c.create_queue(dlq)
        c.create_queue(queue, visibility_timeout_s=VT, max_receive_count=1, dead_letter=dlq)
        c.send_message(queue, "answer:" + answer)
        c.send_message(queue, "good-other")
        c.create_mapping(fn, fn, queue, batch_size=10, window_s=0.5,
                         report_batch_item_failures=True)  # fmt: skip
        wait_for(lambda: c.get_mapping(fn)["counters"]["batches"] >= 1)
        if whole_batch_fails:
            wait_for(lambda: queue_info(c, dlq)["visible"] == 2)
            assert "partial batch response" in c.get_mapping(fn)["counters"]["last_error"]
        else:
            wait_for(lambda: c.get_mapping(fn)["counters"]["succeeded"] == 2)
            assert queue_info(c, dlq)["visible"] == 0


def test_unparseable_partial_batch_response_fails_the_whole_batch(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = 'def handler(event, context):\n    return {"batchItemFailures": "nonsense"}\n'
    with shared_daemon.client() as c:
        c.deploy("unp1", write_function(tmp_path / "f", source))
        c.create_queue("unp-dlq")
        c.create_queue("unp", visibility_timeout_s=VT, max_receive_count=1, dead_letter="unp-dlq")
        c.send_message("unp", "x")
        c.create_mapping("unp1", "unp1", "unp", report_batch_item_failures=True)
        wait_for(lambda: queue_info(c, "unp-dlq")["visible"] == 1)
        assert "batchItemFailures must be a list" in c.get_mapping("unp1")["counters"]["last_error"]


def test_powertools_batch_processor_runs_unmodified(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    import aws_lambda_powertools

    code = write_function(tmp_path / "f", POWERTOOLS)
    # The function's own copy of Powertools (its code directory), as a user would ship it.
    pkg = Path(aws_lambda_powertools.__file__).parent
    import shutil

    shutil.copytree(pkg, code / "aws_lambda_powertools")
    import typing_extensions

    shutil.copy(typing_extensions.__file__, code / "typing_extensions.py")
    with shared_daemon.client() as c:
        c.deploy("pt1", code, timeout_s=10, memory_mb=256)
        c.create_queue("pt-dlq")
        c.create_queue("pt", visibility_timeout_s=VT, max_receive_count=1, dead_letter="pt-dlq")
        for body in ("ok-a", "bad-b", "ok-c"):
            c.send_message("pt", body)
        c.create_mapping("pt1", "pt1", "pt", batch_size=10, window_s=1,
                         report_batch_item_failures=True)  # fmt: skip
        wait_for(lambda: queue_info(c, "pt-dlq")["visible"] == 1, timeout=60)
        [dead] = c.receive_messages("pt-dlq")
        assert bytes(dead["body"]) == b"bad-b"
        text, _ = c.logs("pt1")
        assert "OK ok-a" in text and "OK ok-c" in text
        counters = c.get_mapping("pt1")["counters"]
        assert counters["succeeded"] >= 2, counters


def test_a_disabled_mapping_delivers_nothing_until_enabled(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("dis1", write_function(tmp_path / "f", RECORDER))
        c.create_queue("dis")
        c.create_mapping("dis1", "dis1", "dis", enabled=False)
        c.send_message("dis", "held")
        # Another mapping on another queue proves the daemon's pollers are running meanwhile.
        c.deploy("dis2", write_function(tmp_path / "g", RECORDER))
        c.create_queue("dis-probe")
        c.create_mapping("dis2", "dis2", "dis-probe")
        c.send_message("dis-probe", "probe")
        wait_for(lambda: bodies_seen(c, "dis2") == ["probe"])
        assert bodies_seen(c, "dis1") == []
        assert queue_info(c, "dis")["visible"] == 1
        assert c.get_mapping("dis1")["state"] == "disabled"
        c.update_mapping("dis1", enabled=True)
        wait_for(lambda: bodies_seen(c, "dis1") == ["held"])


def test_mapping_settings_are_validated_and_survive_a_restart(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    with daemon.client() as c:
        c.deploy("val1", write_function(tmp_path / "f", RECORDER))
        c.create_queue("val")
        with pytest.raises(ResourceNotFound, match="queue 'nope' does not exist"):
            c.create_mapping("m0", "val1", "nope")
        with pytest.raises(ResourceNotFound):
            c.create_mapping("m0", "no-such-function", "val")
        with pytest.raises(InvalidParameterValue, match="batch_size must be from 1 to 10000"):
            c.create_mapping("m0", "val1", "val", batch_size=10_001)
        with pytest.raises(InvalidParameterValue, match="window_s"):
            c.create_mapping("m0", "val1", "val", batch_size=100)
        with pytest.raises(InvalidParameterValue, match="max_concurrency"):
            c.create_mapping("m0", "val1", "val", max_concurrency=1)
        with pytest.raises(InvalidParameterValue, match="nats://HOST:PORT/STREAM"):
            c.create_mapping("m0", "val1", "nats://nohost/")
        with pytest.raises(InvalidParameterValue, match="dead_letter"):
            c.create_queue("v2", max_receive_count=3)
        m = c.create_mapping("m1", "val1", "val", batch_size=100, window_s=1, max_concurrency=3)
        with pytest.raises(ResourceConflict, match="already exists"):
            c.create_mapping("m2", "val1", "val")
        with pytest.raises(ResourceConflict, match="source of event source mapping"):
            c.delete_queue("val")
    daemon.restart()
    with daemon.client() as c:
        [again] = c.list_mappings("val1")
        assert again["uuid"] == m["uuid"]
        assert (again["batch_size"], again["window_s"], again["max_concurrency"]) == (100, 1, 3)
        assert [q["name"] for q in c.list_queues()] == ["val"]
        c.send_message("val", "after-restart")
        wait_for(lambda: bodies_seen(c, "val1") == ["after-restart"])
        # Deleting the function disables its mappings, explicitly.
        c.delete("val1")
        wait_for(lambda: c.get_mapping("m1")["state"] == "disabled")
        assert "was deleted" in c.get_mapping("m1")["counters"]["last_error"]
        c.delete_mapping(m["uuid"])
        assert c.list_mappings() == []
        c.delete_queue("val")
