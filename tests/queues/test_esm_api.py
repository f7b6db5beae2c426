"""The Lambda API's event-source mapping and EventInvokeConfig operations, driven by boto3.

boto3 → real HTTP → the daemon's own Lambda API front (``--api``, SigV4 with a key from the
daemon's key store) → ``lambda_esm``'s handlers over the daemon's mappings and destinations.
So botocore serializes, parses and raises its modelled exceptions, and what the API creates
really delivers messages.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ApiDaemon, start_api_daemon
from tests.conftest import DaemonProcess, wait_for, write_function

pytestmark = pytest.mark.root

REGION = "us-east-1"
RECORDER = """
def handler(event, context):
    for r in event["Records"]:
        print("BODY " + r["body"])
    return {}
"""


@pytest.fixture(scope="module")
def api() -> Iterator[ApiDaemon]:
    with tempfile.TemporaryDirectory(prefix="lambdad-esm-") as tmp:
        daemon = start_api_daemon(tmp)
        try:
            yield daemon
        finally:
            daemon.daemon.stop()


@pytest.fixture
def shared_daemon(api: ApiDaemon) -> DaemonProcess:
    """This module's daemon (the one serving the API) in place of the session's."""
    return api.daemon


@pytest.fixture
def lam(api: ApiDaemon) -> Any:
    return api.client()


def test_mapping_lifecycle_through_boto3(
    lam: Any, shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("apifn", write_function(tmp_path / "f", RECORDER))
        c.create_queue("apiq")
    arn = "arn:aws:sqs:us-east-1:000000000000:apiq"
    made = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="apifn", BatchSize=5,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 2},
    )  # fmt: skip
    uuid = made["UUID"]
    assert made["State"] == "Creating"
    assert made["EventSourceArn"] == arn
    assert made["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:apifn"
    assert made["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert made["ScalingConfig"] == {"MaximumConcurrency": 2}
    got = lam.get_event_source_mapping(UUID=uuid)
    assert (got["State"], got["BatchSize"], got["LastProcessingResult"]) == (
        "Enabled", 5, "No records processed",
    )  # fmt: skip
    with shared_daemon.client() as c:
        c.send_message("apiq", "via-api")
        wait_for(lambda: "BODY via-api" in c.logs("apifn")[0])
    wait_for(lambda: lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK")
    listed = lam.list_event_source_mappings(FunctionName="apifn")["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"][0]["UUID"] \
        == uuid  # fmt: skip
    updated = lam.update_event_source_mapping(UUID=uuid, Enabled=False, BatchSize=20,
                                              MaximumBatchingWindowInSeconds=2)  # fmt: skip
    assert updated["State"] == "Updating"
    after = lam.get_event_source_mapping(UUID=uuid)
    assert (after["State"], after["BatchSize"], after["MaximumBatchingWindowInSeconds"]) == (
        "Disabled", 20, 2,
    )  # fmt: skip
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="apifn")
    assert lam.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_event_source_mapping(UUID=uuid)


def test_mapping_errors_are_aws_shaped(lam: Any, shared_daemon: DaemonProcess,
                                       tmp_path: Path) -> None:  # fmt: skip
    with shared_daemon.client() as c:
        c.deploy("apierr", write_function(tmp_path / "f", RECORDER))
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="queue 'nope'"):
        lam.create_event_source_mapping(
            EventSourceArn="arn:aws:sqs:us-east-1:000000000000:nope", FunctionName="apierr"
        )
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="queues only"):
        lam.create_event_source_mapping(
            EventSourceArn="arn:aws:kinesis:us-east-1:000000000000:stream/s",
            FunctionName="apierr",
        )
    with shared_daemon.client() as c:
        c.create_queue("apierrq")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="window_s"):
        lam.create_event_source_mapping(
            EventSourceArn="arn:aws:sqs:us-east-1:000000000000:apierrq",
            FunctionName="apierr", BatchSize=100,
        )  # fmt: skip
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="BisectBatch"):
        lam.create_event_source_mapping(
            EventSourceArn="arn:aws:sqs:us-east-1:000000000000:apierrq",
            FunctionName="apierr", BisectBatchOnFunctionError=True,
        )  # fmt: skip


def test_event_invoke_config_through_boto3(
    lam: Any, shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        c.deploy("eicfn", write_function(tmp_path / "f", RECORDER))
        c.deploy("eicsink", write_function(tmp_path / "g", RECORDER))
        c.create_queue("eicq")
    sink = "arn:aws:lambda:us-east-1:000000000000:function:eicsink"
    queue = "arn:aws:sqs:us-east-1:000000000000:eicq"
    put = lam.put_function_event_invoke_config(
        FunctionName="eicfn", MaximumRetryAttempts=1, MaximumEventAgeInSeconds=300,
        DestinationConfig={"OnSuccess": {"Destination": sink},
                           "OnFailure": {"Destination": queue}},
    )  # fmt: skip
    assert put["MaximumRetryAttempts"] == 1
    assert put["DestinationConfig"]["OnSuccess"]["Destination"] == sink
    assert put["DestinationConfig"]["OnFailure"]["Destination"] == queue
    upd = lam.update_function_event_invoke_config(FunctionName="eicfn", MaximumRetryAttempts=0)
    assert (upd["MaximumRetryAttempts"], upd["MaximumEventAgeInSeconds"]) == (0, 300)
    assert upd["DestinationConfig"]["OnSuccess"]["Destination"] == sink
    got = lam.get_function_event_invoke_config(FunctionName="eicfn")
    assert got["FunctionArn"].endswith(":function:eicfn:$LATEST")
    listed = lam.list_function_event_invoke_configs(FunctionName="eicfn")
    assert len(listed["FunctionEventInvokeConfigs"]) == 1
    with shared_daemon.client() as c:
        assert c.get_destination("eicfn")["config"]["on_success"] == "fn:eicsink"
    lam.delete_function_event_invoke_config(FunctionName="eicfn")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName="eicfn")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="fn:FUNCTION"):
        lam.put_function_event_invoke_config(FunctionName="eicfn", MaximumRetryAttempts=2,
                                             MaximumEventAgeInSeconds=60,
                                             DestinationConfig={"OnSuccess": {
                                                 "Destination": "arn:aws:sns:x:y:z"}})  # fmt: skip
