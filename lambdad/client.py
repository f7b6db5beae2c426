"""Client library: the blocking :class:`Client` and the asyncio :class:`AsyncClient`.

Both drive the same sans-IO :class:`lambdad.protocol.Connection` through :class:`ClientCore`
(as does the trio client in :mod:`lambdad.trio_client`). Platform refusals raise the typed
exceptions of :mod:`lambdad.errors`; function errors are data on the returned
:class:`Invocation`, as on Lambda::

    from lambdad.client import Client
    with Client() as c:
        c.deploy("hello", "examples/hello")
        inv = c.invoke("hello", {"name": "Ada"})
        print(inv.result, inv.report.duration_ms)
"""

from __future__ import annotations

import asyncio
import builtins
import io
import itertools
import json
import os
import socket
import stat
import threading
import zipfile
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lambdad.config import default_socket_path
from lambdad.errors import (
    ConnectionLost,
    DaemonUnreachable,
    LambdadError,
    ProtocolError,
    RequestTooLarge,
)
from lambdad.logs import LogPage, log_args, page_from_wire
from lambdad.metering import Report
from lambdad.model import InvocationResult, InvokeRequest, report_from_wire
from lambdad.protocol import (
    DEFAULT_MAX_FRAME,
    NEED_DATA,
    Connection,
    ErrorResponse,
    Request,
    Response,
    Role,
    _Sentinel,
    hello_request,
)

RECV_SIZE = 256 * 1024
FRAME_ROOM = 64 * 1024  # room for a request frame's fields beside its one big value
MAX_PAYLOAD_SENT = DEFAULT_MAX_FRAME - FRAME_ROOM
# A code zip over the frame limit goes as a staged upload in chunks of this size (or less, as
# the daemon's upload_begin says): ~1 ms of the daemon's loop each, so other clients wait
# no longer than that behind an upload; 25 round trips for a 50 MB zip.
UPLOAD_CHUNK = 2 * 1024 * 1024
SKIP_DIRS = frozenset({"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache"})


@dataclass(frozen=True)
class Invocation:
    """The outcome of ``invoke``, as a caller reads it: ``result`` is the decoded JSON.
    ``error`` is None on success."""

    request_id: str
    result: Any = None  # the decoded JSON the handler returned
    error: dict[str, Any] | None = None  # errorType, errorMessage, stackTrace
    function_error: str | None = None  # None, "Handled" or "Unhandled"
    report: Report | None = None  # None for async and dryrun
    log_tail: str | None = None  # the last 4 KB of this invocation's log, when asked for
    status: int = 200  # 200 sync, 202 async accepted, 204 dryrun
    event_id: str | None = None  # async only
    raw_result: bytes | None = field(default=None, repr=False)  # the JSON text as returned

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_result(cls, outcome: InvocationResult) -> Invocation:
        """The caller's view of the service's :class:`~lambdad.model.InvocationResult`."""
        if outcome.status in (202, 204):
            return cls(request_id=outcome.request_id, status=outcome.status,
                       event_id=outcome.event_id)  # fmt: skip
        raw = outcome.result
        return cls(
            request_id=outcome.request_id,
            result=_decode_result(raw),
            error=None if outcome.error is None else dict(outcome.error),
            function_error=outcome.function_error,
            report=outcome.report,
            log_tail=outcome.log_tail,
            raw_result=raw,
        )


