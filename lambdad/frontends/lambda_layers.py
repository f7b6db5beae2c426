"""The Lambda API's layer operations, on the routing and errors of ``lambda_api_routes``.

``PublishLayerVersion`` (``Content.ZipFile``), ``GetLayerVersion``, ``GetLayerVersionByArn``,
``ListLayers``, ``ListLayerVersions`` and ``DeleteLayerVersion``, with the request and response
shapes of botocore's model (``botocore/data/lambda/2015-03-31/service-2.json``). The storage
is the core's (:mod:`lambdad.layers`); this module only translates.

The Lambda API front loads this module as an extension: :func:`setup` adds the operations to
its table (:func:`register`) and tells ``CreateFunction`` which layer versions exist.

What differs from AWS, on purpose: there is no S3, so ``Content`` must be ``ZipFile``
(``S3Bucket``/``S3Key`` → InvalidParameterValueException) and ``Content.Location`` (a presigned
download URL on AWS) is not returned. Layer permissions (``AddLayerVersionPermission`` ...)
stay UnsupportedOperationException: every key of this daemon sees every layer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from lambdad.errors import LambdadError
from lambdad.frontends.http import Response
from lambdad.frontends.lambda_api_routes import (
    ApiError,
    Call,
    Handler,
    json_body,
    json_response,
)
from lambdad.layers import (
    ARCHITECTURES,
    LAYER_NAME_RE,
    RUNTIMES,
    Layers,
    LayerVersion,
    PublishRequest,
    created_date,
    layer_arn,
    parse_layer_name,
    parse_layer_version_arn,
)

if TYPE_CHECKING:
    from lambdad.frontends.lambda_api import Context

MAX_ITEMS: Final = 50  # MaxLayerListItems: 1..50, and the default


def _version_doc(version: LayerVersion, region: str, *, full: bool) -> dict[str, Any]:
    """LayerVersionsListItem, or (``full``) GetLayerVersionResponse."""
    doc: dict[str, Any] = {
        "LayerVersionArn": version.arn(region),
        "Version": version.number,
        "Description": version.description,
        "CreatedDate": created_date(version.created),
    }
    if version.compatible_runtimes:
        doc["CompatibleRuntimes"] = list(version.compatible_runtimes)
    if version.compatible_architectures:
        doc["CompatibleArchitectures"] = list(version.compatible_architectures)
    if version.license_info:
        doc["LicenseInfo"] = version.license_info
    if full:
        doc["LayerArn"] = layer_arn(region, version.name)
        doc["Content"] = {"CodeSha256": version.code_sha256, "CodeSize": version.code_size}
    return doc


def _name(call: Call) -> str:
    """The LayerName label (a name or a layer ARN); a bad one is InvalidParameterValue."""
    return parse_layer_name(call.match.params["LayerName"])


def _number(call: Call) -> int:
    raw = call.match.params["VersionNumber"]
    if not raw.isdigit() or len(raw) > 10:
        raise ApiError(
            "InvalidParameterValueException", f"VersionNumber must be a positive integer: {raw!r}"
        )
    return int(raw)


def _filters(call: Call) -> tuple[str | None, str | None]:
    runtime = call.match.query_one("CompatibleRuntime")
    if runtime is not None and runtime not in RUNTIMES:
        raise ApiError(
            "InvalidParameterValueException",
            f"CompatibleRuntime {runtime!r} is not a Lambda runtime",
        )
    architecture = call.match.query_one("CompatibleArchitecture")
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ApiError(
            "InvalidParameterValueException",
            f"CompatibleArchitecture must be one of {', '.join(ARCHITECTURES)}, "
            f"got {architecture!r}",
        )
    return runtime, architecture


def _page(call: Call) -> tuple[str | None, int]:
    """(Marker, MaxItems) of a list call."""
    raw = call.match.query_one("MaxItems")
    if raw is None:
        return call.match.query_one("Marker"), MAX_ITEMS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ITEMS:
        raise ApiError(
            "InvalidParameterValueException",
            f"MaxItems must be an integer between 1 and {MAX_ITEMS}, got {raw!r}",
        )
    return call.match.query_one("Marker"), int(raw)


def _marker(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _unmarker(marker: str, valid: Callable[[str], bool]) -> str:
    """A Marker we handed out (a layer name or a version number), or InvalidParameterValue."""
    try:
        value = base64.b64decode(marker.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not valid(value):
        raise ApiError("InvalidParameterValueException", f"Invalid Marker: {marker!r}")
    return value


class LayerOperations:
    """The handlers, bound to the core's layers."""

    def __init__(self, layers: Layers) -> None:
        self.layers = layers

    async def publish(self, call: Call) -> Response:
        name = _name(call)
        body = json_body(call.request)
        content = body.get("Content")
        if not isinstance(content, dict):
            raise ApiError("InvalidParameterValueException", "Content is required")
        if any(k in content for k in ("S3Bucket", "S3Key", "S3ObjectVersion")):
            raise ApiError(
                "InvalidParameterValueException",
                "lambdad has no S3: publish the layer with Content.ZipFile",
            )
        encoded = content.get("ZipFile")
        if not isinstance(encoded, str) or not encoded:
            raise ApiError("InvalidParameterValueException", "Content.ZipFile is required")
        try:
            zip_bytes = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                "InvalidRequestContentException",
                "Could not parse request body into json: Content.ZipFile is not base64",
            ) from None
        request = PublishRequest.make(
            name,
            zip_bytes,
            description=body.get("Description", ""),
            license_info=body.get("LicenseInfo", ""),
            compatible_runtimes=body.get("CompatibleRuntimes", ()),
            compatible_architectures=body.get("CompatibleArchitectures", ()),
        )
        version = await self.layers.publish(request)
        return json_response(201, _version_doc(version, call.region, full=True))

    async def get(self, call: Call) -> Response:
        version = self.layers.get(_name(call), _number(call))
        return json_response(200, _version_doc(version, call.region, full=True))

    async def get_by_arn(self, call: Call) -> Response:
        arn = call.match.query_one("Arn")
        if arn is None:
            raise ApiError("InvalidParameterValueException", "Arn is required")
        name, number = parse_layer_version_arn(arn)
        version = self.layers.get(name, number)
        return json_response(200, _version_doc(version, call.region, full=True))

    async def list_layers(self, call: Call) -> Response:
        runtime, architecture = _filters(call)
        marker, limit = _page(call)
        items = self.layers.list_layers(runtime, architecture)
        if marker is not None:
            start = _unmarker(marker, lambda v: LAYER_NAME_RE.fullmatch(v) is not None)
            items = [v for v in items if v.name >= start]
        doc: dict[str, Any] = {
            "Layers": [
                {
                    "LayerName": v.name,
                    "LayerArn": layer_arn(call.region, v.name),
                    "LatestMatchingVersion": _version_doc(v, call.region, full=False),
                }
                for v in items[:limit]
            ]
        }
        if len(items) > limit:
            doc["NextMarker"] = _marker(items[limit].name)
        return json_response(200, doc)

    async def list_versions(self, call: Call) -> Response:
        name = _name(call)
        runtime, architecture = _filters(call)
        marker, limit = _page(call)
        items = self.layers.list_versions(name, runtime, architecture)
        if marker is not None:
            start = _unmarker(marker, lambda v: v.isdigit() and len(v) <= 10)
            items = [v for v in items if v.number <= int(start)]  # newest first
        doc: dict[str, Any] = {
            "LayerVersions": [_version_doc(v, call.region, full=False) for v in items[:limit]]
        }
        if len(items) > limit:
            doc["NextMarker"] = _marker(str(items[limit].number))
        return json_response(200, doc)

    async def delete(self, call: Call) -> Response:
        # Idempotent, as on AWS: deleting a version that does not exist is a 204 too.
        await self.layers.delete(_name(call), _number(call))
        return Response(204)


def handlers(layers: Layers) -> dict[str, Handler]:
    """Operation name → handler, for the Lambda API's operation table."""
    ops = LayerOperations(layers)
    return {
        "PublishLayerVersion": ops.publish,
        "GetLayerVersion": ops.get,
        "GetLayerVersionByArn": ops.get_by_arn,
        "ListLayers": ops.list_layers,
        "ListLayerVersions": ops.list_versions,
        "DeleteLayerVersion": ops.delete,
    }


def register(table: MutableMapping[str, Handler], layers: Layers) -> None:
    """Add the layer operations to a Lambda API operation table."""
    table.update(handlers(layers))


def setup(ctx: Context) -> None:
    """The Lambda API front's extension hook: the operations, and ``layer_info`` (a layer
    version ARN -> its CodeSize, None when there is no such version)."""
    layers = ctx.service.layers
    register(ctx.handlers, layers)

    def layer_info(arn: str) -> int | None:
        try:
            name, number = parse_layer_version_arn(arn)
            return layers.store.resolve(name, number).code_size  # retained ones too
        except LambdadError:
            return None

    ctx.layer_info = layer_info
