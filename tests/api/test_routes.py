"""The Lambda API's routing and errors, driven by botocore's own serializer and by boto3.

* Every operation of botocore's Lambda model, serialized by botocore, routes back to itself.
* boto3, signing with keys from a real KeyStore, calls the issue's operations over real HTTP
  (lambdad.frontends.http) against a tiny app that records the parsed operation.
* Every error the API sends makes botocore raise the modelled exception.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import prepare_request_dict
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import OperationModel, Shape
from botocore.serialize import create_serializer

from lambdad import errors
from lambdad.frontends.http import Limits, Request, Response
from lambdad.frontends.lambda_api_routes import (
    ERRORS,
    ISSUE_OPERATIONS,
    OPERATIONS,
    ApiError,
    Call,
    LambdaApi,
    Router,
    http_error,
    json_body,
    parse_function_name,
    qualified,
    sigv4_authenticator,
)
from lambdad.keys import KeyStore, NewKey
from tests.api.helpers import Served, serve

MODEL = botocore.session.get_session().get_service_model("lambda")


# -- the table against the model --------------------------------------------------------------


def test_the_table_is_botocores_model() -> None:
    model = {
        name: (
            MODEL.operation_model(name).http["method"],
            MODEL.operation_model(name).http["requestUri"],
            MODEL.operation_model(name).http.get("responseCode", 200),
        )
        for name in MODEL.operation_names
    }
    ours = {name: (method, uri, status) for name, method, uri, status in OPERATIONS}
    assert len(ours) == len(OPERATIONS)  # no duplicates
    for name, entry in ours.items():
        assert model.get(name) == entry, name
    assert set(ours) >= ISSUE_OPERATIONS
    assert set(model) >= ISSUE_OPERATIONS


def dummy(shape: Shape, name: str = "") -> Any:
    """A minimal value of a shape: required members only."""
    if shape.type_name == "structure":
        return {
            m: dummy(shape.members[m], m)
            for m in shape.required_members  # type: ignore[attr-defined]
        }
    if shape.type_name == "list":
        return [dummy(shape.member)]  # type: ignore[attr-defined]
    if shape.type_name == "map":
        return {"k": dummy(shape.value)}  # type: ignore[attr-defined]
    if shape.type_name in ("integer", "long"):
        return 7
    if shape.type_name in ("float", "double"):
        return 0.5
    if shape.type_name == "boolean":
        return True
    if shape.type_name == "blob":
        return b"blob"
    if shape.type_name == "timestamp":
        return datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    if "FunctionName" in name:
        return "arn:aws:lambda:us-east-1:000000000000:function:my-function"
    return f"{name or 'x'}-value"


def wire(operation: OperationModel, params: dict[str, Any]) -> tuple[str, str, str]:
    request = create_serializer("rest-json", include_validation=False).serialize_to_request(
        params, operation
    )
    prepare_request_dict(request, endpoint_url="http://127.0.0.1:9001")
    url = urlsplit(request["url"])
    return request["method"], url.path, url.query


@pytest.mark.parametrize("name", MODEL.operation_names)
def test_every_model_operation_routes_to_itself(name: str) -> None:
    operation = MODEL.operation_model(name)
    params = dummy(operation.input_shape) if operation.input_shape is not None else {}
    method, path, query = wire(operation, params)
    match = Router().match(method, path, query)
    assert match.operation == name
    for member, shape in operation.input_shape.members.items() if params else []:
        if shape.serialization.get("location") == "uri":
            assert match.params[shape.serialization["name"]] == str(params[member])


def test_the_variants_the_model_tells_apart() -> None:
    router = Router()
    prefix = "/2019-09-30/functions/f/provisioned-concurrency"
    assert router.match("GET", prefix, "Qualifier=live").operation == (
        "GetProvisionedConcurrencyConfig"
    )
    assert router.match("GET", prefix, "List=ALL").operation == "ListProvisionedConcurrencyConfigs"
    assert router.match("GET", "/2018-10-31/layers", "").operation == "ListLayers"
    assert router.match("GET", "/2018-10-31/layers", "find=LayerVersion&Arn=a").operation == (
        "GetLayerVersionByArn"
    )
    with pytest.raises(ApiError) as info:
        router.match("PATCH", "/2015-03-31/functions/f/invocations", "")
    assert (info.value.aws_type, info.value.status) == ("MethodNotAllowedException", 405)
    assert dict(info.value.headers) == {"allow": "POST"}
    for path in ("/", "", "/nope", "/2015-03-31/functions/f/invocations/extra", "/2015-03-31"):
        with pytest.raises(ApiError) as info:
            router.match("GET", path, "")
        assert (info.value.aws_type, info.value.status) == ("UnknownOperationException", 404)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("my-function", ("my-function", None)),
        ("my-function:live", ("my-function", "live")),
        ("my-function:$LATEST", ("my-function", "$LATEST")),
        ("123456789012:function:my-function", ("my-function", None)),
        ("123456789012:function:my-function:7", ("my-function", "7")),
        ("arn:aws:lambda:us-east-1:000000000000:function:my-function", ("my-function", None)),
        ("arn:aws:lambda:eu-west-3:000000000000:function:my-function:3", ("my-function", "3")),
    ],
)
def test_function_names(value: str, expected: tuple[str, str | None]) -> None:
    assert parse_function_name(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "a b", "x" * 65, "f:", "f:1:2", "arn:aws:s3:::bucket", "12:function:f", "a/b"],
)
def test_bad_function_names(value: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_function_name(value)
    assert info.value.aws_type == "InvalidParameterValueException"


def test_a_qualifier_in_the_name_and_the_query_must_agree() -> None:
    router = Router()
    match = router.match("POST", "/2015-03-31/functions/f%3A3/invocations", "Qualifier=3")
    assert qualified(match) == ("f", "3")
    match = router.match("POST", "/2015-03-31/functions/f/invocations", "Qualifier=live")
    assert qualified(match) == ("f", "live")
    match = router.match("POST", "/2015-03-31/functions/f%3A3/invocations", "Qualifier=4")
    with pytest.raises(ApiError, match="derived qualifier from the function name"):
        qualified(match)
    match = router.match("POST", "/2015-03-31/functions/f/invocations", "Qualifier=1&Qualifier=2")
    with pytest.raises(ApiError, match="Qualifier is given more than once"):
        qualified(match)


# -- boto3 against the HTTP machinery ---------------------------------------------------------

RECORDED: list[Call] = []


async def echo(call: Call) -> Response:
    """Records the call; answers the model's success status with a minimal body."""
    RECORDED.append(call)
    if call.request.header("x-test-error"):
        raise ApiError(
            call.request.header("x-test-error") or "",
            "scripted failure",
            **json.loads(call.request.header("x-test-error-args") or "{}"),
        )
    status = call.match.route.status
    if call.operation == "Invoke":
        return Response(status, (("x-amz-executed-version", "$LATEST"),), call.request.body)
    if call.operation == "UpdateFunctionConfiguration":
        json_body(call.request)  # a malformed body must be a 400, not a 500
    return Response(
        status, (("content-type", "application/json"),), b"" if status == 204 else b"{}"
    )


