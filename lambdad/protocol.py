"""The lambdad wire protocol, sans-IO.

This module contains no networking code at all (the h11 idea). Bytes go in with
:meth:`Connection.receive_data`, events come out of :meth:`Connection.next_event`, and
:meth:`Connection.send` turns an event into the bytes to write. The daemon's asyncio protocol,
the blocking client, the asyncio client and the trio client all drive this same object.

Framing: a connection is a stream of msgpack maps, one per frame, back to back. msgpack's
streaming ``Unpacker`` finds the frame boundaries; its ``max_buffer_size`` bounds a frame.

Frames (see docs/protocol.md for the full schema):

* request   ``{"id": int, "op": str, "args": map}``      client -> daemon
* response  ``{"id": int, "ok": map}``                   daemon -> client
* error     ``{"id": int | nil, "error": {"type": str, "message": str, ...}}``

The first request on a connection must be ``hello`` with a supported ``version``. Requests
carry client-chosen integer ids; responses echo them and may come back in any order, so many
requests can be in flight on one connection.

What the server side refuses: a frame over ``max_frame_size`` (as soon as a header declares
too much, see ``Connection._scan``) or bytes that are not msgpack raise
:class:`RemoteProtocolError`, whose error carries ``fatal=True``; a well-formed frame that is
not a valid request (bad id, unknown key, an argument the op does not take, see
:data:`OPERATION_ARGS`) is a non-fatal :class:`BadRequest`. What the daemon then does with the
connection is the socket front's business (docs/protocol.md, "Errors" and "Closing").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import msgpack

from lambdad.errors import (
    FrameTooLarge,
    InvalidParameterValue,
    LambdadError,
    ProtocolError,
    UnsupportedVersion,
    from_wire,
)

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({1})
DEFAULT_MAX_FRAME: Final = 8 * 1024 * 1024
MAX_ID: Final = 2**63 - 1
# The largest integral float accepted as an id: every integer up to 2**53 is exact in a float64
# (JavaScript's Number.MAX_SAFE_INTEGER + 1), so the conversion loses nothing.
MAX_FLOAT_ID: Final = 2**53
REQUEST_KEYS: Final = frozenset({"id", "op", "args"})

# The arguments each operation takes (docs/protocol.md, "Operations"). An argument not listed
# is refused, as botocore refuses unknown parameters: a misspelt ``timeout_S`` must not deploy
# with the default timeout. Ops missing here are not checked (the daemon refuses unknown ops).
OPERATION_ARGS: Final[dict[str, frozenset[str]]] = {
    "hello": frozenset({"version", "client"}),
    "ping": frozenset(),
    "deploy": frozenset(
        {
            "name",
            "code",
            "upload",
            "handler",
            "runtime",
            "memory_mb",
            "timeout_s",
            "env",
            "concurrency",
            "network",
            "tmp_mb",
            "min_warm",
            "pids_max",
            "layers",
            "log_format",
            "application_log_level",
            "system_log_level",
            "mounts",
            "template",
        }
    ),
    "get": frozenset({"name"}),
    "list": frozenset(),
    "delete": frozenset({"name"}),
    "invoke": frozenset(
        {"name", "payload", "type", "qualifier", "log_tail", "force_cold", "client_context",
         "trace_id"}
    ),
    "stats": frozenset({"name", "since"}),
    "logs": frozenset(
        {"name", "cursor", "since", "until", "request_id", "filter", "limit", "events"}
    ),
    "dead_letters": frozenset({"name"}),
    "redrive": frozenset({"name", "event_id"}),
    "publish": frozenset({"name", "description"}),
    "aliases": frozenset({"name"}),
    "alias_create": frozenset({"name", "alias", "version", "description", "weights"}),
    "alias_update": frozenset({"name", "alias", "version", "description", "weights"}),
    "alias_delete": frozenset({"name", "alias"}),
    "keys_create": frozenset({"key_name", "admin"}),
    "keys_list": frozenset(),
    "keys_remove": frozenset({"key"}),
    "layer_publish": frozenset(
        {"name", "code", "upload", "description", "license_info", "compatible_runtimes",
         "compatible_architectures"}
    ),
    "layer_list": frozenset({"name"}),
    "layer_delete": frozenset({"name", "version"}),
    # Staged uploads: code zips over one frame (lambdad/uploads.py; docs/protocol.md).
    "upload_begin": frozenset({"size"}),
    "upload_chunk": frozenset({"upload", "offset", "data"}),
    "upload_abort": frozenset({"upload"}),
    # Triggers (lambdad/triggers/wire.py; docs/triggers-http.md, docs/triggers-schedules.md).
    "trigger_add": frozenset({"kind", "name", "function", "qualifier", "settings"}),
    "trigger_list": frozenset({"function"}),
    "trigger_delete": frozenset({"name"}),
    "trigger_enable": frozenset({"name"}),
    "trigger_disable": frozenset({"name"}),
    # buckets (lambdad/buckets/wire.py; docs/triggers-buckets.md)
    "bucket_create": frozenset({"name", "path"}),
    "bucket_list": frozenset(),
    "bucket_delete": frozenset({"name"}),
    # queues, event-source mappings, destinations (docs/triggers-queues.md)
    "queue_create": frozenset(
        {"name", "visibility_timeout_s", "retention_s", "max_receive_count", "dead_letter"}
    ),
    "queue_delete": frozenset({"name"}),
    "queue_send": frozenset({"name", "body", "attributes", "delay_s"}),
    "queue_list": frozenset(),
    "queue_purge": frozenset({"name"}),
    "queue_receive": frozenset({"name", "max"}),
    "mapping_create": frozenset(
        {"name", "function", "queue", "batch_size", "window_s", "report_batch_item_failures",
         "max_concurrency", "enabled"}
    ),
    "mapping_get": frozenset({"name"}),
    "mapping_list": frozenset({"function"}),
    "mapping_update": frozenset(
        {"name", "function", "batch_size", "window_s", "report_batch_item_failures",
         "max_concurrency", "enabled"}
    ),
    "mapping_delete": frozenset({"name"}),
    "destination_set": frozenset(
        {"function", "on_success", "on_failure", "max_retries", "max_age_s"}
    ),
    "destination_get": frozenset({"function"}),
    "destination_delete": frozenset({"function"}),
}


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    """Where a connection is in its life. See :data:`TRANSITIONS`."""

    AWAIT_HELLO = "await-hello"  # server: no supported hello yet; client: hello not yet sent
    READY = "ready"  # handshake done (client: hello sent; pipelining behind it is fine)
    CLOSED = "closed"  # the peer sent EOF
    ERROR = "error"  # a fatal framing error: send the error, then close


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA: Final = _Sentinel.NEED_DATA
"""next_event(): no complete frame buffered; feed more bytes."""
CLOSED: Final = _Sentinel.CLOSED
"""next_event(): the peer closed its end and every buffered frame has been returned."""


# ---------------------------------------------------------------------------------------------
# Events: frozen dataclasses, the only things that cross this module's boundary.


@dataclass(frozen=True)
class Request:
    """A client's request. ``op`` names the operation, ``args`` its arguments."""

    id: int
    op: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    """The daemon's successful answer to request ``id``."""

    id: int
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorResponse:
    """The daemon's refusal of request ``id`` (``None`` when the frame had no usable id)."""

    id: int | None
    error: Mapping[str, Any]

    @classmethod
    def of(cls, id: int | None, exc: LambdadError) -> ErrorResponse:
        return cls(id, exc.to_wire())

    def exception(self) -> LambdadError:
        """The typed exception this error stands for."""
        return from_wire(dict(self.error))