def _decode_result(raw: bytes | None) -> Any:
    """The function's answer: JSON as Python values. A custom runtime may post any bytes (as on
    Lambda); what is not JSON is returned as text (``raw_result`` keeps the bytes)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def invocation_from_wire(body: Mapping[str, Any]) -> Invocation:
    return Invocation.from_result(InvocationResult.from_wire(body))


def zip_code(code: str | os.PathLike[str]) -> bytes:
    """A zip of ``code``: a directory (zipped deterministically) or an existing zip file."""
    path = os.fspath(code)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    if not os.path.isdir(path):
        raise FileNotFoundError(f"code path {path!r} is neither a directory nor a zip file")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(files):
                full = os.path.join(root, name)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                info = zipfile.ZipInfo(os.path.relpath(full, path), date_time=(1980, 1, 1, 0, 0, 0))
                mode = os.stat(full).st_mode
                info.external_attr = (stat.S_IFREG | (0o755 if mode & 0o111 else 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(full, "rb") as f:
                    archive.writestr(info, f.read())
    return buffer.getvalue()


def layer_args(
    name: str,
    code: str | os.PathLike[str],
    compatible_runtimes: Sequence[str] = (),
    compatible_architectures: Sequence[str] = (),
    description: str = "",
    license_info: str = "",
) -> dict[str, Any]:
    """The ``layer_publish`` request: the zip of ``code`` (a directory or a zip) and fields."""
    return {
        "name": name,
        "code": zip_code(code),
        "compatible_runtimes": list(compatible_runtimes),
        "compatible_architectures": list(compatible_architectures),
        "description": description,
        "license_info": license_info,
    }


def encode_payload(payload: Any) -> bytes:
    """Python object -> JSON bytes; ``bytes`` are taken as already-encoded JSON.

    Raises:
        RequestTooLarge: beyond the daemon's frame limit it could not even read the request
            (smaller payloads over the 6 MB / 256 KB limits are refused by the daemon).
    """
    raw = bytes(payload) if isinstance(payload, bytes | bytearray) else json.dumps(payload).encode()
    if len(raw) > MAX_PAYLOAD_SENT:
        raise RequestTooLarge(
            f"payload of {len(raw)} bytes is over the {MAX_PAYLOAD_SENT} byte frame limit",
            limit=MAX_PAYLOAD_SENT,
        )
    return raw


def deploy_args(
    name: str,
    code: str | os.PathLike[str],
    handler: str,
    runtime: str,
    memory_mb: int,
    timeout_s: float,
    env: Mapping[str, str] | None,
    concurrency: int | None,
    network: str,
    min_warm: int,
    **extra: Any,
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": name,
        "code": zip_code(code),
        "handler": handler,
        "runtime": runtime,
        "memory_mb": memory_mb,
        "timeout_s": timeout_s,
        "env": dict(env or {}),
        "network": network,
        "min_warm": min_warm,
        **extra,
    }
    if concurrency is not None:
        args["concurrency"] = concurrency
    return args


def invoke_args(
    name: str,
    payload: Any,
    type: str,
    log_tail: bool,
    qualifier: str | None,
    force_cold: bool = False,
) -> dict[str, Any]:
    """The ``invoke`` request's arguments (shared by every client flavour)."""
    request = InvokeRequest(
        function=name,
        payload=encode_payload(payload),
        qualifier=qualifier,
        type=type,
        log_tail=log_tail,
        force_cold=force_cold,
    )
    return request.to_wire()


def queue_send_args(
    queue: str, body: str | bytes, attributes: Mapping[str, Any] | None, delay_s: float
) -> dict[str, Any]:
    args: dict[str, Any] = {"name": queue, "body": body}
    if attributes:
        args["attributes"] = dict(attributes)
    if delay_s:
        args["delay_s"] = delay_s
    return args


Step = tuple[str, dict[str, Any]]
Plan = Generator[Step, dict[str, Any], dict[str, Any]]
"""A sans-IO conversation: yields (op, args) requests, is sent each answer (or thrown its
error), returns the last answer. :func:`run_plan` and :func:`run_plan_async` drive one."""


def with_code(op: str, args: dict[str, Any], max_frame: int) -> Plan:
    """The requests that carry ``args`` for ``op`` (``deploy`` or ``layer_publish``), whose
    ``code`` is a zip: one request if it fits in a frame of ``max_frame`` bytes, else a staged
    upload (``upload_begin``, ``upload_chunk``..., then ``op`` with ``upload``). A refused
    chunk aborts the upload; a lost connection needs nothing (the daemon drops its uploads).
    """
    code: bytes = args["code"]
    if len(code) <= max_frame - FRAME_ROOM:
        return (yield op, args)
    begun = yield "upload_begin", {"size": len(code)}
    upload = begun["upload"]
    chunk = max(1, min(UPLOAD_CHUNK, int(begun.get("max_chunk_bytes", UPLOAD_CHUNK))))
    view = memoryview(code)
    try:
        for offset in range(0, len(code), chunk):
            data = bytes(view[offset : offset + chunk])
            yield "upload_chunk", {"upload": upload, "offset": offset, "data": data}
    except ConnectionLost:
        raise
    except LambdadError as refused:
        try:
            yield "upload_abort", {"upload": upload}
        except LambdadError:
            pass  # e.g. it had expired: gone either way
        raise refused from None
    staged = {key: value for key, value in args.items() if key != "code"}
    return (yield op, {**staged, "upload": upload})


