"""The Lambda API's operations against a real daemon, through boto3 (botocore signs, serializes
and parses; the daemon runs real sandboxes).

Every operation of issue 11 but the layer ones (lambdad.frontends.lambda_layers has its own
tests), their errors as botocore raises them, the paginators and the waiters.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ApiDaemon, zip_of
from tests.conftest import wait_for

ROLE = "arn:aws:iam::000000000000:role/lambdad"
HOST_RUNTIME = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def source(tag: str) -> str:
    return (
        "def handler(event, context):\n"
        f"    print('running {tag}')\n"
        f"    return {{'tag': {tag!r}, 'event': event, 'version': context.function_version}}\n"
    )


def create(lam: Any, name: str, tag: str = "one", **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": HOST_RUNTIME,
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": zip_of(source(tag))},
    }
    args.update(extra)
    return lam.create_function(**args)  # type: ignore[no-any-return]


def invoke(lam: Any, name: str, payload: Any = None, **extra: Any) -> tuple[dict[str, Any], Any]:
    body = b"" if payload is None else json.dumps(payload).encode()
    answer = lam.invoke(FunctionName=name, Payload=body, **extra)
    return answer, json.loads(answer["Payload"].read())


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return str(info.value.response["Error"]["Code"])


# -- functions ----------------------------------------------------------------------------------


def test_create_get_and_the_waiters(lam: Any) -> None:
    made = create(
        lam,
        "ops-create",
        Description="greets",
        MemorySize=256,
        Timeout=5,
        Environment={"Variables": {"GREETING": "hi"}},
        Architectures=["arm64"],
        EphemeralStorage={"Size": 1024},
        Tags={"team": "a"},
        VpcConfig={"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
    )
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (made["FunctionName"], made["Version"], made["State"]) == (
        "ops-create",
        "$LATEST",
        "Active",
    )
    assert made["Runtime"] == HOST_RUNTIME and made["Role"] == ROLE
    assert made["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:ops-create"
    assert (made["MemorySize"], made["Timeout"], made["Description"]) == (256, 5, "greets")
    assert made["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert made["Architectures"] == ["arm64"] and made["EphemeralStorage"] == {"Size": 1024}
    assert made["PackageType"] == "Zip" and made["LastUpdateStatus"] == "Successful"
    assert len(base64.b64decode(made["CodeSha256"])) == 32 and made["CodeSize"] > 0
    lam.get_waiter("function_active_v2").wait(FunctionName="ops-create")
    lam.get_waiter("function_updated_v2").wait(FunctionName="ops-create")
    got = lam.get_function(FunctionName="ops-create")
    assert got["Configuration"]["RevisionId"] == made["RevisionId"]
    assert got["Tags"] == {"team": "a"}
    config = lam.get_function_configuration(FunctionName="ops-create")
    assert config["CodeSha256"] == made["CodeSha256"]
    answer, result = invoke(lam, "ops-create", {"name": "Ada"})
    assert result == {"tag": "one", "event": {"name": "Ada"}, "version": "$LATEST"}
    assert answer["ExecutedVersion"] == "$LATEST"


def test_create_refusals(lam: Any) -> None:
    create(lam, "ops-dup")
    with pytest.raises(lam.exceptions.ResourceConflictException):
        create(lam, "ops-dup")
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as info:
        create(lam, "ops-old", Runtime="python2.7")
    assert HOST_RUNTIME in str(info.value)  # names what this host has
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as info:
        lam.create_function(
            FunctionName="ops-s3", Runtime=HOST_RUNTIME, Role=ROLE, Handler="app.handler",
            Code={"S3Bucket": "bucket", "S3Key": "key.zip"},
        )  # fmt: skip
    assert "S3Bucket" in str(info.value)
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as info:
        create(lam, "ops-badzip", Code={"ZipFile": b"not a zip"})
    assert "zip" in str(info.value)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        create(lam, "ops-mem", MemorySize=100_000)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        create(lam, "ops-image", PackageType="Image")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="ops-nobody")


def test_list_functions_paginates(lam: Any) -> None:
    for i in range(3):
        create(lam, f"ops-page-{i}")
    pages = list(lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}))
    names = [f["FunctionName"] for page in pages for f in page["Functions"]]
    assert {"ops-page-0", "ops-page-1", "ops-page-2"} <= set(names)
    assert len(names) == len(set(names)) and all(len(p["Functions"]) <= 2 for p in pages)
    assert len(pages) >= 2
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.list_functions(Marker="no-such-marker")


def test_update_code_twice_without_publish_serves_the_new_code(lam: Any) -> None:
    """Both unpublished $LATESTs are version number 0: warm sandboxes are keyed by content."""
    create(lam, "ops-update")
    assert invoke(lam, "ops-update")[1]["tag"] == "one"
    answer, _ = invoke(lam, "ops-update", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(answer["LogResult"]).decode()  # warm
    for tag in ("two", "three"):
        updated = lam.update_function_code(FunctionName="ops-update", ZipFile=zip_of(source(tag)))
        assert updated["Version"] == "$LATEST"
        lam.get_waiter("function_updated_v2").wait(FunctionName="ops-update")
        assert invoke(lam, "ops-update")[1]["tag"] == tag
        assert invoke(lam, "ops-update")[1]["tag"] == tag  # and again, warm


def test_update_configuration_and_revision_ids(lam: Any) -> None:
    made = create(lam, "ops-config")
    changed = lam.update_function_configuration(
        FunctionName="ops-config", MemorySize=512, Environment={"Variables": {"A": "1"}},
        Description="bigger", RevisionId=made["RevisionId"],
    )  # fmt: skip
    assert changed["MemorySize"] == 512 and changed["Description"] == "bigger"
    assert changed["RevisionId"] != made["RevisionId"]
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(
            FunctionName="ops-config", Timeout=9, RevisionId=made["RevisionId"]
        )
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_configuration(FunctionName="ops-config", Runtime="nodejs20.x")
    assert lam.get_function_configuration(FunctionName="ops-config")["Timeout"] == 3


# -- versions and aliases -----------------------------------------------------------------------


def test_publish_list_and_delete_versions(lam: Any) -> None:
    create(lam, "ops-versions")
    first = lam.publish_version(FunctionName="ops-versions", Description="first")
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert first["Version"] == "1" and first["Description"] == "first"
    assert first["FunctionArn"].endswith(":function:ops-versions:1")
    lam.get_waiter("published_version_active").wait(FunctionName="ops-versions", Qualifier="1")
    assert lam.publish_version(FunctionName="ops-versions")["Version"] == "1"  # unchanged
    lam.update_function_code(FunctionName="ops-versions", ZipFile=zip_of(source("two")))
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.publish_version(FunctionName="ops-versions", CodeSha256=first["CodeSha256"])
    second = lam.publish_version(FunctionName="ops-versions")
    assert second["Version"] == "2"
    pages = lam.get_paginator("list_versions_by_function").paginate(
        FunctionName="ops-versions", PaginationConfig={"PageSize": 1}
    )
    assert [v["Version"] for page in pages for v in page["Versions"]] == ["$LATEST", "1", "2"]
    answer, result = invoke(lam, "ops-versions", Qualifier="1")
    assert result["tag"] == "one" and result["version"] == "1"
    assert answer["ExecutedVersion"] == "1"
    assert invoke(lam, "ops-versions:2")[1]["tag"] == "two"
    lam.create_alias(FunctionName="ops-versions", Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.delete_function(FunctionName="ops-versions", Qualifier="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.delete_function(FunctionName="ops-versions", Qualifier="$LATEST")
    lam.delete_function(FunctionName="ops-versions", Qualifier="2")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="ops-versions", Qualifier="2")
    lam.delete_function(FunctionName="ops-versions")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="ops-versions")


def test_aliases(lam: Any) -> None:
    create(lam, "ops-alias")
    lam.publish_version(FunctionName="ops-alias")
    made = lam.create_alias(
        FunctionName="ops-alias", Name="prod", FunctionVersion="1", Description="d"
    )
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert made["AliasArn"].endswith(":function:ops-alias:prod")
    assert lam.get_alias(FunctionName="ops-alias", Name="prod")["FunctionVersion"] == "1"
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_alias(FunctionName="ops-alias", Name="prod", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName="ops-alias", Name="nope", FunctionVersion="9")
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_alias(FunctionName="ops-alias", Name="prod", RevisionId="stale")
    lam.create_alias(FunctionName="ops-alias", Name="edge", FunctionVersion="$LATEST")
    listed = lam.list_aliases(FunctionName="ops-alias")["Aliases"]
    assert [a["Name"] for a in listed] == ["edge", "prod"]
    answer, result = invoke(lam, "ops-alias", Qualifier="edge")
    assert answer["ExecutedVersion"] == "$LATEST"
    answer, result = invoke(lam, "ops-alias:prod")
    assert answer["ExecutedVersion"] == "1" and result["version"] == "1"
    config = lam.get_function_configuration(FunctionName="ops-alias", Qualifier="prod")
    assert config["Version"] == "1"
    lam.delete_alias(FunctionName="ops-alias", Name="edge")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName="ops-alias", Name="edge")


def test_alias_weights_route_within_tolerance(lam: Any) -> None:
    create(lam, "ops-weights")
    lam.publish_version(FunctionName="ops-weights")
    lam.update_function_code(FunctionName="ops-weights", ZipFile=zip_of(source("two")))
    lam.publish_version(FunctionName="ops-weights")
    alias = lam.create_alias(
        FunctionName="ops-weights", Name="canary", FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}},
    )  # fmt: skip
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    n = 300
    executed = []
    for _ in range(n):
        answer, result = invoke(lam, "ops-weights", Qualifier="canary")
        assert {"1": "one", "2": "two"}[answer["ExecutedVersion"]] == result["tag"]
        executed.append(answer["ExecutedVersion"])
    # Binomial(300, 0.3): mean 90, sd 7.9; +-5 sd makes a false failure ~1 in 3 million.
    assert 50 <= executed.count("2") <= 130, executed.count("2")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_alias(
            FunctionName="ops-weights", Name="canary",
            RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}},
        )  # fmt: skip
    cleared = lam.update_alias(
        FunctionName="ops-weights", Name="canary", RoutingConfig={"AdditionalVersionWeights": {}}
    )
    assert "RoutingConfig" not in cleared
    assert {
        invoke(lam, "ops-weights", Qualifier="canary")[0]["ExecutedVersion"] for _ in range(20)
    } == {"1"}


# -- concurrency --------------------------------------------------------------------------------


def test_reserved_concurrency_and_the_unreserved_minimum(lam: Any) -> None:
    create(lam, "ops-reserve")
    assert (
        lam.get_function_concurrency(FunctionName="ops-reserve").get("ReservedConcurrentExecutions")
        is None
    )
    put = lam.put_function_concurrency(FunctionName="ops-reserve", ReservedConcurrentExecutions=10)
    assert put["ReservedConcurrentExecutions"] == 10
    got = lam.get_function_concurrency(FunctionName="ops-reserve")
    assert got["ReservedConcurrentExecutions"] == 10
    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 300
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 290
    assert lam.get_function(FunctionName="ops-reserve")["Concurrency"] == {
        "ReservedConcurrentExecutions": 10
    }
    # 300 in all, 100 stay unreserved: 200 may be reserved by this function at most.
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as info:
        lam.put_function_concurrency(FunctionName="ops-reserve", ReservedConcurrentExecutions=201)
    assert "[100]" in str(info.value)
    lam.put_function_concurrency(FunctionName="ops-reserve", ReservedConcurrentExecutions=200)
    assert invoke(lam, "ops-reserve")[1]["tag"] == "one"
    lam.delete_function_concurrency(FunctionName="ops-reserve")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName="ops-reserve"
    )


def test_reserved_zero_throttles(lam: Any) -> None:
    create(lam, "ops-zero")
    lam.put_function_concurrency(FunctionName="ops-zero", ReservedConcurrentExecutions=0)
    with pytest.raises(lam.exceptions.TooManyRequestsException) as info:
        invoke(lam, "ops-zero")
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    lam.delete_function_concurrency(FunctionName="ops-zero")


def test_provisioned_concurrency(lam: Any) -> None:
    create(lam, "ops-provisioned")
    lam.publish_version(FunctionName="ops-provisioned")
    lam.create_alias(FunctionName="ops-provisioned", Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(
            FunctionName="ops-provisioned", Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName="ops-provisioned", Qualifier="live")
    lam.create_alias(FunctionName="ops-provisioned", Name="edge", FunctionVersion="$LATEST")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(
            FunctionName="ops-provisioned", Qualifier="edge", ProvisionedConcurrentExecutions=1
        )
    put = lam.put_provisioned_concurrency_config(
        FunctionName="ops-provisioned", Qualifier="live", ProvisionedConcurrentExecutions=2
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["RequestedProvisionedConcurrentExecutions"] == 2

    def ready() -> bool:
        got = lam.get_provisioned_concurrency_config(
            FunctionName="ops-provisioned", Qualifier="live"
        )
        return bool(
            got["Status"] == "READY" and got["AvailableProvisionedConcurrentExecutions"] == 2
        )

    wait_for(ready, timeout=60, interval=0.1)
    # The provisioned sandboxes are initialized: the next invocation of the alias is warm.
    answer, _ = invoke(lam, "ops-provisioned", Qualifier="live", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(answer["LogResult"]).decode()
    lam.delete_provisioned_concurrency_config(FunctionName="ops-provisioned", Qualifier="live")
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.delete_provisioned_concurrency_config(FunctionName="ops-provisioned", Qualifier="live")


# -- account and tags ---------------------------------------------------------------------------


def test_account_settings_are_real(lam: Any) -> None:
    before = lam.get_account_settings()
    create(lam, "ops-account", Code={"ZipFile": zip_of(source("account") + "# " + "x" * 1000)})
    after = lam.get_account_settings()
    usage = after["AccountUsage"]
    assert usage["FunctionCount"] == before["AccountUsage"]["FunctionCount"] + 1
    assert usage["FunctionCount"] == len(
        [f for p in lam.get_paginator("list_functions").paginate() for f in p["Functions"]]
    )
    assert usage["TotalCodeSize"] > before["AccountUsage"]["TotalCodeSize"]
    assert after["AccountLimit"]["CodeSizeZipped"] == 50 * 1024 * 1024


def test_tags(lam: Any) -> None:
    arn = create(lam, "ops-tags")["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"a": "1", "b": "2"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1", "b": "2"}
    lam.untag_resource(Resource=arn, TagKeys=["a"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    assert lam.get_function(FunctionName="ops-tags")["Tags"] == {"b": "2"}
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.tag_resource(Resource=arn, Tags={"aws:x": "1"})
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_tags(Resource=arn.replace("ops-tags", "ops-untagged"))


# -- invoke -------------------------------------------------------------------------------------

ERRORS = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    cc = context.client_context
    return {"context": cc is not None and cc.custom}
"""