@dataclass(frozen=True)
class BadRequest:
    """Server side: a frame that was valid msgpack but not a valid request.

    Not fatal: answer it with ``ErrorResponse.of(event.id, event.error)`` and carry on.
    """

    id: int | None
    error: LambdadError


Event = Request | Response | ErrorResponse | BadRequest


class LocalProtocolError(ProtocolError):
    """We (the caller of this module) misused the protocol, e.g. sent a response as a client."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something fatal (not msgpack, a frame over the limit). ``error`` is what
    to send back before closing (server side); its details carry ``fatal=True``, so the error
    frame says that the connection ends."""

    def __init__(self, error: LambdadError) -> None:
        super().__init__(error.message)
        self.error = error


# Rule: everything that moves the state machine lives in this table.
# (role, state, happening) -> new state
TRANSITIONS: Final[dict[tuple[Role, State, str], State]] = {
    (Role.CLIENT, State.AWAIT_HELLO, "send-hello"): State.READY,
    (Role.SERVER, State.AWAIT_HELLO, "recv-hello-supported"): State.READY,
    (Role.SERVER, State.AWAIT_HELLO, "recv-hello-unsupported"): State.AWAIT_HELLO,
    (Role.SERVER, State.READY, "recv-hello-supported"): State.READY,
    (Role.SERVER, State.READY, "recv-hello-unsupported"): State.READY,
    (Role.CLIENT, State.AWAIT_HELLO, "recv-eof"): State.CLOSED,
    (Role.CLIENT, State.READY, "recv-eof"): State.CLOSED,
    (Role.SERVER, State.AWAIT_HELLO, "recv-eof"): State.CLOSED,
    (Role.SERVER, State.READY, "recv-eof"): State.CLOSED,
    # CLOSED is sticky: asking again after the peer's EOF keeps answering CLOSED.
    (Role.CLIENT, State.CLOSED, "recv-eof"): State.CLOSED,
    (Role.SERVER, State.CLOSED, "recv-eof"): State.CLOSED,
    (Role.CLIENT, State.AWAIT_HELLO, "recv-garbage"): State.ERROR,
    (Role.CLIENT, State.READY, "recv-garbage"): State.ERROR,
    (Role.SERVER, State.AWAIT_HELLO, "recv-garbage"): State.ERROR,
    (Role.SERVER, State.READY, "recv-garbage"): State.ERROR,
}