class Api:
    def __init__(self, served: Served, admin: NewKey, invoker: NewKey, keys: KeyStore) -> None:
        self.served = served
        self.admin = admin
        self.invoker = invoker
        self.keys = keys
        self.url = f"http://{served.host}:{served.port}"

    def client(self, key: NewKey | None = None, **config: Any) -> Any:
        key = key or self.admin
        return boto3.client(
            "lambda",
            endpoint_url=self.url,
            region_name="eu-central-1",
            aws_access_key_id=key.key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    keys = KeyStore(str(tmp_path))
    admin = keys.create(name="admin", admin=True)
    invoker = keys.create(name="invoker")

    def is_admin(identity: Any) -> bool:
        key = keys.lookup(identity.access_key_id)
        return key is not None and key.admin

    app = LambdaApi(
        {op: echo for op in ISSUE_OPERATIONS if op != "InvokeWithResponseStream"},
        authenticate=sigv4_authenticator(keys),
        is_admin=is_admin,
    )

    def body_limit(method: str, path: str) -> int:
        return 1000 if path.endswith("/invocations") else 70 * 2**20

    with serve(app, limits=Limits(), error_response=http_error, body_limit=body_limit) as srv:
        RECORDED.clear()
        yield Api(srv, admin, invoker, keys)


ZIP = b"PK\x05\x06" + b"\0" * 18
ROLE = "arn:aws:iam::000000000000:role/x"
ARN = "arn:aws:lambda:eu-central-1:000000000000:function:hello"
PATH = "/2015-03-31/functions/hello/invocations"

CALLS: list[tuple[str, dict[str, Any], dict[str, str], dict[str, list[str]]]] = [
    # (method, kwargs, expected URI labels, expected query)
    ("create_function", {"FunctionName": "hello", "Role": ROLE, "Code": {"ZipFile": ZIP},
                         "Runtime": "python3.11", "Handler": "app.handler", "Publish": True},
     {}, {}),
    ("get_function", {"FunctionName": "hello", "Qualifier": "1"}, {"FunctionName": "hello"},
     {"Qualifier": ["1"]}),
    ("get_function_configuration", {"FunctionName": ARN}, {"FunctionName": ARN}, {}),
    ("list_functions", {"Marker": "m==", "MaxItems": 5}, {},
     {"Marker": ["m=="], "MaxItems": ["5"]}),
    ("update_function_code", {"FunctionName": "hello", "ZipFile": ZIP},
     {"FunctionName": "hello"}, {}),
    ("update_function_configuration", {"FunctionName": "hello", "MemorySize": 256},
     {"FunctionName": "hello"}, {}),
    ("delete_function", {"FunctionName": "hello", "Qualifier": "2"}, {"FunctionName": "hello"},
     {"Qualifier": ["2"]}),
    ("publish_version", {"FunctionName": "hello"}, {"FunctionName": "hello"}, {}),
    ("list_versions_by_function", {"FunctionName": "hello"}, {"FunctionName": "hello"}, {}),
    ("create_alias", {"FunctionName": "hello", "Name": "live", "FunctionVersion": "1",
                      "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}}},
     {"FunctionName": "hello"}, {}),
    ("get_alias", {"FunctionName": "hello", "Name": "live"},
     {"FunctionName": "hello", "Name": "live"}, {}),
    ("update_alias", {"FunctionName": "hello", "Name": "live", "FunctionVersion": "2"},
     {"FunctionName": "hello", "Name": "live"}, {}),
    ("list_aliases", {"FunctionName": "hello", "FunctionVersion": "1"},
     {"FunctionName": "hello"}, {"FunctionVersion": ["1"]}),
    ("delete_alias", {"FunctionName": "hello", "Name": "live"},
     {"FunctionName": "hello", "Name": "live"}, {}),
    ("put_function_concurrency", {"FunctionName": "hello", "ReservedConcurrentExecutions": 3},
     {"FunctionName": "hello"}, {}),
    ("get_function_concurrency", {"FunctionName": "hello"}, {"FunctionName": "hello"}, {}),
    ("delete_function_concurrency", {"FunctionName": "hello"}, {"FunctionName": "hello"}, {}),
    ("put_provisioned_concurrency_config", {"FunctionName": "hello", "Qualifier": "live",
                                            "ProvisionedConcurrentExecutions": 2},
     {"FunctionName": "hello"}, {"Qualifier": ["live"]}),
    ("get_provisioned_concurrency_config", {"FunctionName": "hello", "Qualifier": "live"},
     {"FunctionName": "hello"}, {"Qualifier": ["live"]}),
    ("delete_provisioned_concurrency_config", {"FunctionName": "hello", "Qualifier": "live"},
     {"FunctionName": "hello"}, {"Qualifier": ["live"]}),
    ("publish_layer_version", {"LayerName": "deps", "Content": {"ZipFile": ZIP}},
     {"LayerName": "deps"}, {}),
    ("get_layer_version", {"LayerName": "deps", "VersionNumber": 3},
     {"LayerName": "deps", "VersionNumber": "3"}, {}),
    ("list_layers", {"CompatibleRuntime": "python3.11"}, {},
     {"CompatibleRuntime": ["python3.11"]}),
    ("list_layer_versions", {"LayerName": "deps"}, {"LayerName": "deps"}, {}),
    ("delete_layer_version", {"LayerName": "deps", "VersionNumber": 3},
     {"LayerName": "deps", "VersionNumber": "3"}, {}),
    ("get_account_settings", {}, {}, {}),
    ("tag_resource", {"Resource": ARN, "Tags": {"team": "a b"}}, {"Resource": ARN}, {}),
    ("list_tags", {"Resource": ARN}, {"Resource": ARN}, {}),
    ("untag_resource", {"Resource": ARN, "TagKeys": ["team", "x y"]}, {"Resource": ARN},
     {"tagKeys": ["team", "x y"]}),
    ("invoke", {"FunctionName": "hello", "Payload": b'{"name": "Ada"}', "Qualifier": "live",
                "InvocationType": "RequestResponse", "LogType": "Tail"},
     {"FunctionName": "hello"}, {"Qualifier": ["live"]}),
]  # fmt: skip


def test_boto3_calls_reach_the_right_operation(api: Api) -> None:
    client = api.client()
    seen = set()
    for method, kwargs, labels, query in CALLS:
        RECORDED.clear()
        getattr(client, method)(**kwargs)
        [call] = RECORDED
        operation = client.meta.method_to_api_mapping[method]
        assert call.operation == operation
        assert dict(call.match.params) == labels, method
        assert dict(call.match.query) == query, method
        assert call.identity is not None and call.identity.region == "eu-central-1"
        seen.add(operation)
    assert seen == ISSUE_OPERATIONS - {"InvokeWithResponseStream"}


def test_invoke_passes_the_payload_and_headers_through(api: Api) -> None:
    payload = bytes(range(256)) * 3  # not JSON, not UTF-8: bytes are bytes
    resp = api.client().invoke(FunctionName="hello", Payload=payload, ClientContext="e30=")
    assert resp["Payload"].read() == payload
    assert resp["ExecutedVersion"] == "$LATEST"
    assert resp["StatusCode"] == 200
    assert len(resp["ResponseMetadata"]["RequestId"]) == 36
    [call] = RECORDED
    assert call.request.header("x-amz-client-context") == "e30="


def test_a_file_like_payload_arrives_whole(api: Api) -> None:
    import io

    api.client().invoke(FunctionName="hello", Payload=io.BytesIO(b'{"streamed": true}'))
    [call] = RECORDED
    assert call.request.body == b'{"streamed": true}'


MODELLED = sorted(e for e in ERRORS if e in {s.name for s in MODEL.error_shapes})
UNMODELLED = sorted(set(ERRORS) - set(MODELLED))


def test_the_catalogue_matches_the_model() -> None:
    shapes = {s.name: s for s in MODEL.error_shapes}
    for name in MODELLED:
        status, key = ERRORS[name]
        assert shapes[name].metadata["error"]["httpStatusCode"] == status, name
        assert key in shapes[name].members, name
    for name in ("ResourceNotFoundException", "ResourceConflictException",
                 "InvalidParameterValueException", "RequestTooLargeException",
                 "TooManyRequestsException", "InvalidRequestContentException",
                 "UnsupportedMediaTypeException", "ServiceException"):  # fmt: skip
        assert name in MODELLED


def script_error(client: Any, aws_type: str, args: dict[str, Any]) -> None:
    """Make the app fail GetFunction with ``aws_type`` (headers added before signing)."""

    def add_headers(request: Any, **kw: Any) -> None:
        request.headers["X-Test-Error"] = aws_type
        request.headers["X-Test-Error-Args"] = json.dumps(args)

    client.meta.events.register("before-sign.lambda.GetFunction", add_headers)


@pytest.mark.parametrize("aws_type", MODELLED)
def test_botocore_raises_the_modelled_exception(api: Api, aws_type: str) -> None:
    client = api.client()
    args: dict[str, Any] = {}
    if aws_type == "TooManyRequestsException":
        args = {
            "fields": {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"},
            "headers": [["retry-after", "2"]],
        }
    script_error(client, aws_type, args)
    exc_class = getattr(client.exceptions, aws_type)
    with pytest.raises(exc_class) as info:
        client.get_function(FunctionName="hello")
    error = info.value.response["Error"]
    assert (error["Code"], error["Message"]) == (aws_type, "scripted failure")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == ERRORS[aws_type][0]
    assert info.value.response["Type"] == ("Service" if ERRORS[aws_type][0] >= 500 else "User")
    if aws_type == "TooManyRequestsException":
        assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert info.value.response["retryAfterSeconds"] == "2"


@pytest.mark.parametrize("aws_type", UNMODELLED)
def test_unmodelled_errors_are_client_errors_with_their_code(api: Api, aws_type: str) -> None:
    client = api.client()
    script_error(client, aws_type, {})
    with pytest.raises(ClientError) as info:
        client.get_function(FunctionName="hello")
    assert info.value.response["Error"]["Code"] == aws_type
    assert info.value.response["Error"]["Message"] == "scripted failure"


def test_http_layer_refusals_are_aws_errors(api: Api) -> None:
    client = api.client()
    with pytest.raises(client.exceptions.RequestTooLargeException) as info:
        client.invoke(FunctionName="hello", Payload=b"x" * 1001)
    assert "request body larger than 1000 bytes" in info.value.response["Error"]["Message"]


def test_malformed_json_is_a_400(api: Api) -> None:
    client = api.client()
    client.meta.events.register(
        "before-sign.lambda.UpdateFunctionConfiguration",
        lambda request, **kw: setattr(request, "data", b'{"MemorySize": 12'),
    )
    with pytest.raises(client.exceptions.InvalidRequestContentException) as info:
        client.update_function_configuration(FunctionName="hello", MemorySize=256)
    assert "Could not parse request body into json" in info.value.response["Error"]["Message"]


def raw(api: Api, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], Any]:
    conn = api.served.http()
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read())


def test_unknown_and_unsupported_operations_are_clean_4xx(api: Api) -> None:
    # Unsigned: refused before anything else.
    status, headers, body = raw(api, "GET", "/2015-03-31/functions/")
    assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
    assert body == {"Type": "User", "message": "Missing Authentication Token"}

    client = api.client()
    for path, method, aws_type, status in [
        ("/nothing/here", "GET", "UnknownOperationException", 404),
        ("/2015-03-31/functions/hello/invocations", "GET", "MethodNotAllowedException", 405),
        ("/2015-03-31/event-source-mappings", "GET", "UnsupportedOperationException", 400),
    ]:
        client = api.client()

        def reroute(request: Any, _p: str = path, _m: str = method, **kw: Any) -> None:
            request.url = api.url + _p
            request.method = _m

        client.meta.events.register("before-sign.lambda.ListFunctions", reroute)
        with pytest.raises(ClientError) as info:
            client.list_functions()
        assert info.value.response["Error"]["Code"] == aws_type
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    # A model operation nobody implements names itself.
    assert "ListEventSourceMappings operation" in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:
        client.invoke_with_response_stream(FunctionName="hello", Payload=b"{}")
    assert info.value.response["Error"]["Code"] == "UnsupportedOperationException"


def test_signature_refusals(api: Api) -> None:
    good = api.client()
    good.list_functions()

    wrong_secret = boto3.client(
        "lambda",
        endpoint_url=api.url,
        region_name="us-east-1",
        aws_access_key_id=api.admin.key.access_key_id,
        aws_secret_access_key="x" * 40,
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        wrong_secret.list_functions()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    unknown = boto3.client(
        "lambda",
        endpoint_url=api.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDAAAAAAAAAAAAAAAA",
        aws_secret_access_key="x" * 40,
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        unknown.list_functions()
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"

    unsigned = boto3.client(
        "lambda",
        endpoint_url=api.url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        unsigned.list_functions()
    assert info.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"

    api.keys.remove("admin")
    with pytest.raises(ClientError) as info:
        good.list_functions()
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_an_invoke_only_key(api: Api) -> None:
    client = api.client(api.invoker)
    client.invoke(FunctionName="hello", Payload=b"{}")
    client.get_function(FunctionName="hello")
    client.list_aliases(FunctionName="hello")
    for method, kwargs in [
        ("create_alias", {"FunctionName": "hello", "Name": "live", "FunctionVersion": "1"}),
        ("delete_function", {"FunctionName": "hello"}),
        ("publish_version", {"FunctionName": "hello"}),
        ("tag_resource", {"Resource": ARN, "Tags": {"a": "b"}}),
    ]:
        RECORDED.clear()
        with pytest.raises(ClientError) as info:
            getattr(client, method)(**kwargs)
        assert info.value.response["Error"]["Code"] == "AccessDeniedException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert RECORDED == []  # refused before the handler


def test_keep_alive_is_what_boto3_uses(api: Api) -> None:
    client = api.client()
    for _ in range(20):
        # Reading the payload is what hands the connection back to boto3's pool.
        assert client.invoke(FunctionName="hello", Payload=b"{}")["Payload"].read() == b"{}"
    peers = {call.request.peer for call in RECORDED}
    assert len(peers) == 1


def test_direct_http_client_sees_a_json_error_for_garbage(api: Api) -> None:
    conn = http.client.HTTPConnection(api.served.host, api.served.port, timeout=10)
    api.served.clients.append(conn)
    conn.request("POST", "/2015-03-31/functions/f/invocations", body=b"x" * 2000)
    resp = conn.getresponse()
    assert resp.status == 413
    assert resp.getheader("x-amzn-errortype") == "RequestTooLargeException"
    assert json.loads(resp.read())["message"] == "request body larger than 1000 bytes"


# -- the error mapping and the application, without a network -------------------------------


@pytest.mark.parametrize(
    ("error", "aws_type", "status"),
    [
        (errors.ResourceNotFound("Function not found: f"), "ResourceNotFoundException", 404),
        (errors.ResourceConflict("Alias already exists: a"), "ResourceConflictException", 409),
        (errors.InvalidParameterValue("bad", field="x"), "InvalidParameterValueException", 400),
        (errors.InvalidRequest("not json"), "InvalidRequestContentException", 400),
        (errors.RequestTooLarge("6 MB"), "RequestTooLargeException", 413),
        (errors.AccessDenied("no"), "AccessDeniedException", 403),
        (errors.PreconditionFailed("stale"), "PreconditionFailedException", 412),
        (errors.ShuttingDown("draining"), "ServiceException", 503),
        (errors.ServiceError("broken"), "ServiceException", 500),
    ],
)
def test_core_errors_map_to_aws_errors(
    error: errors.LambdadError, aws_type: str, status: int
) -> None:
    api_error = ApiError.from_lambdad(error)
    assert (api_error.aws_type, api_error.status, api_error.message) == (
        aws_type,
        status,
        error.message,
    )
    response = api_error.response("rid")
    assert response.status == status
    headers = dict(response.headers)
    assert headers["x-amzn-errortype"] == aws_type and headers["x-amzn-requestid"] == "rid"
    body = json.loads(response.body)
    assert body[ERRORS[aws_type][1]] == error.message
    assert body["Type"] == ("Service" if status >= 500 else "User")


def test_throttles_carry_reason_and_retry_after() -> None:
    error = errors.TooManyRequests(
        "Rate exceeded", reason="ReservedFunctionConcurrentInvocationLimitExceeded"
    )
    response = ApiError.from_lambdad(error).response("rid")
    assert response.status == 429
    assert dict(response.headers)["retry-after"] == "1"
    assert json.loads(response.body) == {
        "Type": "User",
        "message": "Rate exceeded",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }


def test_the_application_never_lets_an_exception_out() -> None:
    async def broken(call: Call) -> Response:
        raise KeyError("a bug")

    async def core_error(call: Call) -> Response:
        raise errors.ResourceNotFound("Function not found: nope")

    app = LambdaApi({"GetFunction": broken, "Invoke": core_error})

    def run(method: str, path: str) -> Response:
        return asyncio.run(app(Request(method, path, "", ())))

    response = run("GET", "/2015-03-31/functions/f")
    assert response.status == 500
    assert dict(response.headers)["x-amzn-errortype"] == "ServiceException"
    assert "a bug" in json.loads(response.body)["Message"]
    response = run("POST", "/2015-03-31/functions/nope/invocations")
    assert (response.status, dict(response.headers)["x-amzn-errortype"]) == (
        404,
        "ResourceNotFoundException",
    )
    ok = asyncio.run(LambdaApi({"Invoke": echo})(Request("POST", PATH, "", (), b"{}")))
    assert ok.status == 200 and ok.body == b"{}"
    assert len(dict(ok.headers)["x-amzn-requestid"]) == 36


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"{bad", b"\xff\xfe"])
def test_json_body_wants_an_object(body: bytes) -> None:
    with pytest.raises(ApiError) as info:
        json_body(Request("POST", "/", "", (), body))
    assert info.value.aws_type == "InvalidRequestContentException"
    assert json_body(Request("POST", "/", "", (), b"  ")) == {}
    assert json_body(Request("POST", "/", "", (), b'{"a": 1}')) == {"a": 1}
