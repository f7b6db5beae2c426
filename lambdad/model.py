"""The core's typed vocabulary, shared by the service and every client.

An :class:`InvokeRequest` is what any front (the socket, the HTTP API, a trigger) asks the
service to do; an :class:`InvocationResult` is what it gets back. Both are frozen and carry no
wire shape: the socket front and the clients translate them to and from the protocol's maps with
``to_wire()`` / ``from_wire()``, here and only here, so a request is defined once.

``from_wire`` validates what a peer sent and names the first bad field
(:class:`~lambdad.errors.InvalidParameterValue`), in the order the daemon always checked them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from lambdad.errors import InvalidParameterValue
from lambdad.functions import FunctionConfig
from lambdad.metering import Report

INVOCATION_TYPES: Final = ("sync", "async", "dryrun")

T = TypeVar("T")


# Lambda's limits on what an invocation carries to the handler (the sandbox link refuses more).
MAX_CLIENT_CONTEXT: Final = 3583  # bytes of base64, Lambda's ClientContext limit
MAX_TRACE_ID: Final = 256  # characters of an X-Ray trace header


def check_trace_context(trace_id: str | None, client_context: str | None) -> None:
    """What a request may pass to the handler: a trace header of printable ASCII, and a
    ClientContext that is base64 of a JSON object within Lambda's size.

    Raises:
        InvalidParameterValue: naming the field.
    """
    if trace_id is not None and not (
        0 < len(trace_id) <= MAX_TRACE_ID and trace_id.isascii() and trace_id.isprintable()
    ):
        raise InvalidParameterValue(
            f"trace_id must be 1-{MAX_TRACE_ID} printable ASCII characters", field="trace_id"
        )
    if client_context is None:
        return
    if len(client_context) > MAX_CLIENT_CONTEXT:
        raise InvalidParameterValue(
            f"client_context is {len(client_context)} bytes; at most {MAX_CLIENT_CONTEXT}",
            field="client_context",
        )
    try:
        value = json.loads(base64.b64decode(client_context, validate=True))
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise InvalidParameterValue(
            "client_context must be a valid Base64-encoded JSON object", field="client_context"
        )


def _built(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the frozen dataclass ``cls`` with every field in ``values``, without
    its ``__init__``: one dict update instead of one ``object.__setattr__`` per field. For
    the two built on every invocation (measured on the 2-core VM: 4.3 -> 0.8 us for an
    InvocationResult); ``tests/lambdad/test_model.py`` checks it sets exactly the fields."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


@dataclass(frozen=True)
class Caller:
    """Who is asking. The socket front fills it from SO_PEERCRED; in-process callers leave
    the ids None (trusted, like root)."""

    front: str = "in-process"  # "unix", "http", a trigger's name
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    principal: str | None = None  # an API key id, for fronts that authenticate with keys


@dataclass(frozen=True)
class InvokeRequest:
    """One request to run a function.

    ``client_context`` and ``trace_id`` go to the handler (``context.client_context``,
    ``_X_AMZN_TRACE_ID``; checked by :func:`check_trace_context`); the core carries
    ``deadline`` and ``caller`` for the fronts that set them (the HTTP API, triggers).
    """

    function: str
    payload: bytes = b""  # the event as JSON text; the core never parses it
    qualifier: str | None = None  # a version number; None = $LATEST
    type: str = "sync"  # "sync" (RequestResponse), "async" (Event) or "dryrun"
    log_tail: bool = False  # return the last 4 KB of this invocation's log
    client_context: str | None = None  # Lambda's ClientContext (base64 JSON), passed through
    trace_id: str | None = None  # an X-Ray style trace header, passed through
    deadline: float | None = None  # wall-clock (time.time()) after which the caller gave up
    caller: Caller = field(default_factory=Caller)
    force_cold: bool = False  # use (and then retire) a fresh sandbox: cold-start studies
    request_id: str | None = None  # None = a new uuid4; the async worker passes the event id

    def to_wire(self) -> dict[str, Any]:
        """The socket's ``invoke`` arguments."""
        args: dict[str, Any] = {"name": self.function, "payload": self.payload, "type": self.type}
        if self.log_tail:
            args["log_tail"] = True
        if self.qualifier is not None:
            args["qualifier"] = self.qualifier
        if self.force_cold:
            args["force_cold"] = True
        if self.client_context is not None:
            args["client_context"] = self.client_context
        if self.trace_id is not None:
            args["trace_id"] = self.trace_id
        return args

    @classmethod
    def from_wire(cls, args: Mapping[str, Any], caller: Caller | None = None) -> InvokeRequest:
        """Validate the socket's ``invoke`` arguments.

        Raises:
            InvalidParameterValue: naming the first bad field.
        """
        name = wire_name(args)
        kind = args.get("type", "sync")
        if kind not in INVOCATION_TYPES:
            raise InvalidParameterValue(
                f"type must be sync, async or dryrun, got {kind!r}", field="type"
            )
        payload = args.get("payload", b"")
        if isinstance(payload, str):
            payload = payload.encode()
        if not isinstance(payload, bytes):
            raise InvalidParameterValue("payload must be JSON text (bin or str)", field="payload")
        qualifier = args.get("qualifier")
        if qualifier is not None and not isinstance(qualifier, str):
            raise InvalidParameterValue("qualifier must be a string", field="qualifier")
        texts: dict[str, str | None] = {}
        for key in ("client_context", "trace_id"):
            value = args.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidParameterValue(f"{key} must be a string", field=key)
            texts[key] = value
        return _built(
            cls,
            {
                "function": name,
                "payload": payload,
                "qualifier": qualifier,
                "type": kind,
                "log_tail": bool(args.get("log_tail")),
                "client_context": texts["client_context"],
                "trace_id": texts["trace_id"],
                "deadline": None,
                "caller": caller or Caller(),
                "force_cold": bool(args.get("force_cold")),
                "request_id": None,
            },
        )


