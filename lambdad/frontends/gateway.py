"""The HTTP gateway: API Gateway HTTP/REST API routes and function URLs in front of functions.

``gateway_address`` (``lambdad serve --gateway HOST:PORT``) turns it on. It serves, on the
HTTP/1.1 machinery of :mod:`lambdad.frontends.http`:

* **http triggers** — routes as HTTP APIs define them (``GET /items/{id}``, ``{proxy+}``,
  ``ANY``, ``$default``; the most specific wins, :mod:`lambdad.triggers.routes`), each with
  payload format 2.0 (default) or 1.0, and ``api = "rest"`` for REST API semantics;
* **s3 push triggers** — ``POST /s3-events/NAME``: S3 notifications from MinIO / Ceph RGW,
  stored as async events (:mod:`lambdad.buckets.push`);
* **url triggers** — a function's URL, ``/lambda-url/FUNCTION[:QUALIFIER]/...``, payload
  2.0, ``AuthType`` ``NONE`` or ``AWS_IAM`` (SigV4 against the daemon's API keys).

Each request becomes one synchronous invocation through :meth:`Service.invoke`; the result
is mapped back as API Gateway does (:mod:`lambdad.triggers.apigw`). The error answers per
API type are in :data:`ERRORS` (docs/triggers-http.md, "Errors").
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any, Final

from lambdad import keys as keys_mod
from lambdad.buckets import push
from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import LambdadError, RequestTooLarge, ResourceNotFound, TooManyRequests
from lambdad.frontends.http import HttpServer, Limits, Request, Response
from lambdad.keys import KeyStore
from lambdad.model import Caller, InvokeRequest
from lambdad.service import Service
from lambdad.sigv4 import SignatureError, verify
from lambdad.triggers import apigw, routes
from lambdad.triggers.manager import S3_PUSH_PREFIX, URL_PREFIX, of
from lambdad.triggers.store import Trigger

log = logging.getLogger("lambdad")

MAX_BODY: Final = 6 * 1024 * 1024  # API Gateway's and Lambda's synchronous payload limit
JSON: Final = (("content-type", "application/json"),)

# What API Gateway answers when the function cannot: (status, body), by API type and cause.
# HTTP APIs: a function error, a timeout (a function error in Lambda) or a response it cannot
# map is 500 "Internal Server Error". REST APIs: a function error or an unmappable response is
# 502, a refused invocation 500, both "Internal server error". Function URLs: 502. A throttle
# is 429 everywhere (AWS maps Lambda's 429 to a 5xx; lambdad answers 429 so clients back off:
# docs/triggers-http.md).
ERRORS: Final[dict[str, dict[str, tuple[int, bytes]]]] = {
    "http": {
        "function": (500, b'{"message":"Internal Server Error"}'),
        "refused": (500, b'{"message":"Internal Server Error"}'),
        "throttled": (429, b'{"message":"Too Many Requests"}'),
    },
    "rest": {
        "function": (502, b'{"message": "Internal server error"}'),
        "refused": (500, b'{"message": "Internal server error"}'),
        "throttled": (429, b'{"message":"Too Many Requests"}'),
    },
    "url": {
        "function": (502, b'{"Message":"Internal Server Error"}'),
        "refused": (500, b'{"Message":"Internal Server Error"}'),
        "throttled": (429, b'{"Message":"Rate Exceeded."}'),
    },
}
NOT_FOUND: Final = Response(404, JSON, b'{"message":"Not Found"}')
FORBIDDEN: Final = Response(403, JSON, b'{"Message":"Forbidden"}')


def error_response(status: int, message: str) -> Response:
    """The gateway's own refusals (malformed HTTP, 413, 431, ...) in API Gateway's dialect."""
    text = {413: "Request Entity Too Large", 400: "Bad Request"}.get(status, message)
    return Response(status, JSON, json.dumps({"message": text}).encode())


def _peer_ip(peer: Any) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else "127.0.0.1"


class Gateway:
    """The gateway as an HTTP application (tested directly, without a daemon, as well)."""

    def __init__(self, service: Service, keys_dir: str) -> None:
        self.service = service
        self.keys_dir = keys_dir
        self._keys: KeyStore | None = None
        self._keys_mtime = -1.0
        self.address = ""

    def keys(self) -> KeyStore:
        """The API key store, re-read when its file changed (keys are added by other fronts)."""
        path = os.path.join(self.keys_dir, keys_mod.FILE_NAME)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = 0.0
        if self._keys is None or mtime != self._keys_mtime:
            self._keys = KeyStore(self.keys_dir)
            self._keys_mtime = mtime
        return self._keys

    async def __call__(self, request: Request) -> Response:
        triggers = of(self.service)
        if request.path.startswith(URL_PREFIX):
            return await self._function_url(request, triggers.url_trigger)
        if request.path.startswith(S3_PUSH_PREFIX):  # MinIO / Ceph RGW (lambdad/buckets/push.py)
            answer = await push.accept(self.service, request.method, request.path,
                                       request.header("authorization"), request.body)  # fmt: skip
            return Response(answer.status, JSON, json.dumps(answer.body).encode())
        table = triggers.http_routes()
        if request.method == "OPTIONS" and request.header("access-control-request-method"):
            preflight = self._preflight(request, table)
            if preflight is not None:
                return preflight
        match = routes.best(table, request.method, request.path)
        if match is None:
            return NOT_FOUND
        route, obj, params = match
        assert isinstance(obj, Trigger)
        trigger = obj
        inbound = self._inbound(request, request.path, api_id=trigger.name)
        if trigger.settings["payload_format"] == "1.0":
            # A $default route has no path of its own: API Gateway calls its resource /{proxy+}.
            resource = "/{proxy+}" if route.default else "/" + "/".join(route.segments)
            event = apigw.event_v1(inbound, resource, params)
        else:
            event = apigw.event_v2(inbound, route.key, params)
        kind = trigger.settings["api"]
        response = await self._invoke(trigger, event, kind, trigger.settings["payload_format"])
        return _with_cors(response, trigger.settings["cors"], request)

    async def _function_url(self, request: Request, lookup: Any) -> Response:
        rest = request.path[len(URL_PREFIX) :]
        target, _, tail = rest.partition("/")
        trigger = lookup(target)
        if trigger is None:
            return NOT_FOUND
        if trigger.settings["auth_type"] == "AWS_IAM":
            try:
                verify(
                    request.method,
                    request.path,
                    request.query,
                    request.headers,
                    request.body,
                    self.keys().date_key,
                )
            except SignatureError as exc:
                return Response(403, JSON, json.dumps({"Message": exc.message}).encode())
        cors = trigger.settings["cors"]
        preflight = request.method == "OPTIONS" and request.header("access-control-request-method")
        if preflight and cors is not None:
            return _preflight_response(cors, request)
        inbound = self._inbound(request, "/" + tail, api_id=trigger.function)
        event = apigw.event_v2(inbound, "$default", {})
        return _with_cors(await self._invoke(trigger, event, "url", "2.0"), cors, request)

    def _inbound(self, request: Request, raw_path: str, api_id: str) -> apigw.Inbound:
        return apigw.Inbound(
            method=request.method,
            raw_path=raw_path,
            raw_query=request.query,
            headers=request.headers,
            body=request.body,
            source_ip=_peer_ip(request.peer),
            protocol=f"HTTP/{request.http_version}",
            request_id=str(uuid.uuid4()),
            epoch_ms=int(time.time() * 1000),
            api_id=api_id,
            domain_name=request.header("host") or self.address or "localhost",
        )

    async def _invoke(
        self, trigger: Trigger, event: dict[str, Any], kind: str, payload_format: str
    ) -> Response:
        counters = of(self.service).counters.get(trigger.name)
        errors = ERRORS[kind]
        if counters is not None:
            counters.received += 1
        payload = json.dumps(event).encode()
        request = InvokeRequest(
            trigger.function,
            payload,
            qualifier=trigger.qualifier,
            caller=Caller(front="gateway", principal=trigger.name),
        )
        failure: str | None = None
        try:
            result = await self.service.invoke(request)
        except TooManyRequests as exc:
            failure, status_body, note = "throttled", errors["throttled"], exc.message
        except RequestTooLarge as exc:
            failure, status_body, note = (
                "too large",
                (413, b'{"message":"Request Entity Too Large"}'),
                exc.message,
            )
        except ResourceNotFound as exc:
            failure, status_body, note = "refused", errors["refused"], exc.message
        except LambdadError as exc:
            failure, status_body, note = "refused", errors["refused"], f"{exc.type}: {exc.message}"
        else:
            if counters is not None:
                counters.invoked += 1
            if result.error is not None:
                failure, status_body = "function", errors["function"]
                note = f"{result.error.get('errorType')}: {result.error.get('errorMessage')}"
            else:
                try:
                    out = (apigw.map_v1 if payload_format == "1.0" else apigw.map_v2)(result.result)
                except apigw.InvalidResponse as exc:
                    failure, status_body, note = "function", errors["function"], str(exc)
                else:
                    return Response(out.status, out.headers, out.body)
        if counters is not None:
            counters.failed += 1
            counters.last_error = f"{failure}: {note}"
        status, body = status_body
        return Response(status, (*JSON, ("x-amzn-errortype", _error_type(failure))), body)

    def _preflight(
        self, request: Request, table: list[tuple[routes.Route, object]]
    ) -> Response | None:
        """CORS preflight: answered by the gateway with the CORS of the routes on the path."""
        segments = request.path[1:].split("/") if request.path != "/" else []
        for route, obj in sorted(table, key=lambda r: r[0].rank()):
            assert isinstance(obj, Trigger)
            cors = obj.settings["cors"]
            if cors is None or route.default:
                continue
            if route.match(route.method if route.method != "ANY" else "GET", segments) is not None:
                return _preflight_response(cors, request)
        return None


def _error_type(failure: str) -> str:
    return {
        "throttled": "TooManyRequestsException",
        "too large": "RequestEntityTooLarge",
        "function": "InternalServerErrorException",
    }.get(failure, "InternalServerErrorException")


def _origin_allowed(cors: dict[str, Any], origin: str | None) -> str | None:
    if origin is None:
        return None
    allowed = cors["allow_origins"]
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def _preflight_response(cors: dict[str, Any], request: Request) -> Response:
    origin = _origin_allowed(cors, request.header("origin"))
    if origin is None:
        return Response(204, ())
    headers = [("access-control-allow-origin", origin)]
    if cors["allow_methods"]:
        headers.append(("access-control-allow-methods", ",".join(cors["allow_methods"])))
    if cors["allow_headers"]:
        headers.append(("access-control-allow-headers", ",".join(cors["allow_headers"])))
    if cors["max_age"]:
        headers.append(("access-control-max-age", str(cors["max_age"])))
    if cors["allow_credentials"]:
        headers.append(("access-control-allow-credentials", "true"))
    if origin != "*":
        headers.append(("vary", "origin"))
    return Response(204, tuple(headers))


def _with_cors(response: Response, cors: dict[str, Any] | None, request: Request) -> Response:
    if cors is None:
        return response
    origin = _origin_allowed(cors, request.header("origin"))
    if origin is None:
        return response
    extra = [("access-control-allow-origin", origin)]
    if cors["expose_headers"]:
        extra.append(("access-control-expose-headers", ",".join(cors["expose_headers"])))
    if cors["allow_credentials"]:
        extra.append(("access-control-allow-credentials", "true"))
    return Response(response.status, (*response.headers, *extra), response.body)


class GatewayFront(Component):
    name = "gateway"

    def __init__(self, service: Service, config: DaemonConfig) -> None:
        self.service = service
        self.wanted = config.gateway_address
        self.app = Gateway(service, config.state_dir)
        self.server = HttpServer(
            self.app, limits=Limits(max_body_bytes=MAX_BODY), error_response=error_response
        )

    async def start(self) -> None:
        host, _, port = self.wanted.rpartition(":")
        address = await self.server.start(host or "127.0.0.1", int(port))
        self.app.address = address
        self.service.addresses[self.name] = address

    async def stop(self) -> None:
        await self.server.close()


def create(service: Service, config: DaemonConfig) -> GatewayFront | None:
    """The gateway, if ``gateway_address`` asks for one."""
    return GatewayFront(service, config) if config.gateway_address else None
