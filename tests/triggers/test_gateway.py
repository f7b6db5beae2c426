"""The HTTP gateway against the real daemon: routes, both payload formats, response mapping,
errors, function URLs (NONE and AWS_IAM), CORS — events checked with Powertools' data classes."""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEvent,
    APIGatewayProxyEventV2,
)

from lambdad.errors import InvalidParameterValue, ResourceConflict
from tests.conftest import DaemonProcess, write_function

ECHO = """
import json
def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps(event)}
"""
SHAPES = """
import base64, json
def handler(event, context):
    kind = (event.get("queryStringParameters") or {}).get("kind", "")
    if kind == "plain":
        return {"hello": "world"}
    if kind == "binary":
        return {"statusCode": 201, "body": base64.b64encode(bytes(range(256))).decode(),
                "isBase64Encoded": True, "headers": {"content-type": "application/octet-stream"},
                "cookies": ["a=1; Path=/", "b=2"]}
    if kind == "raise":
        raise ValueError("boom")
    if kind == "badstatus":
        return {"statusCode": "two hundred"}
    return "just a string"
"""


def request(
    address: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        got: dict[str, list[str]] = {}
        for k, v in resp.getheaders():
            got.setdefault(k.lower(), []).append(v)
        return resp.status, got, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def gw(gw_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fns")
    with gw_daemon.client() as c:
        c.deploy("echo", str(write_function(tmp / "echo", ECHO)))
        c.deploy("shapes", str(write_function(tmp / "shapes", SHAPES)))
        c.deploy("nobody", str(write_function(tmp / "nobody", ECHO)), concurrency=0)
        c.trigger_add("http", "get-item", "echo", route="GET /items/{id}")
        c.trigger_add("http", "items-any", "echo", route="ANY /items/{proxy+}")
        c.trigger_add("http", "v1", "echo", route="POST /v1/{name}", payload_format="1.0")
        c.trigger_add("http", "shapes", "shapes", route="GET /shapes")
        c.trigger_add("http", "shapes-v1", "shapes", route="GET /shapes-v1", payload_format="1.0")
        c.trigger_add("http", "shapes-rest", "shapes", route="GET /shapes-rest", api="rest")
        c.trigger_add("http", "throttled", "nobody", route="GET /throttled")
        c.trigger_add(
            "http",
            "cors",
            "echo",
            route="PUT /cors",
            cors={
                "allow_origins": ["https://app.example"],
                "allow_methods": ["PUT"],
                "allow_headers": ["x-token"],
                "max_age": 60,
            },
        )
        address = c.stats()["gateway_address"]
    return {"address": address}


def test_v2_event_has_every_documented_field(gw: dict[str, Any]) -> None:
    status, _headers, body = request(
        gw["address"],
        "GET",
        "/items/42?a=1&a=2&b=x%20y",
        headers={"Cookie": "c1=v1; c2=v2", "X-Multi": "one", "User-Agent": "tester/1"},
    )
    assert status == 200, body
    event = json.loads(body)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert "cookie" not in event["headers"] and event["headers"]["x-multi"] == "one"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["pathParameters"] == {"id": "42"}
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "GET",
        "path": "/items/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tester/1",
    }
    assert ctx["routeKey"] == "GET /items/{id}" and ctx["stage"] == "$default"
    assert isinstance(ctx["timeEpoch"], int) and ctx["time"].endswith(" +0000")
    assert event["isBase64Encoded"] is False and "body" not in event
    # Powertools reads it as a real handler would.
    pt = APIGatewayProxyEventV2(event)
    assert pt.path_parameters == {"id": "42"}
    assert pt.request_context.http.method == "GET"
    assert pt.cookies == ["c1=v1", "c2=v2"]
    assert pt.get_query_string_value("b") == "x y"
    assert pt.request_context.request_id and pt.raw_path == "/items/42"


def test_most_specific_route_wins_and_unknown_is_404(gw: dict[str, Any]) -> None:
    _, _, body = request(gw["address"], "DELETE", "/items/42/parts/7")
    event = json.loads(body)
    assert event["routeKey"] == "ANY /items/{proxy+}"
    assert event["pathParameters"] == {"proxy": "42/parts/7"}
    status, headers, body = request(gw["address"], "GET", "/nowhere")
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})
    assert headers["content-type"] == ["application/json"]


