"""The Lambda API's event-source mapping and EventInvokeConfig operations, driven by boto3.

boto3 → real HTTP → ``LambdaApi`` with SigV4 and the handlers of ``lambda_esm`` → the real
daemon's socket (its AsyncClient has the :class:`QueueBackend` coroutines) → the daemon's
mappings and destinations. So botocore serializes, parses and raises its modelled exceptions,
and what the API creates really delivers messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lambdad.client import AsyncClient
from lambdad.frontends.http import Limits
from lambdad.frontends.lambda_api_routes import LambdaApi, http_error, sigv4_authenticator
from lambdad.frontends.lambda_esm import register
from lambdad.keys import KeyStore
from tests.api.helpers import serve
from tests.conftest import DaemonProcess, wait_for, write_function

pytestmark = pytest.mark.root

REGION = "us-east-1"
RECORDER = """
def handler(event, context):
    for r in event["Records"]:
        print("BODY " + r["body"])
    return {}
"""


@pytest.fixture
def lam(shared_daemon: DaemonProcess, tmp_path: Path) -> Iterator[Any]:
    keys = KeyStore(str(tmp_path))
    admin = keys.create(name="admin", admin=True)
    table: dict[str, Any] = {}
    backend = AsyncClient(shared_daemon.socket)
    register(table, backend)
    app = LambdaApi(table, authenticate=sigv4_authenticator(keys))
    with serve(app, limits=Limits(max_body_bytes=2**20), error_response=http_error) as srv:
        yield boto3.client(
            "lambda",
            endpoint_url=f"http://{srv.host}:{srv.port}",
            region_name=REGION,
            aws_access_key_id=admin.key.access_key_id,
            aws_secret_access_key=admin.secret_access_key,
            config=Config(retries={"total_max_attempts": 1}),
        )
        srv.call(backend.close())


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