def test_invocation_types_and_headers(api_daemon: ApiDaemon, lam: Any) -> None:
    create(lam, "ops-invoke", Code={"ZipFile": zip_of(ERRORS)})
    answer, result = invoke(lam, "ops-invoke", {"x": 1})
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert result == {"context": False}
    event = lam.invoke(FunctionName="ops-invoke", InvocationType="Event", Payload=b"{}")
    assert event["StatusCode"] == 202
    dry = lam.invoke(FunctionName="ops-invoke", InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    with api_daemon.daemon.client() as c:
        wait_for(lambda: c.stats("ops-invoke")["invocations"] >= 2)  # the Event ran
    answer, error = invoke(lam, "ops-invoke", {"fail": True}, LogType="Tail")
    assert answer["FunctionError"] == "Unhandled" and answer["StatusCode"] == 200
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail"
    tail = base64.b64decode(answer["LogResult"]).decode()
    assert "asked to fail" in tail and "REPORT RequestId" in tail and len(tail) <= 4096
    context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    # X-Amz-Client-Context reaches the handler as context.client_context.
    answer, result = invoke(lam, "ops-invoke", {}, ClientContext=context)
    assert answer["StatusCode"] == 200 and result == {"context": {"k": "v"}}
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.invoke(FunctionName="ops-invoke", Payload=b"{}", ClientContext="not base64!")
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName="ops-invoke", Payload=b"{not json")
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName="ops-invoke", Payload=b"[" + b"1," * (3 * 1024 * 1024) + b"1]")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="ops-invoke", Qualifier="7")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="ops-missing")


