"""The Lambda HTTP API front: ``lambdad serve --api HOST:PORT`` (config ``api_address``).

The 2015-03-31 Lambda REST API as botocore models it, over :mod:`lambdad.frontends.http`,
SigV4-verified against the daemon's :class:`~lambdad.keys.KeyStore`
(:mod:`lambdad.frontends.lambda_api_routes` routes, authenticates, authorizes and renders
errors). This module is the operations: each one turns a routed :class:`Call` into
:class:`~lambdad.service.Service` calls and the response shape botocore expects.

:data:`OPERATIONS` is the table (operation name → handler). Other modules contribute
operations to it: every module named in :data:`EXTENSIONS` that exists is imported when the
front is created, registers its handlers with :func:`operation`, and may expose
``setup(context)`` to keep its own state in :attr:`Context.extras` or to answer
:attr:`Context.layer_info` (the layers module does both).

What is accepted but not acted on (``Role``, ``VpcConfig``, ...) and what is refused is listed
in ``docs/lambda-api.md``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from lambdad.component import Component
from lambdad.config import DaemonConfig
from lambdad.errors import ResourceNotFound
from lambdad.frontends.http import HttpServer, Limits, Request, Response
from lambdad.frontends.lambda_api_routes import (
    ACCOUNT_ID,
    ApiError,
    Call,
    Handler,
    LambdaApi,
    Match,
    function_arn,
    http_error,
    json_body,
    json_response,
    parse_function_name,
    qualified,
    sigv4_authenticator,
)
from lambdad.functions import FunctionConfig, Version, validate
from lambdad.keys import KeyStore
from lambdad.model import Caller, InvokeRequest
from lambdad.registry import LATEST, VERSION_RE, Alias, Function, revision_id_of
from lambdad.service import Service
from lambdad.sigv4 import Identity
from sandbox import runtimes

log = logging.getLogger("lambdad")
T = TypeVar("T")

# Modules that add operations to OPERATIONS (imported if present, in this order).
EXTENSIONS: Final = (
    "lambdad.frontends.lambda_layers",
    "lambdad.frontends.lambda_function_urls",
    "lambdad.frontends.lambda_esm",
)
CODE_BODY_MAX: Final = 70 * 1024 * 1024  # a 50 MB zip, base64 in JSON (Lambda's direct upload)
OTHER_BODY_MAX: Final = 1024 * 1024  # every other operation's JSON body
CLIENT_CONTEXT_MAX: Final = 3583  # bytes of base64, Lambda's limit
LIST_MAX_ITEMS: Final = 10_000
LIST_DEFAULT_ITEMS: Final = 50
ZIPPED_MAX: Final = 50 * 1024 * 1024
UNZIPPED_MAX: Final = 250 * 1024 * 1024
TOTAL_CODE_MAX: Final = 75 * 1024**3
TAG_KEY_MAX: Final = 128
TAG_VALUE_MAX: Final = 256
TAGS_MAX: Final = 50
INVOCATION_TYPES: Final = {"RequestResponse": "sync", "Event": "async", "DryRun": "dryrun"}
# CreateFunction / UpdateFunctionConfiguration members lambdad refuses (docs/lambda-api.md
# lists them, and the ones accepted and ignored: VpcConfig, DeadLetterConfig, KMSKeyArn, ...).
REFUSED: Final = ("FileSystemConfigs", "ImageConfig", "CapacityProviderConfig", "DurableConfig",
                  "TenancyConfig", "PublishTo", "AcceleratorConfig")  # fmt: skip


@dataclass
class Context:
    """What every operation handler gets besides its call."""

    service: Service
    config: DaemonConfig
    keys: KeyStore
    extras: dict[str, Any] = field(default_factory=dict)  # a contributing module's own state
    # A layer version ARN -> its CodeSize, or None when no layer store knows it (set by the
    # layers module's setup(); without it, layers are stored and checked when they exist).
    layer_info: Callable[[str], int | None] = lambda arn: None
    # Handlers an extension contributes already bound to its own state (operation -> handler).
    handlers: dict[str, Handler] = field(default_factory=dict)


Operation = Callable[[Context, Call], Awaitable[Response]]
OPERATIONS: dict[str, Operation] = {}


def operation(name: str) -> Callable[[Operation], Operation]:
    """Register ``handler`` as the handler of operation ``name`` (one of botocore's)."""

    def register(handler: Operation) -> Operation:
        OPERATIONS[name] = handler
        return handler

    return register


# -- shapes ---------------------------------------------------------------------------------


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValueException", message)


def _timestamp(unix: float) -> str:
    """Lambda's LastModified: ``2026-12-01T10:15:00.000+0000``."""
    millis = int((unix % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix)) + f".{millis:03d}+0000"


def code_sha256(hex_digest: str) -> str:
    """CodeSha256 as Lambda spells it (base64 of the digest) from the store's hex address."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _hex_code_sha256(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        raise invalid(f"CodeSha256 is not a base64 SHA-256: {value!r}") from None


def configuration(
    ctx: Context, fn: Function, version: Version, region: str, *, latest: bool
) -> dict[str, Any]:
    """The FunctionConfiguration shape of ``version`` (``latest``: shown as ``$LATEST``)."""
    cfg = version.config
    label = LATEST if latest else str(version.number)
    description = cfg.description if latest else (fn.description(version) or cfg.description)
    doc: dict[str, Any] = {
        "FunctionName": fn.name,
        "FunctionArn": function_arn(region, fn.name, None if latest else label),
        "Runtime": cfg.lambda_runtime or cfg.runtime,
        "Role": cfg.role,
        "Handler": cfg.handler,
        "CodeSize": ctx.service.package_size(version.code_sha256),
        "Description": description,
        "Timeout": int(cfg.timeout_s) if cfg.timeout_s == int(cfg.timeout_s) else cfg.timeout_s,
        "MemorySize": cfg.memory_mb,
        "LastModified": _timestamp(version.created),
        "CodeSha256": code_sha256(version.code_sha256),
        "Version": label,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": revision_id_of(version),
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": list(cfg.architectures),
        "EphemeralStorage": {"Size": cfg.tmp_mb},
        # Function templates are SnapStart here (docs/lambda-api.md): for every version.
        "SnapStart": {
            "ApplyOn": "PublishedVersions" if cfg.template else "None",
            "OptimizationStatus": "On" if cfg.template else "Off",
        },
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fn.name}"},
    }
    if cfg.env:
        doc["Environment"] = {"Variables": dict(cfg.env)}
    if cfg.layers:
        doc["Layers"] = [{"Arn": arn, "CodeSize": ctx.layer_info(arn) or 0} for arn in cfg.layers]
    return doc


def _alias_shape(fn: Function, alias: Alias, region: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "AliasArn": function_arn(region, fn.name, alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.weights:
        doc["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return doc


def _version_of(fn: Function, qualifier: str | None) -> tuple[Version, bool]:
    """(version, shown as $LATEST) for a Get* qualifier (an alias: the version it names)."""
    if qualifier in (None, "", LATEST):
        return fn.latest, True
    assert qualifier is not None
    if VERSION_RE.fullmatch(qualifier):
        return fn.published(qualifier), False
    alias = fn.alias(qualifier)
    if alias.version == LATEST:
        return fn.latest, True
    return fn.published(alias.version), False


def _page(call: Call, items: list[Any], key: Callable[[Any], str]) -> tuple[list[Any], str | None]:
    """One page of ``items`` after ``Marker`` (the key of the first item of the page)."""
    max_items = _int_query(call.match, "MaxItems", 1, LIST_MAX_ITEMS, LIST_DEFAULT_ITEMS)
    marker = call.match.query_one("Marker")
    start = 0
    if marker:
        keys = [key(item) for item in items]
        if marker not in keys:
            raise invalid(f"Marker {marker!r} is not one this listing gave")
        start = keys.index(marker)
    page = items[start : start + max_items]
    rest = items[start + max_items :]
    return page, key(rest[0]) if rest else None


def _int_query(match: Match, name: str, lo: int, hi: int, default: int) -> int:
    raw = match.query_one(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise invalid(f"{name} must be an integer from {lo} to {hi}, got {raw!r}")
    return int(raw)


def _get(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``doc[key]`` when present, checked to be ``kind`` (bool is never an int here)."""
    value = doc.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise invalid(f"{key} must be {what}, got {value!r}")
    if not isinstance(value, kind):
        raise invalid(f"{key} must be {what}, got {value!r}")
    return value


# -- functions ------------------------------------------------------------------------------

OFF_LOOP_BYTES: Final = 256 * 1024  # bigger bodies are parsed in a worker thread


async def _off_loop(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, in a worker thread when the request is big: parsing and base64-decoding
    a 50 MB zip takes the loop for a good fraction of a second, during which no warm invoke
    would be answered."""
    if len(request.body) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


async def _big_json_body(request: Request) -> dict[str, Any]:
    return await _off_loop(request, json_body, request)


def lambda_runtime(name: str) -> str:
    """The runtime a Lambda ``Runtime`` name runs on here.

    ``python3.X`` is the host's interpreter when X is its minor version; lambdad's own names
    (``python3``) are accepted as they are.

    Raises:
        ApiError: InvalidParameterValueException naming what this host has.
    """
    host = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if name == host:
        return "python3"
    if name in runtimes.names():
        return name
    raise invalid(
        f"Value {name} at 'runtime' failed to satisfy constraint: this host runs "
        f"{host} (or lambdad's own names: {', '.join(runtimes.names())})"
    )


def _zip_file(code: Any) -> bytes:
    if not isinstance(code, dict):
        raise invalid("Code must be an object with ZipFile")
    for source in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri", "SourceKMSKeyArn"):
        if code.get(source) is not None:
            raise invalid(f"Code.{source} is not supported by lambdad: upload Code.ZipFile")
    return _zip_bytes(code.get("ZipFile"), "Code.ZipFile")


def _zip_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise invalid(f"{what} must be the base64 of a zip file")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{what} is not valid base64") from None
    if len(data) > ZIPPED_MAX:
        raise ApiError(
            "RequestTooLargeException",
            f"{what} of {len(data)} bytes is over the {ZIPPED_MAX}-byte zipped limit",
        )
    return data


def _config_args(doc: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """FunctionConfig arguments (``lambdad.functions.validate``'s) from an API body."""
    args = dict(base)
    runtime = _get(doc, "Runtime", str, "a runtime name")
    if runtime is not None:
        args["runtime"] = lambda_runtime(runtime)
        args["lambda_runtime"] = runtime
    simple = (
        ("Handler", "handler", str, "a string"),
        ("Description", "description", str, "a string"),
        ("Role", "role", str, "an IAM role ARN"),
        ("MemorySize", "memory_mb", int, "an integer"),
        ("Timeout", "timeout_s", int, "an integer"),
    )
    for key, arg, kind, what in simple:
        value = _get(doc, key, kind, what)
        if value is not None:
            args[arg] = value
    env = _get(doc, "Environment", dict, "an object")
    if env is not None:
        variables = env.get("Variables")
        args["env"] = {} if variables is None else variables
    storage = _get(doc, "EphemeralStorage", dict, "an object")
    if storage is not None:
        size = storage.get("Size")
        if isinstance(size, bool) or not isinstance(size, int) or not 512 <= size <= 10240:
            raise invalid(f"EphemeralStorage.Size must be from 512 to 10240 (MB), got {size!r}")
        args["tmp_mb"] = size
    architectures = _get(doc, "Architectures", list, "a list")
    if architectures is not None:
        args["architectures"] = architectures
    layers = _get(doc, "Layers", list, "a list of layer version ARNs")
    if layers is not None:
        args["layers"] = layers
    snap_start = _get(doc, "SnapStart", dict, "an object")
    if snap_start is not None:
        apply_on = snap_start.get("ApplyOn", "None")
        if apply_on not in ("PublishedVersions", "None"):
            raise invalid(f"SnapStart.ApplyOn must be PublishedVersions or None, got {apply_on!r}")
        args["template"] = apply_on == "PublishedVersions"
    for key in REFUSED:
        if doc.get(key):
            raise invalid(f"{key} is not supported by lambdad")
    if doc.get("PackageType") not in (None, "Zip"):
        raise invalid("PackageType Image is not supported by lambdad: use Zip")
    return args


def _validated(args: Mapping[str, Any]) -> FunctionConfig:
    config = validate(args)
    if config.memory_mb < 128:
        raise invalid(f"MemorySize must be from 128 to 10240 (MB), got {config.memory_mb}")
    return config


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid("Tags must map strings to strings")
    for k, v in value.items():
        if not 0 < len(k) <= TAG_KEY_MAX or len(v) > TAG_VALUE_MAX or k.startswith("aws:"):
            raise invalid(f"tag {k!r}: keys are 1-128 characters, not aws:, values up to 256")
    return dict(value)


@operation("CreateFunction")
async def create_function(ctx: Context, call: Call) -> Response:
    doc = await _big_json_body(call.request)
    name_value = _get(doc, "FunctionName", str, "a function name")
    if name_value is None:
        raise invalid("FunctionName is required")
    name, qualifier = parse_function_name(name_value)
    if qualifier is not None:
        raise invalid("FunctionName of CreateFunction cannot have a qualifier")
    if doc.get("Runtime") is None:
        raise invalid("Runtime is required for a Zip package")
    if _get(doc, "Role", str, "an IAM role ARN") is None:
        raise invalid("Role is required")
    code = await _off_loop(call.request, _zip_file, doc.get("Code"))
    config = _validated(_config_args(doc, {"name": name, "timeout_s": 3}))
    tags = _tags(doc["Tags"]) if doc.get("Tags") is not None else {}
    publish = bool(_get(doc, "Publish", bool, "true or false"))
    version = await ctx.service.create_function(config, code, publish=publish)
    if tags:
        await ctx.service.tag(name, tags)
    fn = ctx.service.registry.get(name)
    shown = configuration(ctx, fn, version, call.region, latest=not publish)
    return json_response(201, shown)


@operation("GetFunction")
async def get_function(ctx: Context, call: Call) -> Response:
    name, qualifier = qualified(call.match)
    fn = ctx.service.registry.get(name)
    version, latest = _version_of(fn, qualifier)
    doc: dict[str, Any] = {
        "Configuration": configuration(ctx, fn, version, call.region, latest=latest),
        "Code": {"RepositoryType": "S3"},
        "Tags": dict(fn.tags),
    }
    if fn.latest.config.concurrency is not None:
        doc["Concurrency"] = {"ReservedConcurrentExecutions": fn.latest.config.concurrency}
    return json_response(200, doc)


@operation("GetFunctionConfiguration")
async def get_function_configuration(ctx: Context, call: Call) -> Response:
    name, qualifier = qualified(call.match)
    fn = ctx.service.registry.get(name)
    version, latest = _version_of(fn, qualifier)
    return json_response(200, configuration(ctx, fn, version, call.region, latest=latest))


@operation("ListFunctions")
async def list_functions(ctx: Context, call: Call) -> Response:
    every_version = call.match.query_one("FunctionVersion")
    if every_version not in (None, "ALL"):
        raise invalid(f"FunctionVersion must be ALL, got {every_version!r}")
    shown: list[dict[str, Any]] = []
    for fn in ctx.service.registry:
        shown.append(configuration(ctx, fn, fn.latest, call.region, latest=True))
        if every_version == "ALL":
            shown += [configuration(ctx, fn, v, call.region, latest=False) for v in fn.versions]
    page, marker = _page(call, shown, lambda c: f"{c['FunctionName']}:{c['Version']}")
    doc: dict[str, Any] = {"Functions": page}
    if marker is not None:
        doc["NextMarker"] = marker
    return json_response(200, doc)


@operation("UpdateFunctionCode")
async def update_function_code(ctx: Context, call: Call) -> Response:
    name, qualifier = qualified(call.match)
    if qualifier is not None:
        raise invalid("UpdateFunctionCode updates $LATEST: give the function name alone")
    doc = await _big_json_body(call.request)
    for source in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri", "SourceKMSKeyArn"):
        if doc.get(source) is not None:
            raise invalid(f"{source} is not supported by lambdad: upload ZipFile")
    code = await _off_loop(call.request, _zip_bytes, doc.get("ZipFile"), "ZipFile")
    fn = ctx.service.registry.get(name)
    args = fn.latest.config.to_dict()
    if doc.get("Architectures") is not None:
        args["architectures"] = _get(doc, "Architectures", list, "a list")
    config = _validated(args)
    publish = bool(_get(doc, "Publish", bool, "true or false"))
    revision = _get(doc, "RevisionId", str, "a revision id")
    if _get(doc, "DryRun", bool, "true or false"):
        await _dry_code_check(ctx, code)
        return json_response(200, configuration(ctx, fn, fn.latest, call.region, latest=True))
    version = await ctx.service.update_function(
        name, config=config, code=code, publish=publish, revision_id=revision
    )
    fn = ctx.service.registry.get(name)
    return json_response(200, configuration(ctx, fn, version, call.region, latest=not publish))


async def _dry_code_check(ctx: Context, code: bytes) -> None:
    """DryRun: the zip must be one the store would take; nothing changes."""
    import io
    import zipfile

    try:
        zipfile.ZipFile(io.BytesIO(code)).testzip()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise invalid(f"code is not a valid zip file: {exc}") from None


@operation("UpdateFunctionConfiguration")
async def update_function_configuration(ctx: Context, call: Call) -> Response:
    name, qualifier = qualified(call.match)
    if qualifier is not None:
        raise invalid("UpdateFunctionConfiguration updates $LATEST: give the function name alone")
    doc = json_body(call.request)
    fn = ctx.service.registry.get(name)
    base = fn.latest.config.to_dict()
    config = _validated(_config_args(doc, base))
    revision = _get(doc, "RevisionId", str, "a revision id")
    version = await ctx.service.update_function(name, config=config, revision_id=revision)
    fn = ctx.service.registry.get(name)
    return json_response(200, configuration(ctx, fn, version, call.region, latest=True))


@operation("DeleteFunction")
async def delete_function(ctx: Context, call: Call) -> Response:
    name, qualifier = qualified(call.match)
    if qualifier in (None, ""):
        await ctx.service.delete(name)
    else:
        assert qualifier is not None
        await ctx.service.delete_version(name, qualifier)
    return Response(call.match.route.status)


# -- versions and aliases -------------------------------------------------------------------


@operation("PublishVersion")
async def publish_version(ctx: Context, call: Call) -> Response:
    name, qualifier = qualified(call.match)
    if qualifier is not None:
        raise invalid("PublishVersion publishes $LATEST: give the function name alone")
    doc = json_body(call.request)
    sha = _get(doc, "CodeSha256", str, "a base64 SHA-256")
    version, _created = await ctx.service.publish(
        name,
        description=_get(doc, "Description", str, "a string") or "",
        code_sha256=None if sha is None else _hex_code_sha256(sha),
        revision_id=_get(doc, "RevisionId", str, "a revision id"),
    )
    fn = ctx.service.registry.get(name)
    return json_response(201, configuration(ctx, fn, version, call.region, latest=False))


@operation("ListVersionsByFunction")
async def list_versions(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "ListVersionsByFunction")
    fn = ctx.service.registry.get(name)
    shown = [configuration(ctx, fn, fn.latest, call.region, latest=True)]
    shown += [configuration(ctx, fn, v, call.region, latest=False) for v in fn.versions]
    page, marker = _page(call, shown, lambda c: str(c["Version"]))
    doc: dict[str, Any] = {"Versions": page}
    if marker is not None:
        doc["NextMarker"] = marker
    return json_response(200, doc)


def _weights(doc: Mapping[str, Any]) -> dict[str, float] | None:
    routing = _get(doc, "RoutingConfig", dict, "an object")
    if routing is None:
        return None
    weights = routing.get("AdditionalVersionWeights")
    if weights is None:
        return {}
    if not isinstance(weights, dict):
        raise invalid("RoutingConfig.AdditionalVersionWeights must map a version to a weight")
    return weights


def _unqualified(call: Call, operation_name: str) -> str:
    name, qualifier = parse_function_name(call.match.params["FunctionName"])
    if qualifier is not None:
        raise invalid(f"{operation_name}: FunctionName must not carry a qualifier")
    return name


@operation("CreateAlias")
async def create_alias(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "CreateAlias")
    doc = json_body(call.request)
    alias_name = _get(doc, "Name", str, "an alias name")
    version = _get(doc, "FunctionVersion", str, "a version")
    if alias_name is None or version is None:
        raise invalid("Name and FunctionVersion are required")
    alias = await ctx.service.create_alias(
        name,
        alias_name,
        version,
        description=_get(doc, "Description", str, "a string") or "",
        weights=_weights(doc),
    )
    return json_response(201, _alias_shape(ctx.service.registry.get(name), alias, call.region))


@operation("GetAlias")
async def get_alias(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "GetAlias")
    fn = ctx.service.registry.get(name)
    return json_response(200, _alias_shape(fn, fn.alias(call.match.params["Name"]), call.region))


@operation("UpdateAlias")
async def update_alias(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "UpdateAlias")
    doc = json_body(call.request)
    alias = await ctx.service.update_alias(
        name,
        call.match.params["Name"],
        version=_get(doc, "FunctionVersion", str, "a version"),
        description=_get(doc, "Description", str, "a string"),
        weights=_weights(doc),
        revision_id=_get(doc, "RevisionId", str, "a revision id"),
    )
    return json_response(200, _alias_shape(ctx.service.registry.get(name), alias, call.region))


@operation("ListAliases")
async def list_aliases(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "ListAliases")
    fn = ctx.service.registry.get(name)
    wanted = call.match.query_one("FunctionVersion")
    aliases = [
        _alias_shape(fn, alias, call.region)
        for _, alias in sorted(fn.aliases.items())
        if wanted is None or wanted == alias.version or wanted in alias.weights
    ]
    page, marker = _page(call, aliases, lambda a: str(a["Name"]))
    doc: dict[str, Any] = {"Aliases": page}
    if marker is not None:
        doc["NextMarker"] = marker
    return json_response(200, doc)


@operation("DeleteAlias")
async def delete_alias(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "DeleteAlias")
    await ctx.service.delete_alias(name, call.match.params["Name"])
    return Response(204)


# -- concurrency ----------------------------------------------------------------------------


@operation("PutFunctionConcurrency")
async def put_function_concurrency(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "PutFunctionConcurrency")
    doc = json_body(call.request)
    reserved = _get(doc, "ReservedConcurrentExecutions", int, "an integer")
    if reserved is None or reserved < 0:
        raise invalid("ReservedConcurrentExecutions must be an integer of at least 0")
    await ctx.service.set_concurrency(name, reserved)
    return json_response(200, {"ReservedConcurrentExecutions": reserved})


@operation("GetFunctionConcurrency")
async def get_function_concurrency(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "GetFunctionConcurrency")
    reserved = ctx.service.registry.get(name).latest.config.concurrency
    return json_response(
        200, {} if reserved is None else {"ReservedConcurrentExecutions": reserved}
    )


@operation("DeleteFunctionConcurrency")
async def delete_function_concurrency(ctx: Context, call: Call) -> Response:
    name = _unqualified(call, "DeleteFunctionConcurrency")
    await ctx.service.set_concurrency(name, None)
    return Response(204)


def _provisioned_qualifier(call: Call) -> tuple[str, str]:
    name, qualifier = qualified(call.match)
    if not qualifier:
        raise invalid("Qualifier is required: a version number or an alias")
    return name, qualifier


def _provisioned_shape(ctx: Context, name: str, qualifier: str) -> dict[str, Any]:
    fn = ctx.service.registry.get(name)
    requested = fn.provisioned.get(qualifier)
    if requested is None:
        raise ApiError(
            "ProvisionedConcurrencyConfigNotFoundException",
            f"No Provisioned Concurrency Config found for this function: {name}:{qualifier}",
        )
    ready = min(requested, ctx.service.provisioned_ready(name, qualifier))
    return {
        "RequestedProvisionedConcurrentExecutions": requested,
        "AvailableProvisionedConcurrentExecutions": ready,
        "AllocatedProvisionedConcurrentExecutions": ready,
        "Status": "READY" if ready >= requested else "IN_PROGRESS",
        "LastModified": _timestamp(time.time()),
    }


@operation("PutProvisionedConcurrencyConfig")
async def put_provisioned(ctx: Context, call: Call) -> Response:
    name, qualifier = _provisioned_qualifier(call)
    doc = json_body(call.request)
    count = _get(doc, "ProvisionedConcurrentExecutions", int, "an integer")
    if count is None or not 1 <= count <= 1000:
        raise invalid("ProvisionedConcurrentExecutions must be an integer from 1 to 1000")
    await ctx.service.set_provisioned(name, qualifier, count)
    return json_response(202, _provisioned_shape(ctx, name, qualifier))


@operation("GetProvisionedConcurrencyConfig")
async def get_provisioned(ctx: Context, call: Call) -> Response:
    name, qualifier = _provisioned_qualifier(call)
    return json_response(200, _provisioned_shape(ctx, name, qualifier))


@operation("DeleteProvisionedConcurrencyConfig")
async def delete_provisioned(ctx: Context, call: Call) -> Response:
    name, qualifier = _provisioned_qualifier(call)
    try:
        await ctx.service.set_provisioned(name, qualifier, None)
    except ResourceNotFound as exc:
        if name in ctx.service.registry.functions and "Provisioned" in exc.message:
            raise ApiError("ProvisionedConcurrencyConfigNotFoundException", exc.message) from None
        raise
    return Response(204)


# -- account and tags -----------------------------------------------------------------------


@operation("GetAccountSettings")
async def get_account_settings(ctx: Context, call: Call) -> Response:
    usage = await ctx.service.account()
    return json_response(
        200,
        {
            "AccountLimit": {
                "TotalCodeSize": TOTAL_CODE_MAX,
                "CodeSizeUnzipped": UNZIPPED_MAX,
                "CodeSizeZipped": ZIPPED_MAX,
                "ConcurrentExecutions": usage["concurrent_executions"],
                "UnreservedConcurrentExecutions": usage["unreserved_concurrent_executions"],
            },
            "AccountUsage": {
                "TotalCodeSize": usage["total_code_size"],
                "FunctionCount": usage["function_count"],
            },
        },
    )


def _tagged_function(call: Call) -> str:
    """The function a tag operation's ``{Resource}`` (a function ARN) names."""
    resource = call.match.params["Resource"]
    if not resource.startswith("arn:"):
        raise invalid(f"Resource must be a function ARN, got {resource!r}")
    name, qualifier = parse_function_name(resource)
    if qualifier is not None:
        raise invalid("Tags are on the function: give its unqualified ARN")
    return name


@operation("TagResource")
async def tag_resource(ctx: Context, call: Call) -> Response:
    name = _tagged_function(call)
    tags = _tags(json_body(call.request).get("Tags"))
    fn = ctx.service.registry.get(name)
    if len({**fn.tags, **tags}) > TAGS_MAX:
        raise invalid(f"a function may have at most {TAGS_MAX} tags")
    await ctx.service.tag(name, tags)
    return Response(204)


@operation("ListTags")
async def list_tags(ctx: Context, call: Call) -> Response:
    fn = ctx.service.registry.get(_tagged_function(call))
    return json_response(200, {"Tags": dict(fn.tags)})


@operation("UntagResource")
async def untag_resource(ctx: Context, call: Call) -> Response:
    name = _tagged_function(call)
    keys = call.match.query.get("tagKeys", [])
    if not keys:
        raise invalid("tagKeys is required")
    await ctx.service.untag(name, keys)
    return Response(204)


# -- invoke ---------------------------------------------------------------------------------


def _executed(fn: Function, qualifier: str | None, number: str | None) -> str:
    """X-Amz-Executed-Version: ``$LATEST`` for $LATEST (or an alias of it), else the number
    that ran (for a weighted alias, whichever of its two versions was chosen)."""
    if qualifier in (None, "", LATEST):
        return LATEST
    alias = fn.aliases.get(qualifier or "")
    if alias is not None and alias.version == LATEST:
        return LATEST
    return number or LATEST


@operation("Invoke")
async def invoke(ctx: Context, call: Call) -> Response:
    name, qualifier = qualified(call.match)
    request = call.request
    headers = dict(request.headers)  # one pass, instead of one scan per header read
    invocation_type = headers.get("x-amz-invocation-type") or "RequestResponse"
    kind = INVOCATION_TYPES.get(invocation_type)
    if kind is None:
        raise invalid(
            f"X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, got "
            f"{invocation_type!r}"
        )
    log_type = headers.get("x-amz-log-type") or "None"
    if log_type not in ("None", "Tail"):
        raise invalid(f"X-Amz-Log-Type must be None or Tail, got {log_type!r}")
    client_context = headers.get("x-amz-client-context")
    if client_context is not None:
        if len(client_context) > CLIENT_CONTEXT_MAX:
            raise invalid(f"X-Amz-Client-Context is over {CLIENT_CONTEXT_MAX} bytes")
        try:
            base64.b64decode(client_context, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("X-Amz-Client-Context must be base64") from None
    fn = ctx.service.registry.get(name)
    identity = call.identity
    result = await ctx.service.invoke(
        InvokeRequest(
            function=name,
            payload=request.body,
            qualifier=qualifier,
            type=kind,
            log_tail=log_type == "Tail" and kind == "sync",
            client_context=client_context,
            trace_id=headers.get("x-amzn-trace-id"),
            caller=Caller("http", principal=identity.access_key_id if identity else None),
        )
    )
    if result.status == 202:
        return Response(202)
    executed = _executed(fn, qualifier, result.executed_version)
    if result.status == 204:
        return Response(204, (("x-amz-executed-version", executed),))
    out = [("content-type", "application/json"), ("x-amz-executed-version", executed)]
    if result.function_error is not None:
        out.append(("x-amz-function-error", result.function_error))
    if result.log_tail is not None:
        tail = result.log_tail.encode()[-4096:]
        out.append(("x-amz-log-result", base64.b64encode(tail).decode()))
    if result.error is not None:
        body = json.dumps(dict(result.error)).encode()
    else:
        body = result.result if result.result is not None else b"null"
    return Response(200, tuple(out), body)


@operation("InvokeWithResponseStream")
async def invoke_with_response_stream(ctx: Context, call: Call) -> Response:
    raise ApiError(
        "UnsupportedOperationException",
        "lambdad does not support InvokeWithResponseStream: its runtimes return a whole "
        "response, not a stream. Call Invoke instead.",
    )


# -- the front ------------------------------------------------------------------------------


def _body_limit(config: DaemonConfig) -> Callable[[str, str], int]:
    """Body limits by operation, checked before the body is read (so before the signature
    is): zips for the code uploads, the payload limit for invocations, 1 MB for the rest."""
    invoke_max = config.sync_payload_max + 1

    def limit(method: str, path: str) -> int:
        if path.endswith("/invocations") or path.endswith("/response-streaming-invocations"):
            return invoke_max
        if (method == "POST" and path.rstrip("/") == "/2015-03-31/functions") or (
            method == "PUT" and path.endswith("/code")
        ):
            return CODE_BODY_MAX  # CreateFunction, UpdateFunctionCode
        if method == "POST" and path.startswith("/2018-10-31/layers/"):
            return CODE_BODY_MAX  # PublishLayerVersion (lambdad.frontends.lambda_layers)
        return OTHER_BODY_MAX

    return limit


def load_extensions(ctx: Context, modules: Iterable[str] = EXTENSIONS) -> list[str]:
    """Import the modules that contribute operations (those present); returns their names."""
    loaded = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        setup = getattr(module, "setup", None)
        ctx.extras.setdefault(module_name, None)
        if setup is not None:
            setup(ctx)
        loaded.append(module_name)
    return loaded


class LambdaApiFront(Component):
    """The Lambda API over HTTP/1.1 on ``api_address``."""

    name = "api"

    def __init__(self, service: Service, config: DaemonConfig) -> None:
        self.service = service
        self.config = config
        self.context = Context(service, config, service.keys)
        load_extensions(self.context)
        handlers = {op: _bind(self.context, handler) for op, handler in sorted(OPERATIONS.items())}
        handlers.update(self.context.handlers)
        keys = service.keys
        self.app = LambdaApi(
            handlers=handlers,
            authenticate=sigv4_authenticator(keys),
            is_admin=lambda identity: _is_admin(keys, identity),
        )
        self.server = HttpServer(
            self.app,
            limits=Limits(max_body_bytes=CODE_BODY_MAX),
            error_response=http_error,
            body_limit=_body_limit(config),
        )
        self.address = ""

    async def start(self) -> None:
        host, _, port = self.config.api_address.rpartition(":")
        self.address = await self.server.start(host or "127.0.0.1", int(port))
        self.service.addresses[self.name] = self.address
        log.info(
            "Lambda API on http://%s (SigV4; a key: lambdad keys create --admin)", self.address
        )
        for warning in self.service.keys.warnings:
            log.warning("%s", warning)

    async def stop(self) -> None:
        await self.server.close(grace_s=self.config.shutdown_grace_s)

    def reload(self, config: DaemonConfig) -> None:
        self.config = config  # the address is fixed for the daemon's life
        self.context.config = config


def _bind(ctx: Context, handler: Operation) -> Callable[[Call], Awaitable[Response]]:
    async def bound(call: Call) -> Response:
        return await handler(ctx, call)

    return bound


def _is_admin(keys: KeyStore, identity: Identity) -> bool:
    key = keys.lookup(identity.access_key_id)
    return key is not None and key.admin


def create(service: Service, config: DaemonConfig) -> LambdaApiFront | None:
    """The front, if ``api_address`` asks for one."""
    return LambdaApiFront(service, config) if config.api_address else None


__all__ = [
    "ACCOUNT_ID",
    "EXTENSIONS",
    "OPERATIONS",
    "Context",
    "LambdaApiFront",
    "Operation",
    "configuration",
    "create",
    "lambda_runtime",
    "load_extensions",
    "operation",
]