def run_plan(plan: Plan, call: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Drive ``plan`` with a blocking ``call(op, **args)``."""
    step = next(plan)
    while True:
        try:
            try:
                body = call(step[0], **step[1])
            except LambdadError as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(body)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def run_plan_async(
    plan: Plan, call: Callable[..., Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Drive ``plan`` with an async ``call(op, **args)``."""
    step = next(plan)
    while True:
        try:
            try:
                body = await call(step[0], **step[1])
            except LambdadError as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(body)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class ClientCore:
    """Request ids and response matching on top of the sans-IO connection (no I/O)."""

    def __init__(self, max_frame_size: int = 64 * 1024 * 1024) -> None:
        self.conn = Connection(Role.CLIENT, max_frame_size)
        self._ids = itertools.count(1)

    def hello(self) -> tuple[int, bytes]:
        request = hello_request(0)
        return request.id, self.conn.send(request)

    def request(self, op: str, args: Mapping[str, Any]) -> tuple[int, bytes]:
        request_id = next(self._ids)
        return request_id, self.conn.send(Request(request_id, op, dict(args)))

    def feed(
        self, data: bytes | memoryview
    ) -> Iterator[tuple[int | None, dict[str, Any] | LambdadError]]:
        """Feed received bytes; yield (request id, body or error) for every complete frame."""
        self.conn.receive_data(data)
        while True:
            event = self.conn.next_event()
            if isinstance(event, _Sentinel):
                return
            if isinstance(event, Response):
                yield event.id, dict(event.body)
            elif isinstance(event, ErrorResponse):
                yield event.id, event.exception()


def _unreachable(path: str, exc: OSError) -> DaemonUnreachable:
    return DaemonUnreachable(
        f"cannot reach lambdad at {path}: {exc.strerror or exc}. "
        "Is it running? Start it with `lambdad serve` (or `make run`), "
        "or point LAMBDAD_SOCKET / --socket at its socket.",
        socket=path,
    )


class Client:
    """Blocking client. Thread-safe (one request at a time per client).

    Args:
        socket_path: the daemon's socket; default: ``LAMBDAD_SOCKET`` or the standard path.
        timeout: seconds to wait for any one response (None: no limit).
    """

    def __init__(self, socket_path: str | None = None, timeout: float | None = None) -> None:
        self.socket_path = socket_path or default_socket_path()
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._core: ClientCore | None = None
        self._lock = threading.Lock()
        self._stash: dict[int | None, dict[str, Any] | LambdadError] = {}
        self.server_info: dict[str, Any] = {}
        # recv_into one buffer: recv(256 KiB) allocates 256 KiB per call (14 us vs 2 us).
        self._buf = bytearray(RECV_SIZE)
        self._view = memoryview(self._buf)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._core = None

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise _unreachable(self.socket_path, exc) from None
        self._sock, self._core = sock, ClientCore()
        self._stash.clear()
        hello_id, data = self._core.hello()
        sock.sendall(data)
        self.server_info = self._wait(hello_id)

    def _wait(self, request_id: int) -> dict[str, Any]:
        assert self._sock is not None and self._core is not None
        while request_id not in self._stash:
            try:
                n = self._sock.recv_into(self._buf)
                data = self._view[:n]
            except TimeoutError:
                self.close()
                raise
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"lost the connection to lambdad: {exc}") from None
            for rid, outcome in self._core.feed(data):
                self._stash[rid] = outcome
            if not data and request_id not in self._stash:
                self.close()
                orphan = self._stash.pop(None, None)
                if isinstance(orphan, LambdadError):
                    raise orphan
                raise ConnectionLost("lambdad closed the connection")
        outcome = self._stash.pop(request_id)
        if isinstance(outcome, LambdadError):
            raise outcome
        return outcome

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one request and return its response body (raises its error)."""
        with self._lock:
            if self._sock is None:
                self._connect()
            assert self._sock is not None and self._core is not None
            request_id, data = self._core.request(op, args)
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"lost the connection to lambdad: {exc}") from None
            try:
                return self._wait(request_id)
            except ProtocolError:
                self.close()
                raise

    def deploy(
        self,
        name: str,
        code: str | os.PathLike[str],
        handler: str = "app.handler",
        runtime: str = "python3",
        memory_mb: int = 128,
        timeout_s: float = 3.0,
        env: Mapping[str, str] | None = None,
        concurrency: int | None = None,
        network: str = "none",
        min_warm: int = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        """Deploy (or update) a function from a directory or zip; returns its description."""
        args = deploy_args(
            name, code, handler, runtime, memory_mb, timeout_s, env, concurrency, network,
            min_warm, **extra,
        )  # fmt: skip
        body = run_plan(with_code("deploy", args, self.max_frame_bytes()), self.call)
        return body["function"]  # type: ignore[no-any-return]

    def max_frame_bytes(self) -> int:
        """The largest frame the daemon accepts (its hello says; connects if need be)."""
        with self._lock:
            if self._sock is None:
                self._connect()
        return int(self.server_info.get("max_frame_bytes", DEFAULT_MAX_FRAME))

    def invoke(
        self,
        name: str,
        payload: Any = None,
        *,
        type: str = "sync",
        log_tail: bool = False,
        qualifier: str | None = None,
        force_cold: bool = False,
    ) -> Invocation:
        """Invoke a function. ``payload`` is any JSON-serialisable value (or JSON bytes).

        ``force_cold`` makes the daemon use (and then retire) a fresh sandbox: for studying
        cold starts."""
        args = invoke_args(name, payload, type, log_tail, qualifier, force_cold)
        return invocation_from_wire(self.call("invoke", **args))

    def get(self, name: str) -> dict[str, Any]:
        return self.call("get", name=name)["function"]  # type: ignore[no-any-return]

    def list(self) -> list[dict[str, Any]]:
        return self.call("list")["functions"]  # type: ignore[no-any-return]

    def delete(self, name: str) -> None:
        self.call("delete", name=name)

    def stats(self, name: str | None = None) -> dict[str, Any]:
        args = {"name": name} if name is not None else {}
        return self.call("stats", **args)["stats"]  # type: ignore[no-any-return]

    def stats_since(self, since_s: float, name: str | None = None) -> dict[str, Any]:
        """Per-minute statistics of the last ``since_s`` seconds, per function (persisted:
        they survive restarts): ``{"since", "until", "functions": {name: {"total",
        "minutes"}}}``."""
        args: dict[str, Any] = {"since": since_s, **({"name": name} if name is not None else {})}
        return self.call("stats", **args)["history"]  # type: ignore[no-any-return]

    def logs(
        self,
        name: str,
        cursor: dict[str, int] | None = None,
        *,
        since: Any = None,
        until: Any = None,
        request_id: str | None = None,
        filter: str | None = None,
        limit: int | None = None,
    ) -> tuple[str, dict[str, int]]:
        """(text, cursor): a function's log as Lambda's text (control characters escaped).

        Without a cursor, the newest ``limit`` records (default 1,000) that match, from every
        stream and rotated file; with the cursor of an earlier call, what was written since.
        ``since``/``until``: epoch seconds, a ``datetime``, a duration ago (``"10m"``) or an
        ISO 8601 timestamp. ``request_id``: one invocation's records. ``filter``: a
        CloudWatch-style pattern (terms, ``"phrases"``, ``-excluded``, ``?any``, ``%regex%``).
        """
        args = log_args(name, cursor, since, until, request_id, filter, limit, False)
        body = self.call("logs", **args)
        return bytes(body["data"]).decode("utf-8", "replace"), dict(body["cursor"])

    def log_events(
        self,
        name: str,
        cursor: dict[str, int] | None = None,
        *,
        since: Any = None,
        until: Any = None,
        request_id: str | None = None,
        filter: str | None = None,
        limit: int | None = None,
    ) -> LogPage:
        """Like :meth:`logs`, as records: each with its timestamp, source (``platform`` or
        ``function``), stream, request id and raw message bytes."""
        args = log_args(name, cursor, since, until, request_id, filter, limit, True)
        return page_from_wire(self.call("logs", **args))

    def dead_letters(self, name: str | None = None) -> builtins.list[dict[str, Any]]:
        args = {"name": name} if name is not None else {}
        return self.call("dead_letters", **args)["events"]  # type: ignore[no-any-return]

    def redrive(self, name: str | None = None, event_id: str | None = None) -> int:
        args = {k: v for k, v in (("name", name), ("event_id", event_id)) if v is not None}
        return int(self.call("redrive", **args)["redriven"])

    # -- layers ------------------------------------------------------------------------

    def publish_layer(
        self,
        name: str,
        code: str | os.PathLike[str],
        *,
        compatible_runtimes: Sequence[str] = (),
        compatible_architectures: Sequence[str] = (),
        description: str = "",
        license_info: str = "",
    ) -> dict[str, Any]:
        """Publish the next version of layer ``name``; returns it (``version``, ``arn``, ...)."""
        args = layer_args(
            name, code, compatible_runtimes, compatible_architectures, description, license_info
        )
        body = run_plan(with_code("layer_publish", args, self.max_frame_bytes()), self.call)
        return body["layer"]  # type: ignore[no-any-return]

    def list_layers(self, name: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every layer's newest version; or, with ``name``, that layer's versions, newest first."""
        args = {"name": name} if name is not None else {}
        return self.call("layer_list", **args)["layers"]  # type: ignore[no-any-return]

    def delete_layer(self, name: str, version: int) -> None:
        """Delete one version (functions that use it keep it). Raises ResourceNotFound."""
        self.call("layer_delete", name=name, version=version)

    # -- triggers (docs/triggers-http.md, docs/triggers-schedules.md) --------------------

    def trigger_add(self, kind: str, name: str, function: str, qualifier: str | None = None,
                    **settings: Any) -> dict[str, Any]:  # fmt: skip
        """Create a trigger (``kind``: http, url or schedule) bound to ``function``; the
        settings are the kind's (``route=``, ``expression=``, ...). Returns its description."""
        args: dict[str, Any] = {"kind": kind, "name": name, "function": function,
                                "settings": settings}  # fmt: skip
        if qualifier is not None:
            args["qualifier"] = qualifier
        return self.call("trigger_add", **args)["trigger"]  # type: ignore[no-any-return]

    def trigger_list(self, function: str | None = None) -> builtins.list[dict[str, Any]]:
        args = {"function": function} if function is not None else {}
        return self.call("trigger_list", **args)["triggers"]  # type: ignore[no-any-return]

    def trigger_delete(self, name: str) -> None:
        self.call("trigger_delete", name=name)

    def trigger_enable(self, name: str) -> dict[str, Any]:
        return self.call("trigger_enable", name=name)["trigger"]  # type: ignore[no-any-return]

    def trigger_disable(self, name: str) -> dict[str, Any]:
        return self.call("trigger_disable", name=name)["trigger"]  # type: ignore[no-any-return]

    # -- buckets (docs/triggers-buckets.md) ----------------------------------------------

    def create_bucket(self, name: str, path: str | None = None) -> dict[str, Any]:
        """Create a bucket: a directory under the state directory, or the existing ``path``."""
        args = {"path": path} if path is not None else {}
        return self.call("bucket_create", name=name, **args)["bucket"]  # type: ignore[no-any-return]

    def list_buckets(self) -> builtins.list[dict[str, Any]]:
        return self.call("bucket_list")["buckets"]  # type: ignore[no-any-return]

    def delete_bucket(self, name: str) -> None:
        self.call("bucket_delete", name=name)

    # -- queues, event-source mappings, destinations (docs/triggers-queues.md) ------------

    def create_queue(self, name: str, **settings: Any) -> dict[str, Any]:
        """Create an embedded queue (``visibility_timeout_s``, ``retention_s``,
        ``max_receive_count`` with ``dead_letter``); returns its description."""
        return self.call("queue_create", name=name, **settings)["queue"]  # type: ignore[no-any-return]

    def delete_queue(self, name: str) -> None:
        self.call("queue_delete", name=name)

    def send_message(
        self,
        queue: str,
        body: str | bytes,
        attributes: Mapping[str, Any] | None = None,
        delay_s: float = 0,
    ) -> str:
        """Send one message; returns its id once it is on disk."""
        args = queue_send_args(queue, body, attributes, delay_s)
        return str(self.call("queue_send", **args)["message_id"])

    def list_queues(self) -> builtins.list[dict[str, Any]]:
        return self.call("queue_list")["queues"]  # type: ignore[no-any-return]

    def purge_queue(self, name: str) -> int:
        return int(self.call("queue_purge", name=name)["purged"])

    def receive_messages(self, queue: str, max: int = 1) -> builtins.list[dict[str, Any]]:
        """Read and delete up to ``max`` visible messages (e.g. from a dead-letter queue)."""
        return self.call("queue_receive", name=queue, max=max)["messages"]  # type: ignore[no-any-return]

    def create_mapping(
        self, name: str, function: str, queue: str, **settings: Any
    ) -> dict[str, Any]:
        """An event-source mapping from ``queue`` (a name, ARN or nats:// URL) to
        ``function`` (``batch_size``, ``window_s``, ``report_batch_item_failures``,
        ``max_concurrency``, ``enabled``)."""
        return self.call(  # type: ignore[no-any-return]
            "mapping_create", name=name, function=function, queue=queue, **settings
        )["mapping"]

    def get_mapping(self, name: str) -> dict[str, Any]:
        return self.call("mapping_get", name=name)["mapping"]  # type: ignore[no-any-return]

    def list_mappings(self, function: str | None = None) -> builtins.list[dict[str, Any]]:
        args = {"function": function} if function is not None else {}
        return self.call("mapping_list", **args)["mappings"]  # type: ignore[no-any-return]

    def update_mapping(self, name: str, **changes: Any) -> dict[str, Any]:
        return self.call("mapping_update", name=name, **changes)["mapping"]  # type: ignore[no-any-return]

    def delete_mapping(self, name: str) -> None:
        self.call("mapping_delete", name=name)

    def set_destination(self, function: str, **settings: Any) -> dict[str, Any]:
        """A function's async settings: ``on_success`` / ``on_failure`` (``fn:F`` or
        ``queue:Q``), ``max_retries`` (0-2), ``max_age_s`` (60-21600)."""
        return self.call("destination_set", function=function, **settings)["config"]  # type: ignore[no-any-return]

    def get_destination(self, function: str | None = None) -> dict[str, Any]:
        args = {"function": function} if function is not None else {}
        return self.call("destination_get", **args)

    def delete_destination(self, function: str) -> None:
        self.call("destination_delete", function=function)


