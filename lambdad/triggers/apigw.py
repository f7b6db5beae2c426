"""API Gateway's Lambda proxy events and response mapping — pure logic (docs/triggers-http.md).

:func:`event_v2` and :func:`event_v1` build payload format 2.0 and 1.0 from one received
request, field for field as AWS documents them; :func:`map_v2` and :func:`map_v1` turn the
function's result back into an HTTP response as API Gateway does, or raise
:class:`InvalidResponse` where API Gateway answers an error instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

ACCOUNT_ID: Final = "000000000000"
TEXT_TYPES: Final = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "+json",
    "+xml",
)
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


class InvalidResponse(Exception):
    """The function's result is not a response API Gateway can map (it answers an error)."""


@dataclass(frozen=True)
class Inbound:
    """What the gateway received, as the events need it."""

    method: str
    raw_path: str  # still percent-encoded
    raw_query: str
    headers: tuple[tuple[str, str], ...]  # lower-case names, repeats kept
    body: bytes
    source_ip: str
    protocol: str  # "HTTP/1.1"
    request_id: str
    epoch_ms: int
    api_id: str  # the API's id (an http trigger's api, a function URL's id)
    domain_name: str  # the Host header, or the gateway's address


@dataclass(frozen=True)
class Outbound:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def clf_time(epoch_ms: int) -> str:
    """``12/Mar/2020:19:03:58 +0000``: the request time as API Gateway writes it."""
    t = time.gmtime(epoch_ms / 1000)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _body(req: Inbound) -> tuple[str | None, bool]:
    """(body, isBase64Encoded): text as text, anything else base64."""
    if not req.body:
        return None, False
    ctype = ",".join(v for k, v in req.headers if k == "content-type").lower()
    if any(t in ctype for t in TEXT_TYPES):
        try:
            return req.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(req.body).decode("ascii"), True


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(raw_query, keep_blank_values=True)


def _decoded_params(params: Mapping[str, str]) -> dict[str, str]:
    return {k: urllib.parse.unquote(v) for k, v in params.items()}


def _domain_prefix(domain: str) -> str:
    return domain.split(".", 1)[0]