def hello_request(id: int = 0, client: str = "lambdad-python") -> Request:
    """The handshake request a client sends first."""
    return Request(id, "hello", {"version": PROTOCOL_VERSION, "client": client})


_UNPACKERS: dict[int, list[msgpack.Unpacker]] = {}  # idle unpackers, by frame limit
_UNPACKER_POOL_MAX = 256


def _new_unpacker(max_frame_size: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        raw=False,
        max_buffer_size=max_frame_size,
        strict_map_key=False,
        read_size=min(4096, max_frame_size),
    )


class Connection:
    """One end of a lambdad connection.

    Args:
        role: which end this is.
        max_frame_size: the largest frame accepted from the peer, in bytes. A bigger frame is
            a fatal :class:`FrameTooLarge`.
    """

    def __init__(self, role: Role, max_frame_size: int = DEFAULT_MAX_FRAME) -> None:
        self.role = role
        self.max_frame_size = max_frame_size
        self.state = State.AWAIT_HELLO
        self.peer_version: int | None = None
        # Borrowed from a shared pool only while bytes are buffered: an Unpacker carries a
        # ~44 KB decoding stack, and an idle connection should not (10,000 idle connections
        # would hold 440 MB). See _acquire_unpacker / _release_unpacker.
        self._unpacker: msgpack.Unpacker | None = None
        self._tell_offset = 0  # our stream offset minus the borrowed unpacker's tell()
        self._fed = 0  # bytes handed to the unpacker so far
        # Stream offset where the frame being decoded begins. The unpacker consumes a
        # partly received map or array element by element, so its tell() moves inside a
        # frame: only this offset says how big the current frame has grown so far.
        self._frame_start = 0
        self._pending = bytearray()  # received but not yet fed (unpacker full)
        # The size check from headers (see _scan). _chunks: the chunks fed since the current
        # frame began (references, not copies: whole frames must not pay for the check), the
        # first starting at stream offset _chunks_start. _scan_pos: where the scan goes on;
        # _scan_skip: how many body bytes (of a str/bin/ext) come first there.
        self._chunks: list[bytes] = []
        self._chunks_start = 0
        self._scan_pos = 0
        self._scan_skip = 0
        self._eof = False
        self._packer = msgpack.Packer(use_bin_type=True)

    # -- state ----------------------------------------------------------------------------

    def _move(self, happening: str) -> None:
        try:
            self.state = TRANSITIONS[(self.role, self.state, happening)]
        except KeyError:
            raise LocalProtocolError(
                f"{happening!r} is not allowed for a {self.role.value} in state {self.state.value}"
            ) from None

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the peer. ``b""`` means the peer closed its end.

        Raises:
            LocalProtocolError: bytes fed after ``b""`` (the caller mixed up its streams).
        """
        if self.state is State.ERROR:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("received data after the end of the stream")
        self._pending += data
        self._fill()

    def _acquire_unpacker(self) -> msgpack.Unpacker:
        if self._unpacker is None:
            pool = _UNPACKERS.setdefault(self.max_frame_size, [])
            self._unpacker = pool.pop() if pool else _new_unpacker(self.max_frame_size)
            self._tell_offset = self._fed - self._unpacker.tell()
        return self._unpacker

    def _release_unpacker(self) -> None:
        """Give the unpacker back once it holds nothing of ours (between frames)."""
        if self._unpacker is not None and self._fed == self._frame_start and not self._pending:
            pool = _UNPACKERS.setdefault(self.max_frame_size, [])
            if len(pool) < _UNPACKER_POOL_MAX:
                pool.append(self._unpacker)
            self._unpacker = None

    def _fill(self) -> None:
        # The limit is per frame: every byte fed since the current frame began counts,
        # including those already decoded into a partly built object.
        space = self.max_frame_size - (self._fed - self._frame_start)
        if space <= 0 or not self._pending:
            return
        chunk = bytes(self._pending[:space])
        del self._pending[:space]
        self._acquire_unpacker().feed(chunk)
        if self._fed == self._frame_start:  # every earlier chunk held whole frames only
            self._chunks.clear()
            self._chunks_start = self._fed
        self._chunks.append(chunk)
        self._fed += len(chunk)

    def _scan(self) -> None:
        """Refuse an incomplete frame as soon as a header declares more than the limit.

        The unpacker would wait for a declared 1 GiB ``bin`` until the limit's worth of bytes
        has arrived; this walks the headers of the buffered part of the frame (skipping str,
        bin and ext bodies without looking at them) and fails at the first header whose body,
        or whose element count, cannot fit in ``max_frame_size``. Runs only while a frame is
        incomplete, so whole frames in one read cost nothing here.
        """
        chunks = self._chunks
        buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        end = len(buf)
        start = self._scan_pos - self._chunks_start
        i = min(start + self._scan_skip, end)
        self._scan_skip -= i - start
        frame_end = self._frame_start + self.max_frame_size  # the frame may not pass this
        while i < end:
            head, length_bytes, kind = _TOKENS[buf[i]]
            if kind == _INVALID or i + head > end:
                break  # garbage is the unpacker's to report; a cut header: wait for more
            length = int.from_bytes(buf[i + 1 : i + 1 + length_bytes], "big")
            if kind == _BODY:
                body_end = self._chunks_start + i + head + length
            else:  # >= 1 byte per element
                body_end = self._chunks_start + i + head + length * kind
            if body_end > frame_end:
                self._fail(_too_large(self.max_frame_size))
            i += head
            if kind == _BODY:
                take = min(length, end - i)
                i += take
                self._scan_skip = length - take
        # Keep only what is not scanned yet (a cut header, at most 17 bytes, or nothing).
        self._scan_pos = self._chunks_start + i
        self._chunks = [buf[i:]] if i < end else []
        self._chunks_start = self._scan_pos

    def next_event(self) -> Event | _Sentinel:
        """Return the next complete event, :data:`NEED_DATA` or :data:`CLOSED`.

        Raises:
            RemoteProtocolError: the peer sent bytes that are not a lambdad frame, or a frame
                over ``max_frame_size``. The connection is unusable afterwards.
        """
        if self.state is State.ERROR:
            raise RemoteProtocolError(ProtocolError("connection is in the error state"))
        while True:
            if self._unpacker is None and self._pending:
                self._fill()
            if self._unpacker is None:  # nothing buffered at all
                if self._eof:
                    self._move("recv-eof")
                    return CLOSED
                return NEED_DATA
            try:
                frame = self._unpacker.unpack()
            except msgpack.OutOfData:
                if self._pending:
                    before = self._fed
                    self._fill()
                    if self._fed != before:
                        continue
                    self._fail(_too_large(self.max_frame_size))
                if self._fed != self._frame_start:
                    self._scan()
                if self._eof:
                    if self._fed != self._frame_start:
                        self._fail(ProtocolError("connection closed in the middle of a frame"))
                    self._release_unpacker()
                    self._move("recv-eof")
                    return CLOSED
                self._release_unpacker()
                return NEED_DATA
            except ValueError as exc:  # includes ExtraData, FormatError, StackError, UTF-8
                if "exceeds max" in str(exc):
                    self._fail(_too_large(self.max_frame_size))
                self._fail(ProtocolError(f"bytes are not a msgpack frame: {exc}"))
            except Exception as exc:  # msgpack raises a few odd types on garbage
                self._fail(ProtocolError(f"bytes are not a msgpack frame: {exc!r}"))
            # A frame ended: the size check's scan starts afresh at the next one (the chunks
            # that hold earlier frames are dropped by the next _fill or _scan).
            self._frame_start = self._scan_pos = self._unpacker.tell() + self._tell_offset
            self._scan_skip = 0
            self._release_unpacker()
            if not isinstance(frame, dict):
                self._fail(
                    ProtocolError(f"a frame must be a msgpack map, got {type(frame).__name__}")
                )
            return self._parse(frame)

    def _fail(self, error: LambdadError) -> NoReturn:
        self._unpacker = None  # its state is unknown now: never back to the pool
        self._chunks = []
        self._move("recv-garbage")
        error.details["fatal"] = True
        raise RemoteProtocolError(error)

    def _parse(self, frame: dict[Any, Any]) -> Event:
        raw_id = frame.get("id")
        id_ok = isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 <= raw_id <= MAX_ID
        if not id_ok and isinstance(raw_id, float) and raw_id.is_integer():
            # What some msgpack encoders emit for large numbers (JavaScript's): same integer.
            id_ok = 0 <= raw_id <= MAX_FLOAT_ID
            if id_ok:
                raw_id = int(raw_id)
        if self.role is Role.SERVER:
            return self._parse_request(frame, raw_id if id_ok else None)
        return self._parse_response(frame, raw_id if id_ok else None)

    def _parse_request(self, frame: dict[Any, Any], id: int | None) -> Event:
        if id is None:
            if "id" not in frame:
                return BadRequest(None, ProtocolError("request has no 'id'"))
            return BadRequest(
                None,
                ProtocolError(
                    f"'id' must be an integer in [0, 2**63), got {_describe(frame['id'])}"
                ),
            )
        if "op" not in frame:
            return BadRequest(id, ProtocolError("request has no 'op'"))
        # "id" and "op" are there: any key beyond them and "args" is one too many.
        if len(frame) > (3 if "args" in frame else 2):
            unknown = [key for key in frame if key not in REQUEST_KEYS]
            return BadRequest(
                id,
                ProtocolError(
                    f"unknown request key {_describe(unknown[0])}; a request has only "
                    "'id', 'op' and 'args'"
                ),
            )
        op = frame["op"]
        if not isinstance(op, str):
            return BadRequest(id, ProtocolError(f"'op' must be a string, got {_kind(op)}"))
        args = frame.get("args", {})
        if not isinstance(args, dict):
            return BadRequest(id, ProtocolError(f"'args' must be a map, got {_kind(args)}"))
        for key in args:
            if not isinstance(key, str):
                return BadRequest(
                    id, ProtocolError(f"'args' keys must be strings, got {_describe(key)}")
                )
        allowed = OPERATION_ARGS.get(op)
        if allowed is not None and not allowed.issuperset(args):
            key = next(key for key in args if key not in allowed)
            return BadRequest(
                id,
                InvalidParameterValue(
                    f"unknown argument {key!r:.64} for {op!r}; it takes "
                    f"{', '.join(sorted(allowed)) or 'no arguments'}",
                    field=key[:64],
                ),
            )
        if op == "hello":
            if "version" not in args:
                self._move("recv-hello-unsupported")
                return BadRequest(
                    id,
                    UnsupportedVersion(
                        f"hello has no 'version'; this daemon speaks {sorted(SUPPORTED_VERSIONS)}",
                        supported=sorted(SUPPORTED_VERSIONS),
                    ),
                )
            version = args.get("version")
            # An int check first: a list or map version is unhashable for the set lookup.
            if (
                not isinstance(version, int)
                or isinstance(version, bool)
                or version not in SUPPORTED_VERSIONS
            ):
                self._move("recv-hello-unsupported")
                return BadRequest(
                    id,
                    UnsupportedVersion(
                        f"protocol version {version!r:.100} is not supported; "
                        f"this daemon speaks {sorted(SUPPORTED_VERSIONS)}",
                        supported=sorted(SUPPORTED_VERSIONS),
                    ),
                )
            self._move("recv-hello-supported")
            self.peer_version = version
        elif self.state is State.AWAIT_HELLO:
            return BadRequest(id, ProtocolError("the first request must be 'hello'"))
        return Request(id, op, args)

    def _parse_response(self, frame: dict[Any, Any], id: int | None) -> Event:
        if "error" in frame:
            error = frame["error"]
            if not isinstance(error, dict):
                error = {"type": "ProtocolError", "message": f"malformed error {error!r}"}
            return ErrorResponse(id, error)
        body = frame.get("ok")
        if id is None or not isinstance(body, dict):
            self._fail(ProtocolError(f"malformed response frame: {frame!r:.200}"))
        return Response(id, body)

    # -- output ---------------------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """Return the bytes that carry ``event`` to the peer."""
        if isinstance(event, Request):
            if self.role is not Role.CLIENT:
                raise LocalProtocolError("only a client sends requests")
            if self.state is State.AWAIT_HELLO and event.op != "hello":
                raise LocalProtocolError("send 'hello' before any other request")
            _check_id(event.id, "request")
            data = self._pack({"id": event.id, "op": event.op, "args": dict(event.args)})
            # Move only once the frame exists: a hello that cannot be packed was not sent.
            if event.op == "hello" and self.state is State.AWAIT_HELLO:
                self._move("send-hello")
            return data
        if self.role is not Role.SERVER:
            raise LocalProtocolError("only the daemon sends responses")
        if isinstance(event, Response):
            _check_id(event.id, "response")
            return self._pack({"id": event.id, "ok": dict(event.body)})
        if isinstance(event, ErrorResponse):
            if event.id is not None:
                _check_id(event.id, "error response")
            return self._pack({"id": event.id, "error": dict(event.error)})
        if isinstance(event, BadRequest):
            if event.id is not None:
                _check_id(event.id, "error response")
            return self._pack({"id": event.id, "error": event.error.to_wire()})
        raise LocalProtocolError(f"cannot send {event!r}")

    def _pack(self, frame: dict[str, Any]) -> bytes:
        # A value msgpack cannot encode raises TypeError here (the caller's bug, reported as
        # such); the packer resets itself, so the connection stays usable.
        data: bytes = self._packer.pack(frame)
        return data


def _too_large(limit: int) -> FrameTooLarge:
    return FrameTooLarge(f"frame larger than the limit of {limit} bytes", limit=limit)


# The size check's view of msgpack: for each first byte, (header bytes, bytes of the length
# field inside the header, kind). Kind _BODY: the length counts body bytes after the header
# (str, bin, ext); 1 or 2: it counts elements of an array or map (x1 or x2 values, each at
# least one byte); _SCALAR: the token is the header alone. Fixstr bodies count as header.
_INVALID, _SCALAR, _BODY = -1, 0, 3


def _token_table() -> list[tuple[int, int, int]]:
    table = [(1, 0, _SCALAR)] * 256  # fixints, fixmap, fixarray, nil, true, false
    for b in range(0xA0, 0xC0):
        table[b] = (1 + (b & 0x1F), 0, _SCALAR)  # fixstr
    table[0xC1] = (1, 0, _INVALID)
    for b, length_bytes in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
        table[b] = (1 + length_bytes, length_bytes, _BODY)  # bin8/16/32, str8/16/32
    for b, length_bytes in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        table[b] = (2 + length_bytes, length_bytes, _BODY)  # ext8/16/32 (+ a type byte)
    for b, size in ((0xCA, 5), (0xCB, 9), (0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9)):
        table[b] = (size, 0, _SCALAR)  # float32/64, uint8..64
    for b, size in ((0xD0, 2), (0xD1, 3), (0xD2, 5), (0xD3, 9)):
        table[b] = (size, 0, _SCALAR)  # int8..64
    for b, size in ((0xD4, 3), (0xD5, 4), (0xD6, 6), (0xD7, 10), (0xD8, 18)):
        table[b] = (size, 0, _SCALAR)  # fixext1..16
    table[0xDC], table[0xDD] = (3, 2, 1), (5, 4, 1)  # array16/32
    table[0xDE], table[0xDF] = (3, 2, 2), (5, 4, 2)  # map16/32
    return table


_TOKENS: Final = _token_table()


def _check_id(id: object, what: str) -> None:
    if not isinstance(id, int) or isinstance(id, bool) or not 0 <= id <= MAX_ID:
        raise LocalProtocolError(f"a {what} id must be an integer in [0, 2**63), got {id!r}")


def _kind(value: object) -> str:
    """The msgpack name of a decoded value's type, for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _describe(value: object) -> str:
    return f"{_kind(value)} {value!r:.50}"