@dataclass(frozen=True)
class InvocationResult:
    """What an invocation came to. ``error`` is None on success.

    ``status``: 200 ran (successfully or not: function errors are data), 202 async accepted
    (``event_id`` set), 204 dryrun validated (``executed_version`` set).
    """

    request_id: str
    status: int = 200
    result: bytes | None = None  # the handler's return value as JSON text
    error: Mapping[str, Any] | None = None  # errorType, errorMessage, stackTrace (+ oom)
    function_error: str | None = None  # None, "Handled" or "Unhandled"
    report: Report | None = None  # None for async and dryrun
    log_tail: str | None = None  # when asked for
    executed_version: str | None = None
    event_id: str | None = None  # async only

    @classmethod
    def ran(
        cls,
        request_id: str,
        result: bytes | None,
        error: Mapping[str, Any] | None,
        function_error: str | None,
        report: Report,
        log_tail: str | None,
    ) -> InvocationResult:
        """The result of an invocation that ran (status 200), built fast: every invocation."""
        return _built(
            cls,
            {
                "request_id": request_id,
                "status": 200,
                "result": result,
                "error": error,
                "function_error": function_error,
                "report": report,
                "log_tail": log_tail,
                "executed_version": report.version,
                "event_id": None,
            },
        )

    def to_wire(self) -> dict[str, Any]:
        if self.status == 202:
            return {"status": 202, "event_id": self.event_id}
        if self.status == 204:
            return {"status": 204, "version": self.executed_version}
        body: dict[str, Any] = {
            "request_id": self.request_id,
            "result": self.result,
            "error": None if self.error is None else dict(self.error),
            "function_error": self.function_error,
            "report": None if self.report is None else self.report.to_wire(),
        }
        if self.log_tail is not None:
            body["log_tail"] = self.log_tail
        return body

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> InvocationResult:
        if "event_id" in body or body.get("status") in (202, 204):
            version = body.get("version")
            return cls(
                request_id=str(body.get("event_id", "")),
                status=int(body.get("status", 202)),
                event_id=body.get("event_id"),
                executed_version=None if version is None else str(version),
            )
        raw_report = body.get("report")
        report = report_from_wire(raw_report) if raw_report else None
        return cls(
            request_id=str(body.get("request_id", "")),
            result=body.get("result"),
            error=body.get("error"),
            function_error=body.get("function_error"),
            report=report,
            log_tail=body.get("log_tail"),
            executed_version=report.version if report is not None else None,
        )