def test_v1_event_and_binary_request_body(gw: dict[str, Any]) -> None:
    blob = bytes(range(256))
    status, _, body = request(
        gw["address"],
        "POST",
        "/v1/ada?x=1&x=2",
        body=blob,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 200, body
    event = json.loads(body)
    assert event["version"] == "1.0" and event["httpMethod"] == "POST"
    assert event["resource"] == "/v1/{name}" and event["path"] == "/v1/ada"
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["pathParameters"] == {"name": "ada"}
    assert event["multiValueHeaders"]["content-type"] == ["application/octet-stream"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == blob
    pt = APIGatewayProxyEvent(event)
    assert pt.http_method == "POST" and pt.is_base64_encoded is True
    assert pt.request_context.identity.source_ip == "127.0.0.1"
    assert pt.multi_value_query_string_parameters == {"x": ["1", "2"]}


def test_response_mapping_v2(gw: dict[str, Any]) -> None:
    a = gw["address"]
    status, headers, body = request(a, "GET", "/shapes?kind=plain")
    assert (status, headers["content-type"], json.loads(body)) == (
        200,
        ["application/json"],
        {"hello": "world"},
    )
    status, headers, body = request(a, "GET", "/shapes?kind=binary")
    assert status == 201 and body == bytes(range(256))
    assert headers["set-cookie"] == ["a=1; Path=/", "b=2"]
    assert headers["content-type"] == ["application/octet-stream"]
    status, _, body = request(a, "GET", "/shapes?kind=string")
    assert (status, json.loads(body)) == (200, "just a string")
    for kind in ("raise", "badstatus"):
        status, headers, body = request(a, "GET", f"/shapes?kind={kind}")
        assert (status, body) == (500, b'{"message":"Internal Server Error"}'), kind


def test_response_mapping_v1_and_rest_errors(gw: dict[str, Any]) -> None:
    a = gw["address"]
    # 1.0 assumes nothing: a result without statusCode is an error.
    status, _, body = request(a, "GET", "/shapes-v1?kind=plain")
    assert (status, body) == (500, b'{"message":"Internal Server Error"}')
    status, _, body = request(a, "GET", "/shapes-v1?kind=binary")
    assert status == 201 and body == bytes(range(256))
    for kind in ("raise", "plain"):
        status, _, body = request(a, "GET", f"/shapes-rest?kind={kind}")
        assert (status, json.loads(body)) == (502, {"message": "Internal server error"})


def test_throttle_and_too_large(gw: dict[str, Any], gw_daemon: DaemonProcess) -> None:
    status, _, body = request(gw["address"], "GET", "/throttled")
    assert (status, json.loads(body)) == (429, {"message": "Too Many Requests"})
    status, _, body = request(gw["address"], "POST", "/v1/big", body=b"x" * (6 * 2**20 + 1))
    assert status == 413
    with gw_daemon.client() as c:
        counters = {t["name"]: t["counters"] for t in c.trigger_list()}
    assert counters["throttled"]["failed"] >= 1
    assert "throttled" in counters["throttled"]["last_error"]


def test_cors_preflight_and_headers(gw: dict[str, Any]) -> None:
    a = gw["address"]
    pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"}
    status, headers, _ = request(a, "OPTIONS", "/cors", headers=pre)
    assert status == 204
    assert headers["access-control-allow-origin"] == ["https://app.example"]
    assert headers["access-control-allow-methods"] == ["PUT"]
    assert headers["access-control-allow-headers"] == ["x-token"]
    assert headers["access-control-max-age"] == ["60"]
    status, headers, _ = request(a, "PUT", "/cors", headers={"Origin": "https://app.example"})
    assert status == 200 and headers["access-control-allow-origin"] == ["https://app.example"]
    status, headers, _ = request(a, "PUT", "/cors", headers={"Origin": "https://evil.example"})
    assert status == 200 and "access-control-allow-origin" not in headers


def test_function_url_none_and_aws_iam(gw: dict[str, Any], gw_daemon: DaemonProcess) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from lambdad.keys import KeyStore

    with gw_daemon.client() as c:
        url = c.trigger_add("url", "echo-url", "echo")["url"]
        c.trigger_add("url", "shapes-url", "shapes", auth_type="AWS_IAM")
        with pytest.raises(ResourceConflict):
            c.trigger_add("url", "echo-url-2", "echo")
    assert url == f"http://{gw['address']}/lambda-url/echo/"
    status, _, body = request(
        gw["address"],
        "POST",
        "/lambda-url/echo/some/path?q=1",
        b"{}",
        {"Content-Type": "application/json"},
    )
    event = json.loads(body)
    assert status == 200 and event["rawPath"] == "/some/path" and event["body"] == "{}"
    assert event["routeKey"] == "$default"
    # AWS_IAM: unsigned is refused; signed with a daemon key is served.
    status, _, body = request(gw["address"], "GET", "/lambda-url/shapes/?kind=plain")
    assert status == 403
    key = KeyStore(gw_daemon.state_dir).create(name="url-test").credentials()
    creds = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    full = f"http://{gw['address']}/lambda-url/shapes/?kind=plain"
    signed = AWSRequest(method="GET", url=full)
    SigV4Auth(creds, "lambda", "us-east-1").add_auth(signed)
    status, _, body = request(
        gw["address"], "GET", "/lambda-url/shapes/?kind=plain", headers=dict(signed.headers.items())
    )
    assert (status, json.loads(body)) == (200, {"hello": "world"}), body


def test_bad_routes_and_conflicts_are_refused(gw_daemon: DaemonProcess) -> None:
    with gw_daemon.client() as c:
        for route, words in [
            ("FETCH /x", "expected 'METHOD /path'"),
            ("GET x", "must start with '/'"),
            ("GET /{proxy+}/more", "must be the last segment"),
            ("GET /a//b", "invalid path segment"),
        ]:
            with pytest.raises(InvalidParameterValue, match=words):
                c.trigger_add("http", "bad", "echo", route=route)
        with pytest.raises(ResourceConflict, match="taken by trigger 'get-item'"):
            c.trigger_add("http", "dup", "echo", route="GET /items/{id}")
        with pytest.raises(InvalidParameterValue, match="unknown setting"):
            c.trigger_add("http", "typo", "echo", route="GET /t", payload_fromat="1.0")


def test_header_flood_gets_431(gw: dict[str, Any]) -> None:
    flood = {f"x-h{i}": "v" for i in range(150)}
    status, _, body = request(gw["address"], "GET", "/items/1", headers=flood)
    assert status == 431 and json.loads(body)["message"]


def test_slow_client_gets_408_while_others_are_served(gw: dict[str, Any]) -> None:
    import socket

    host, port = gw["address"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as slow:
        slow.sendall(b"GET /items/1 HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        status, _, _ = request(gw["address"], "GET", "/items/2")
        assert status == 200  # the gateway serves others meanwhile
        answer = slow.recv(4096)  # the head deadline (10 s) answers, then closes
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_malformed_http_gets_400_and_gateway_keeps_serving(gw: dict[str, Any]) -> None:
    import socket

    host, port = gw["address"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GARBAGE\x00\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    status, _, _ = request(gw["address"], "GET", "/items/1")
    assert status == 200
