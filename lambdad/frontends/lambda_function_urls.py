"""The Lambda API's function URL operations, on the trigger model (url triggers).

``CreateFunctionUrlConfig``, ``GetFunctionUrlConfig``, ``UpdateFunctionUrlConfig``,
``DeleteFunctionUrlConfig`` and ``ListFunctionUrlConfigs`` as botocore models them
(``2021-10-31/functions/{FunctionName}/url[s]``). A function URL made here is the same url
trigger ``lambdad trigger add url`` makes (named ``FUNCTION-url``, or
``FUNCTION-QUALIFIER-url``), served by the gateway; the Lambda API front adds these handlers
to its table with :func:`register`.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final

from lambdad.frontends.http import Response
from lambdad.frontends.lambda_api_routes import (
    ApiError,
    Call,
    Handler,
    function_arn,
    json_body,
    json_response,
    qualified,
)
from lambdad.service import Service
from lambdad.triggers.manager import Triggers, of
from lambdad.triggers.store import Trigger

if TYPE_CHECKING:
    from lambdad.frontends.lambda_api import Context

OPERATIONS: Final = (
    "CreateFunctionUrlConfig",
    "GetFunctionUrlConfig",
    "UpdateFunctionUrlConfig",
    "DeleteFunctionUrlConfig",
    "ListFunctionUrlConfigs",
)
CORS_FIELDS: Final = {
    "AllowOrigins": "allow_origins",
    "AllowMethods": "allow_methods",
    "AllowHeaders": "allow_headers",
    "ExposeHeaders": "expose_headers",
    "MaxAge": "max_age",
    "AllowCredentials": "allow_credentials",
}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ts))


def _cors_in(doc: Any) -> dict[str, Any] | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ApiError("InvalidParameterValueException", "Cors must be an object")
    unknown = set(doc) - set(CORS_FIELDS)
    if unknown:
        raise ApiError(
            "InvalidParameterValueException", f"Cors: unknown member(s) {sorted(unknown)}"
        )
    return {CORS_FIELDS[k]: v for k, v in doc.items()}


def _cors_out(cors: dict[str, Any] | None) -> dict[str, Any]:
    if cors is None:
        return {}
    out: dict[str, Any] = {}
    for aws, ours in CORS_FIELDS.items():
        value = cors.get(ours)
        if value not in (None, [], 0, False):
            out[aws] = value
    return out


def _describe(triggers: Triggers, trigger: Trigger, region: str) -> dict[str, Any]:
    return {
        "FunctionUrl": triggers.function_url(trigger) or "",
        "FunctionArn": function_arn(region, trigger.function, trigger.qualifier),
        "AuthType": trigger.settings["auth_type"],
        "Cors": _cors_out(trigger.settings.get("cors")),
        "CreationTime": _iso(trigger.created),
        "LastModifiedTime": _iso(trigger.created),
        "InvokeMode": "BUFFERED",
    }


def _find(triggers: Triggers, function: str, qualifier: str | None) -> Trigger:
    for t in triggers.store:
        if t.kind == "url" and t.function == function and t.qualifier == qualifier:
            return t
    target = function if qualifier is None else f"{function}:{qualifier}"
    raise ApiError(
        "ResourceNotFoundException",
        f"The resource you requested does not exist: function URL of {target}",
    )


def _settings(body: dict[str, Any], require_auth: bool) -> dict[str, Any]:
    unknown = set(body) - {"AuthType", "Cors", "InvokeMode"}
    if unknown:
        raise ApiError("InvalidParameterValueException", f"unknown member(s) {sorted(unknown)}")
    if body.get("InvokeMode", "BUFFERED") != "BUFFERED":
        raise ApiError(
            "InvalidParameterValueException",
            "InvokeMode RESPONSE_STREAM is not supported by lambdad",
        )
    settings: dict[str, Any] = {}
    if "AuthType" in body:
        settings["auth_type"] = body["AuthType"]
    elif require_auth:
        raise ApiError("InvalidParameterValueException", "AuthType is required")
    if "Cors" in body:
        settings["cors"] = _cors_in(body["Cors"])
    return settings


def handlers(service: Service) -> dict[str, Handler]:
    """The five operations, bound to ``service``'s triggers."""

    async def create(call: Call) -> Response:
        function, qualifier = qualified(call.match)
        triggers = of(service)
        settings = _settings(json_body(call.request), require_auth=True)
        name = f"{function}-url" if qualifier is None else f"{function}-{qualifier}-url"
        triggers.add("url", name, function, qualifier, settings)
        return json_response(201, _describe(triggers, triggers.store.get(name), call.region))

    async def get(call: Call) -> Response:
        function, qualifier = qualified(call.match)
        triggers = of(service)
        return json_response(
            200, _describe(triggers, _find(triggers, function, qualifier), call.region)
        )

    async def update(call: Call) -> Response:
        function, qualifier = qualified(call.match)
        triggers = of(service)
        trigger = _find(triggers, function, qualifier)
        triggers.update_settings(trigger.name, _settings(json_body(call.request), False))
        return json_response(200, _describe(triggers, trigger, call.region))

    async def delete(call: Call) -> Response:
        function, qualifier = qualified(call.match)
        triggers = of(service)
        triggers.remove(_find(triggers, function, qualifier).name)
        return Response(204)

    async def list_urls(call: Call) -> Response:
        function, _ = qualified(call.match)
        triggers = of(service)
        service.registry.get(function)  # ResourceNotFound for an unknown function
        found = [
            _describe(triggers, t, call.region)
            for t in triggers.store
            if t.kind == "url" and t.function == function
        ]
        return json_response(200, {"FunctionUrlConfigs": found})

    return {
        "CreateFunctionUrlConfig": create,
        "GetFunctionUrlConfig": get,
        "UpdateFunctionUrlConfig": update,
        "DeleteFunctionUrlConfig": delete,
        "ListFunctionUrlConfigs": list_urls,
    }


def register(table: MutableMapping[str, Handler], service: Service) -> None:
    """Add the function URL operations to the Lambda API front's handler table."""
    table.update(handlers(service))


def setup(ctx: Context) -> None:
    """The Lambda API front's extension hook (lambdad.frontends.lambda_api.EXTENSIONS)."""
    register(ctx.handlers, ctx.service)


__all__ = ["OPERATIONS", "handlers", "register", "setup"]