class AsyncOperations:
    """The operations of the async clients (asyncio and trio), written once over ``call``."""

    server_info: dict[str, Any]

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def max_frame_bytes(self) -> int:
        """The largest frame the daemon accepts (its hello says)."""
        return int(self.server_info.get("max_frame_bytes", DEFAULT_MAX_FRAME))

    async def deploy(
        self,
        name: str,
        code: str | os.PathLike[str],
        handler: str = "app.handler",
        runtime: str = "python3",
        memory_mb: int = 128,
        timeout_s: float = 3.0,
        env: Mapping[str, str] | None = None,
        concurrency: int | None = None,
        network: str = "none",
        min_warm: int = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        args = deploy_args(
            name, code, handler, runtime, memory_mb, timeout_s, env, concurrency, network,
            min_warm, **extra,
        )  # fmt: skip
        plan = with_code("deploy", args, await self.max_frame_bytes())
        return (await run_plan_async(plan, self.call))["function"]  # type: ignore[no-any-return]

    async def invoke(
        self,
        name: str,
        payload: Any = None,
        *,
        type: str = "sync",
        log_tail: bool = False,
        qualifier: str | None = None,
        force_cold: bool = False,
    ) -> Invocation:
        args = invoke_args(name, payload, type, log_tail, qualifier, force_cold)
        return invocation_from_wire(await self.call("invoke", **args))

    async def get(self, name: str) -> dict[str, Any]:
        return (await self.call("get", name=name))["function"]  # type: ignore[no-any-return]

    async def list(self) -> list[dict[str, Any]]:
        return (await self.call("list"))["functions"]  # type: ignore[no-any-return]

    async def delete(self, name: str) -> None:
        await self.call("delete", name=name)

    async def stats(self, name: str | None = None) -> dict[str, Any]:
        args = {"name": name} if name is not None else {}
        return (await self.call("stats", **args))["stats"]  # type: ignore[no-any-return]

    async def stats_since(self, since_s: float, name: str | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"since": since_s, **({"name": name} if name is not None else {})}
        return (await self.call("stats", **args))["history"]  # type: ignore[no-any-return]

    async def logs(
        self,
        name: str,
        cursor: dict[str, int] | None = None,
        *,
        since: Any = None,
        until: Any = None,
        request_id: str | None = None,
        filter: str | None = None,
        limit: int | None = None,
    ) -> tuple[str, dict[str, int]]:
        """See :meth:`Client.logs`."""
        args = log_args(name, cursor, since, until, request_id, filter, limit, False)
        body = await self.call("logs", **args)
        return bytes(body["data"]).decode("utf-8", "replace"), dict(body["cursor"])

    async def publish_layer(
        self,
        name: str,
        code: str | os.PathLike[str],
        *,
        compatible_runtimes: Sequence[str] = (),
        compatible_architectures: Sequence[str] = (),
        description: str = "",
        license_info: str = "",
    ) -> dict[str, Any]:
        args = layer_args(
            name, code, compatible_runtimes, compatible_architectures, description, license_info
        )
        plan = with_code("layer_publish", args, await self.max_frame_bytes())
        return (await run_plan_async(plan, self.call))["layer"]  # type: ignore[no-any-return]

    async def list_layers(self, name: str | None = None) -> builtins.list[dict[str, Any]]:
        args = {"name": name} if name is not None else {}
        return (await self.call("layer_list", **args))["layers"]  # type: ignore[no-any-return]

    async def delete_layer(self, name: str, version: int) -> None:
        await self.call("layer_delete", name=name, version=version)
    async def log_events(
        self,
        name: str,
        cursor: dict[str, int] | None = None,
        *,
        since: Any = None,
        until: Any = None,
        request_id: str | None = None,
        filter: str | None = None,
        limit: int | None = None,
    ) -> LogPage:
        """See :meth:`Client.log_events`."""
        args = log_args(name, cursor, since, until, request_id, filter, limit, True)
        return page_from_wire(await self.call("logs", **args))

    async def create_bucket(self, name: str, path: str | None = None) -> dict[str, Any]:
        """See :meth:`Client.create_bucket`."""
        args = {"path": path} if path is not None else {}
        return (await self.call("bucket_create", name=name, **args))["bucket"]  # type: ignore[no-any-return]

    async def list_buckets(self) -> builtins.list[dict[str, Any]]:
        return (await self.call("bucket_list"))["buckets"]  # type: ignore[no-any-return]

    async def delete_bucket(self, name: str) -> None:
        await self.call("bucket_delete", name=name)

    async def create_queue(self, name: str, **settings: Any) -> dict[str, Any]:
        return (await self.call("queue_create", name=name, **settings))["queue"]  # type: ignore[no-any-return]

    async def send_message(
        self,
        queue: str,
        body: str | bytes,
        attributes: Mapping[str, Any] | None = None,
        delay_s: float = 0,
    ) -> str:
        args = queue_send_args(queue, body, attributes, delay_s)
        return str((await self.call("queue_send", **args))["message_id"])

    async def list_queues(self) -> builtins.list[dict[str, Any]]:
        return (await self.call("queue_list"))["queues"]  # type: ignore[no-any-return]

    async def purge_queue(self, name: str) -> int:
        return int((await self.call("queue_purge", name=name))["purged"])

    async def receive_messages(self, queue: str, max: int = 1) -> builtins.list[dict[str, Any]]:
        return (await self.call("queue_receive", name=queue, max=max))["messages"]  # type: ignore[no-any-return]

    async def create_mapping(
        self, name: str, function: str, queue: str, **settings: Any
    ) -> dict[str, Any]:
        body = await self.call(
            "mapping_create", name=name, function=function, queue=queue, **settings
        )
        return body["mapping"]  # type: ignore[no-any-return]

    async def list_mappings(self, function: str | None = None) -> builtins.list[dict[str, Any]]:
        args = {"function": function} if function is not None else {}
        return (await self.call("mapping_list", **args))["mappings"]  # type: ignore[no-any-return]

    async def set_destination(self, function: str, **settings: Any) -> dict[str, Any]:
        body = await self.call("destination_set", function=function, **settings)
        return body["config"]  # type: ignore[no-any-return]

    async def get_mapping(self, name: str) -> dict[str, Any]:
        return (await self.call("mapping_get", name=name))["mapping"]  # type: ignore[no-any-return]

    async def update_mapping(self, name: str, **changes: Any) -> dict[str, Any]:
        body = await self.call("mapping_update", name=name, **changes)
        return body["mapping"]  # type: ignore[no-any-return]

    async def delete_mapping(self, name: str) -> None:
        await self.call("mapping_delete", name=name)

    async def get_destination(self, function: str | None = None) -> dict[str, Any]:
        args = {"function": function} if function is not None else {}
        return await self.call("destination_get", **args)

    async def delete_destination(self, function: str) -> None:
        await self.call("destination_delete", function=function)


class AsyncClient(AsyncOperations):
    """asyncio client with the same methods as :class:`Client` (coroutines). Many requests may
    be in flight at once on its one connection; responses are matched by id."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path or default_socket_path()
        self._core: ClientCore | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._futures: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._connect_lock = asyncio.Lock()
        self.server_info: dict[str, Any] = {}

    async def __aenter__(self) -> AsyncClient:
        await self._ensure()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        self._fail_all(ConnectionLost("client closed"))

    async def _ensure(self) -> None:
        async with self._connect_lock:
            if self._writer is not None:
                return
            try:
                reader, writer = await asyncio.open_unix_connection(
                    self.socket_path, limit=RECV_SIZE
                )
            except OSError as exc:
                raise _unreachable(self.socket_path, exc) from None
            self._core = ClientCore()
            self._writer = writer
            self._reader_task = asyncio.ensure_future(self._read(reader))
            hello_id, data = self._core.hello()
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._futures[hello_id] = future
            writer.write(data)
            self.server_info = await future

    async def _read(self, reader: asyncio.StreamReader) -> None:
        assert self._core is not None
        core = self._core
        try:
            while True:
                data = await reader.read(RECV_SIZE)
                for rid, outcome in core.feed(data):
                    if rid is None:
                        if isinstance(outcome, LambdadError):
                            self._fail_all(outcome)
                        continue
                    future = self._futures.pop(rid, None)
                    if future is None or future.done():
                        continue
                    if isinstance(outcome, LambdadError):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                if not data:
                    break
        except (OSError, ProtocolError) as exc:
            self._fail_all(ConnectionLost(f"lost the connection to lambdad: {exc}"))
        finally:
            self._fail_all(ConnectionLost("lambdad closed the connection"))
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    async def max_frame_bytes(self) -> int:
        await self._ensure()  # the hello answer says
        return await super().max_frame_bytes()

    def _fail_all(self, exc: LambdadError) -> None:
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(exc)

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        await self._ensure()
        assert self._core is not None and self._writer is not None
        request_id, data = self._core.request(op, args)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        self._writer.write(data)
        if self._writer.transport.get_write_buffer_size() > 4 * RECV_SIZE:
            await self._writer.drain()
        return await future


__all__ = [
    "NEED_DATA",
    "AsyncClient",
    "AsyncOperations",
    "Client",
    "ClientCore",
    "Invocation",
    "Report",
    "report_from_wire",
    "zip_code",
]