def test_unhandled_errors(lam: Any) -> None:
    crash = "import os\ndef handler(event, context):\n    os._exit(3)\n"
    create(lam, "ops-crash", Code={"ZipFile": zip_of(crash)})
    answer, error = invoke(lam, "ops-crash", LogType="Tail")
    assert answer["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] in base64.b64decode(answer["LogResult"]).decode()


def test_payload_bytes_reach_the_handler_unchanged(lam: Any) -> None:
    echo = (
        "import json\n"
        "def handler(event, context):\n"
        "    return {'text': event['text'], 'n': event['n']}\n"
    )
    create(lam, "ops-bytes", Code={"ZipFile": zip_of(echo)})
    raw = '{"text": "caf\\u00e9 \u2603 \\ud83d\\ude00", "n": 12345678901234567890}'.encode()
    answer = lam.invoke(FunctionName="ops-bytes", Payload=raw)
    assert json.loads(answer["Payload"].read()) == json.loads(raw)


def test_response_streaming_is_refused_clearly(lam: Any) -> None:
    create(lam, "ops-stream")
    with pytest.raises(ClientError) as info:
        lam.invoke_with_response_stream(FunctionName="ops-stream", Payload=b"{}")
    assert error_code(info) == "UnsupportedOperationException"
    assert "Invoke" in str(info.value)


# -- who may do what ----------------------------------------------------------------------------


def test_invoke_only_keys_may_invoke_and_read(api_daemon: ApiDaemon, lam: Any) -> None:
    create(lam, "ops-invoker")
    reader = api_daemon.client(api_daemon.invoker)
    assert invoke(reader, "ops-invoker")[1]["tag"] == "one"
    assert reader.get_function(FunctionName="ops-invoker")["Configuration"]["State"] == "Active"
    for call in (
        lambda: create(reader, "ops-invoker-2"),
        lambda: reader.delete_function(FunctionName="ops-invoker"),
        lambda: reader.publish_version(FunctionName="ops-invoker"),
        lambda: reader.put_function_concurrency(
            FunctionName="ops-invoker", ReservedConcurrentExecutions=1
        ),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert error_code(info) == "AccessDeniedException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert lam.get_function(FunctionName="ops-invoker")  # still there


def test_unknown_wrong_and_removed_keys_are_refused(api_daemon: ApiDaemon, lam: Any) -> None:
    create(lam, "ops-auth")
    wrong = dict(api_daemon.admin, SecretAccessKey="x" * 40)
    with pytest.raises(ClientError) as info:
        api_daemon.client(wrong).get_function(FunctionName="ops-auth")
    assert error_code(info) == "InvalidSignatureException"
    unknown = {"AccessKeyId": "AKIDAAAAAAAAAAAAAAAA", "SecretAccessKey": "x" * 40}
    with pytest.raises(ClientError) as info:
        api_daemon.client(unknown).get_function(FunctionName="ops-auth")
    assert error_code(info) == "UnrecognizedClientException"
    with api_daemon.daemon.client() as c:
        doomed = c.call("keys_create", admin=True, key_name="doomed")["key"]
        assert api_daemon.client(doomed).get_function(FunctionName="ops-auth")
        c.call("keys_remove", key="doomed")
    with pytest.raises(ClientError) as info:
        api_daemon.client(doomed).get_function(FunctionName="ops-auth")
    assert error_code(info) == "UnrecognizedClientException"


def test_a_big_zip_is_parsed_off_the_loop_and_deployed(lam: Any) -> None:
    import io
    import os
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source("big"))
        z.writestr("blob.bin", os.urandom(2 * 1024 * 1024))  # incompressible: a 2 MB zip
    made = create(lam, "ops-big", Code={"ZipFile": buf.getvalue()})
    assert made["CodeSize"] >= 2 * 1024 * 1024
    assert invoke(lam, "ops-big")[1]["tag"] == "big"
    updated = lam.update_function_code(FunctionName="ops-big", ZipFile=buf.getvalue())
    assert updated["CodeSha256"] == made["CodeSha256"]