def event_v2(
    req: Inbound, route_key: str, path_params: Mapping[str, str], stage: str = "$default"
) -> dict[str, Any]:
    """Payload format 2.0: duplicate headers and query values comma-joined, cookies apart."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in req.headers:
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    query: dict[str, str] = {}
    for name, value in _query_pairs(req.raw_query):
        query[name] = f"{query[name]},{value}" if name in query else value
    body, b64 = _body(req)
    path = urllib.parse.unquote(req.raw_path)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": req.api_id,
        "domainName": req.domain_name,
        "domainPrefix": _domain_prefix(req.domain_name),
        "http": {
            "method": req.method,
            "path": path,
            "protocol": req.protocol,
            "sourceIp": req.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": req.request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": clf_time(req.epoch_ms),
        "timeEpoch": req.epoch_ms,
    }
    if body is not None:
        event["body"] = body
    if path_params:
        event["pathParameters"] = _decoded_params(path_params)
    event["isBase64Encoded"] = b64
    return event


def event_v1(
    req: Inbound, resource: str, path_params: Mapping[str, str], stage: str = "$default"
) -> dict[str, Any]:
    """Payload format 1.0: last value wins in the single-value maps; every value in the
    ``multiValue*`` ones; absent maps are null."""
    multi_headers: dict[str, list[str]] = {}
    for name, value in req.headers:
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in _query_pairs(req.raw_query):
        multi_query.setdefault(name, []).append(value)
    body, b64 = _body(req)
    path = urllib.parse.unquote(req.raw_path)
    user_agent = multi_headers.get("user-agent", [""])[-1]
    return {
        "version": "1.0",
        "resource": resource,
        "path": path,
        "httpMethod": req.method,
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": req.api_id,
            "authorizer": {"claims": None, "scopes": None},
            "domainName": req.domain_name,
            "domainPrefix": _domain_prefix(req.domain_name),
            "extendedRequestId": req.request_id,
            "httpMethod": req.method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": req.source_ip,
                "user": None,
                "userAgent": user_agent,
                "userArn": None,
            },
            "path": path,
            "protocol": req.protocol,
            "requestId": req.request_id,
            "requestTime": clf_time(req.epoch_ms),
            "requestTimeEpoch": req.epoch_ms,
            "resourceId": None,
            "resourcePath": resource,
            "stage": stage,
        },
        "pathParameters": _decoded_params(path_params) or None,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": b64,
    }


def _decoded_body(body: Any, b64: Any) -> bytes:
    if body is None:
        return b""
    if not isinstance(body, str):
        raise InvalidResponse(f"body must be a string, got {type(body).__name__}")
    if not isinstance(b64, bool):
        raise InvalidResponse("isBase64Encoded must be a boolean")
    if b64:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidResponse(f"isBase64Encoded is true but body is not base64: {exc}") from exc
    return body.encode("utf-8", "surrogatepass")


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise InvalidResponse(f"statusCode must be an integer 100-599, got {value!r}")
    return value


def _header_map(value: Any, what: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{what} must be an object")
    out = []
    for name, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise InvalidResponse(f"{what}[{name!r}] must be a string")
        out.append((str(name), str(v)))
    return out


def _multi_header_map(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise InvalidResponse("multiValueHeaders must be an object")
    out: list[tuple[str, str]] = []
    for name, values in value.items():
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise InvalidResponse(f"multiValueHeaders[{name!r}] must be a list")
        out.extend((str(name), str(v)) for v in values)
    return out


def _with_default_type(headers: list[tuple[str, str]], default: str) -> tuple[tuple[str, str], ...]:
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", default))
    return tuple(headers)


def map_v2(result: bytes | None) -> Outbound:
    """Format 2.0's response: an object with ``statusCode`` is a response; any other valid
    JSON is the body of a 200 ``application/json`` response.

    Raises:
        InvalidResponse: not JSON, or a response object with a wrong field.
    """
    text = result if result is not None else b"null"
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidResponse(f"the function's result is not JSON: {exc}") from exc
    if not isinstance(value, dict) or "statusCode" not in value:
        return Outbound(200, (("content-type", "application/json"),), text)
    status = _status(value["statusCode"])
    headers = _header_map(value.get("headers"), "headers")
    cookies = value.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            raise InvalidResponse("cookies must be a list of strings")
        headers.extend(("set-cookie", c) for c in cookies)
    body = _decoded_body(value.get("body"), value.get("isBase64Encoded", False))
    return Outbound(status, _with_default_type(headers, "application/json"), body)


def map_v1(result: bytes | None) -> Outbound:
    """Format 1.0's response: it must be an object with ``statusCode``; API Gateway assumes
    nothing else.

    Raises:
        InvalidResponse: any other shape.
    """
    try:
        value = json.loads(result if result is not None else b"null")
    except ValueError as exc:
        raise InvalidResponse(f"the function's result is not JSON: {exc}") from exc
    if not isinstance(value, dict) or "statusCode" not in value:
        raise InvalidResponse("payload format 1.0 needs an object with statusCode")
    status = _status(value["statusCode"])
    headers = _header_map(value.get("headers"), "headers")
    multi = _multi_header_map(value.get("multiValueHeaders"))
    # Both maps are sent; a name in both takes multiValueHeaders' values.
    multi_names = {k.lower() for k, _ in multi}
    merged = [(k, v) for k, v in headers if k.lower() not in multi_names] + multi
    body = _decoded_body(value.get("body"), value.get("isBase64Encoded", False))
    return Outbound(status, _with_default_type(merged, "application/json"), body)


__all__ = ["Inbound", "InvalidResponse", "Outbound", "event_v1", "event_v2", "map_v1", "map_v2"]