def report_from_wire(raw: Mapping[str, Any]) -> Report:
    return Report(
        request_id=str(raw["request_id"]),
        duration_ms=float(raw["duration_ms"]),
        billed_ms=int(raw["billed_ms"]),
        memory_mb=int(raw["memory_mb"]),
        max_memory_used_mb=int(raw["max_memory_used_mb"]),
        init_ms=None if raw.get("init_ms") is None else float(raw["init_ms"]),
        cold=bool(raw.get("cold")),
        source=str(raw.get("source", "")),
        version=str(raw.get("version", "")),
        queue_us=int(raw.get("queue_us", 0)),
        phases_us={str(k): int(v) for k, v in dict(raw.get("phases_us") or {}).items()},
        trace_id=str(raw.get("trace_id", "")),
        status=None if raw.get("status") is None else str(raw["status"]),
        error_type=None if raw.get("error_type") is None else str(raw["error_type"]),
        restore_ms=None if raw.get("restore_ms") is None else float(raw["restore_ms"]),
    )


@dataclass(frozen=True)
class FunctionInfo:
    """A deployed function as ``get``/``list``/``deploy`` describe it ($LATEST)."""

    config: FunctionConfig
    version: str
    versions: tuple[str, ...]
    code_sha256: str
    sha256: str
    last_modified: float  # Unix time of $LATEST's deploy

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "version": self.version,
            "versions": list(self.versions),
            "code_sha256": self.code_sha256,
            "sha256": self.sha256,
            "last_modified": self.last_modified,
        }


@dataclass(frozen=True)
class Deployment:
    function: FunctionInfo
    created: bool  # False: the same code and configuration as $LATEST; nothing changed


@dataclass(frozen=True)
class SandboxCounts:
    """One function's sandboxes."""

    warm: int  # initialized (idle, busy or frozen)
    initializing: int
    idle: int
    frozen: int
    live: int = 0  # every specialized sandbox not yet forgotten (the metrics' warm gauge)


@dataclass(frozen=True)
class FunctionStatsView:
    name: str
    stats: Mapping[str, Any]  # FunctionStats.to_wire(): counters, percentiles, GB-seconds
    sandboxes: SandboxCounts

    def to_wire(self) -> dict[str, Any]:
        c = self.sandboxes
        body = dict(self.stats)
        body["sandboxes"] = {
            "warm": c.warm, "initializing": c.initializing, "idle": c.idle, "frozen": c.frozen,
            "live": c.live,
        }  # fmt: skip
        return {"name": self.name, "stats": body}


@dataclass(frozen=True)
class GlobalStatsView:
    stats: Mapping[str, Any]  # merged counters of every function
    generic_sandboxes: int
    warm_sandboxes: int
    global_concurrency_limit: int
    memory_budget_mb: int
    async_events: Mapping[str, int]
    missing: tuple[str, ...]
    addresses: Mapping[str, str]  # what the fronts listen on, e.g. {"metrics": "127.0.0.1:9464"}
    memory_in_use_mb: int = 0  # the memory limits of every specialized sandbox still counted

    def to_wire(self) -> dict[str, Any]:
        body = dict(self.stats)
        body["sandboxes"] = {"generic": self.generic_sandboxes, "warm": self.warm_sandboxes}
        body["global_concurrency_limit"] = self.global_concurrency_limit
        body["memory_budget_mb"] = self.memory_budget_mb
        body["memory_in_use_mb"] = self.memory_in_use_mb
        body["async"] = dict(self.async_events)
        body["missing"] = list(self.missing)
        body["metrics_address"] = self.addresses.get("metrics")
        body["api_address"] = self.addresses.get("api")
        return {"stats": body}


@dataclass(frozen=True)
class ServerInfo:
    """What ``hello`` tells a client."""

    protocol: int
    server: str
    missing: tuple[str, ...]


def wire_name(args: Mapping[str, Any]) -> str:
    name = args.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidParameterValue("name must be a non-empty string", field="name")
    return name


__all__ = [
    "INVOCATION_TYPES",
    "Caller",
    "Deployment",
    "FunctionInfo",
    "FunctionStatsView",
    "GlobalStatsView",
    "InvocationResult",
    "InvokeRequest",
    "SandboxCounts",
    "ServerInfo",
    "report_from_wire",
    "wire_name",
]
