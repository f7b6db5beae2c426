"""The Lambda Runtime API (``2018-06-01``) inside a sandbox, served by its PID-1 agent.

A process runtime (``provided``, Node.js) runs its code in a child of the agent; the child asks
for events and posts answers over HTTP on the sandbox's own loopback, exactly as on Lambda
(``AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001``). Each sandbox has a network namespace of its own,
so its ``127.0.0.1:9001`` is its own: no other sandbox, and not the host, can reach it.

Two halves, like :mod:`lambdad.protocol` for the client socket:

* :class:`RequestParser` — sans-IO, bounded HTTP/1.1 request parsing (``feed(bytes)``,
  ``next_request()``): request line, headers, ``Content-Length`` or ``chunked`` bodies.
  Anything malformed is a :class:`HttpError` carrying the status to answer with; a body over
  the cap is counted, not kept (``Request.too_large``), so the connection stays in step.
* :class:`RuntimeApiServer` — the blocking server the agent drives with ``selectors``
  (single-threaded, like the rest of the agent): :meth:`~RuntimeApiServer.wait_init` until the
  runtime first asks for an event (Init is done), and :meth:`~RuntimeApiServer.invoke` to hand
  one event out and wait for its answer. Either returns early if the runtime process exits.

Dependency-free: the sandbox imports nothing of the daemon's HTTP machinery.
"""

from __future__ import annotations

import json
import re
import secrets
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Final

API_VERSION: Final = "2018-06-01"
HOST: Final = "127.0.0.1"
PORT: Final = 9001
MAX_RESPONSE: Final = 6 * 1024 * 1024  # Lambda's synchronous response limit
MAX_ERROR_BODY: Final = 1024 * 1024  # an error report (message + trace) beyond this is cut
MAX_HEAD: Final = 64 * 1024  # request line + headers
MAX_HEADERS: Final = 100
MAX_CONNECTIONS: Final = 32  # a runtime needs one or two; more are refused (closed)
SEND_TIMEOUT_S: Final = 5.0  # a runtime that does not read its answers loses the connection
_TOKEN: Final = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PATH_INVOCATION: Final = re.compile(
    r"^/" + API_VERSION + r"/runtime/invocation/([^/]{1,128})/(response|error)$"
)
_NEXT: Final = f"/{API_VERSION}/runtime/invocation/next"
_INIT_ERROR: Final = f"/{API_VERSION}/runtime/init/error"
_REASONS: Final = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """The peer sent something that is not an acceptable HTTP/1.1 request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes = b""
    body_size: int = 0  # bytes the body had (also when it was too large to keep)
    too_large: bool = False  # the body was over the cap: counted, not kept
    keep_alive: bool = True


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER = range(6)


class RequestParser:
    """Incremental HTTP/1.1 request parser with explicit bounds (sans-IO).

    ``body_cap`` is how many body bytes of a request to keep; more are counted and
    dropped (``too_large``). ``expects_continue`` is set when a request whose body has not
    arrived asked for ``100-continue``: the server answers it and clears the flag.
    """

    def __init__(self, body_cap: int = MAX_RESPONSE) -> None:
        self.buf = bytearray()
        self.state = _HEAD
        self.body_cap = body_cap
        self.current: Request | None = None
        self.remaining = 0
        self.body = bytearray()
        self.expects_continue = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_request(self) -> Request | None:
        """The next complete request, or None if more bytes are needed.

        Raises:
            HttpError: malformed or over a bound; the connection must answer and close.
        """
        while True:
            if self.state == _HEAD:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        raise HttpError(431, "request head too large")
                    return None
                if end > MAX_HEAD:
                    raise HttpError(431, "request head too large")
                head = bytes(self.buf[:end])
                del self.buf[: end + 4]
                self._start(head)
                continue
            req = self.current
            assert req is not None
            if self.state == _LENGTH:
                take = min(self.remaining, len(self.buf))
                self._body(self.buf[:take])
                del self.buf[:take]
                self.remaining -= take
                if self.remaining:
                    return None
                return self._finish()
            if self.state == _CHUNK_SIZE:
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > 1024:
                        raise HttpError(400, "chunk size line too long")
                    return None
                line = bytes(self.buf[:end]).split(b";", 1)[0].strip()
                del self.buf[: end + 2]
                if not line or len(line) > 16 or not re.fullmatch(rb"[0-9A-Fa-f]+", line):
                    raise HttpError(400, "bad chunk size")
                self.remaining = int(line, 16)
                self.state = _CHUNK_DATA if self.remaining else _TRAILER
                continue
            if self.state == _CHUNK_DATA:
                take = min(self.remaining, len(self.buf))
                self._body(self.buf[:take])
                del self.buf[:take]
                self.remaining -= take
                if self.remaining:
                    return None
                self.state = _CHUNK_END
                continue
            if self.state == _CHUNK_END:
                if len(self.buf) < 2:
                    return None
                if self.buf[:2] != b"\r\n":
                    raise HttpError(400, "chunk not followed by CRLF")
                del self.buf[:2]
                self.state = _CHUNK_SIZE
                continue
            # _TRAILER: trailer lines (ignored) up to an empty line
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise HttpError(431, "trailers too large")
                return None
            del self.buf[: end + 2]
            if end == 0:
                return self._finish()

    def _start(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
            raise HttpError(400, "malformed request line")
        method, target, version = parts
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            if version.startswith(b"HTTP/"):
                raise HttpError(505, "only HTTP/1.1 is served")
            raise HttpError(400, "malformed request line")
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpError(431, "too many headers")
        headers: dict[str, str] = {}
        lengths: set[bytes] = set()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                raise HttpError(400, "malformed header line")
            value = value.strip(b" \t")
            if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
                raise HttpError(400, "control character in a header value")
            key = name.decode("ascii").lower()
            if key == "content-length":
                lengths.add(value)
            headers[key] = value.decode("latin-1")
        try:
            target_text = target.decode("ascii")
        except UnicodeDecodeError:
            raise HttpError(400, "request target is not ASCII") from None
        keep_alive = version == b"HTTP/1.1"
        connection = headers.get("connection", "").lower()
        if "close" in connection:
            keep_alive = False
        elif "keep-alive" in connection:
            keep_alive = True
        req = Request(method.decode("ascii"), target_text, headers, keep_alive=keep_alive)
        self.current = req
        self.body = bytearray()
        te = headers.get("transfer-encoding")
        if te is not None:
            if lengths:
                raise HttpError(400, "both Transfer-Encoding and Content-Length")
            if te.lower() != "chunked":
                raise HttpError(501, f"transfer-encoding {te[:40]!r} is not supported")
            self.state = _CHUNK_SIZE
        elif lengths:
            if len(lengths) > 1:
                raise HttpError(400, "conflicting Content-Length headers")
            raw = next(iter(lengths))
            if not raw.isdigit() or len(raw) > 15:
                raise HttpError(400, "malformed Content-Length")
            self.remaining = int(raw)
            self.state = _LENGTH
        else:
            self.remaining = 0
            self.state = _LENGTH
        if self.state != _LENGTH or self.remaining:
            self.expects_continue = headers.get("expect", "").lower() == "100-continue"

    def _body(self, data: bytearray | bytes) -> None:
        req = self.current
        assert req is not None
        req.body_size += len(data)
        if req.too_large:
            return
        if req.body_size > self.body_cap:
            req.too_large = True
            self.body = bytearray()
            return
        self.body += data

    def _finish(self) -> Request:
        req = self.current
        assert req is not None
        req.body = bytes(self.body)
        self.body = bytearray()
        self.current = None
        self.state = _HEAD
        self.expects_continue = False
        return req

    def declared_length(self) -> int | None:
        """The Content-Length of the request whose body is being read (None: chunked/none)."""
        if self.current is None or self.state != _LENGTH:
            return None
        return self.current.body_size + self.remaining


def response_bytes(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    close: bool = False,
    content_type: str = "application/json",
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


_ACCEPTED: Final = b'{"status":"OK"}'


# -- what the agent sees ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One invocation, as the runtime receives it from ``next``."""

    request_id: str
    payload: bytes
    deadline_ms: int  # wall clock, Unix ms, as Lambda's header
    function_arn: str
    trace_id: str
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass
class Answer:
    """How an invocation ended, from the runtime's side."""

    result: bytes | None = None  # body of .../response
    error: dict[str, Any] | None = None  # Lambda's error object (.../error, or too large)
    duration_us: float = 0.0  # from handing the event out to the answer's last byte
    exited: bool = False  # the runtime process exited before answering


@dataclass
class InitOutcome:
    ready: bool = False  # the runtime asked for its first event
    error: dict[str, Any] | None = None  # it posted init/error
    exited: bool = False  # it exited first


@dataclass
class _Conn:
    sock: socket.socket
    parser: RequestParser = field(default_factory=RequestParser)
    waiting_next: bool = False  # a ``next`` is parked on this connection
    close_after_next: bool = False  # that ``next`` asked for Connection: close
    draining: int = 0  # answered and closing: body bytes still to read and drop (no RST)


def trace_header() -> str:
    """An X-Ray trace header for one invocation: ``Root=1-<8 hex time>-<24 hex>;...``."""
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


class RuntimeApiServer:
    """The Runtime API for one sandbox (one runtime process, one invocation at a time)."""

    def __init__(self, host: str = HOST, port: int = PORT) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(16)
        self.listener.setblocking(False)
        bound_host, bound_port = self.listener.getsockname()[:2]
        self.address = f"{bound_host}:{bound_port}"
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.conns: dict[int, _Conn] = {}
        self.initialized = False
        self.event: Event | None = None  # the invocation being served, once handed out
        self.pending: Event | None = None  # waiting for the runtime's next ``next``
        self.handed_at = 0
        self.answer: Answer | None = None
        self.init_outcome: InitOutcome | None = None
        # Request ids already answered, oldest first (their late posts: 403).
        self.finished: dict[str, None] = {}
        self.child_fd = -1

    # -- the agent's side ------------------------------------------------------------------

    def watch_child(self, pidfd: int) -> None:
        """Stop waiting when this pidfd (the runtime process) becomes readable (it exited)."""
        if self.child_fd >= 0:
            self.sel.unregister(self.child_fd)
        self.child_fd = pidfd
        self.sel.register(pidfd, selectors.EVENT_READ, "child")

    def wait_init(self) -> InitOutcome:
        """Serve until the runtime asks for its first event, reports an init error, or exits."""
        self.init_outcome = None
        while self.init_outcome is None:
            self._step()
        self.initialized = self.init_outcome.ready
        return self.init_outcome

    def invoke(self, event: Event) -> Answer:
        """Hand ``event`` to the runtime's ``next`` and serve until it is answered."""
        self.answer = None
        self.pending = event
        for conn in list(self.conns.values()):
            if conn.waiting_next:
                self._hand_out(conn)
                break
        while self.answer is None:
            self._step()
        answer = self.answer
        self.finished[event.request_id] = None
        while len(self.finished) > 64:
            del self.finished[next(iter(self.finished))]
        self.event = self.pending = None
        return answer

    # -- the loop --------------------------------------------------------------------------

    def _step(self) -> None:
        child_exited = False
        for key, _ in self.sel.select():
            if key.data == "child":
                child_exited = True
            elif key.data is None:
                self._accept()
            else:
                self._readable(key.data)
        if child_exited:
            # Whatever it sent before exiting still counts: read it all first.
            self._drain()
            if self.init_outcome is None and not self.initialized:
                self.init_outcome = InitOutcome(exited=True)
            elif self.answer is None and self.initialized:
                self.answer = Answer(exited=True)
            self.sel.unregister(self.child_fd)
            self.child_fd = -1

    def _drain(self) -> None:
        for _ in range(MAX_CONNECTIONS + 1):
            try:
                self._accept()
            except OSError:
                break
        for conn in list(self.conns.values()):
            self._readable(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if len(self.conns) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd in self.conns:
            del self.conns[fd]
            self.sel.unregister(conn.sock)
        conn.sock.close()

    def _send(self, conn: _Conn, data: bytes) -> bool:
        try:
            conn.sock.settimeout(SEND_TIMEOUT_S)
            conn.sock.sendall(data)
            conn.sock.setblocking(False)
            return True
        except OSError:
            self._close(conn)
            return False

    def _readable(self, conn: _Conn) -> None:
        if conn.sock.fileno() < 0:
            return
        try:
            data = conn.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.draining:
            conn.draining -= len(data)
            if conn.draining <= 0:
                self._close(conn)
            return
        conn.parser.feed(data)
        self._process(conn)

    def _process(self, conn: _Conn) -> None:
        """Serve the complete requests in the connection's buffer, in order; stop at a
        parked ``next`` (what follows it is served once it has its event)."""
        while conn.sock.fileno() >= 0 and not conn.waiting_next:
            try:
                req = conn.parser.next_request()
            except HttpError as exc:
                self._send(conn, response_bytes(
                    exc.status, _error_body("InvalidRequest", str(exc)), close=True
                ))  # fmt: skip
                self._close(conn)
                return
            if req is None:
                if conn.parser.expects_continue:
                    conn.parser.expects_continue = False
                    length = conn.parser.declared_length()
                    if length is not None and length > conn.parser.body_cap:
                        # Do not make it send what will be refused; the body is not coming.
                        self._refuse_too_large(conn, length)
                        return
                    self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            self._route(conn, req)

    def _refuse_too_large(self, conn: _Conn, length: int) -> None:
        """413 before the body (``Expect: 100-continue``). A client that sends the body anyway
        has it read and dropped before the close, so that it reads the 413 rather than a
        reset."""
        target = conn.parser.current.target if conn.parser.current else ""
        if not self._send(conn, _too_large_response(close=True)):
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.draining = max(1, length - len(conn.parser.buf))
        conn.parser = RequestParser()
        m = _PATH_INVOCATION.match(target)
        if m and self.event is not None and m.group(1) == self.event.request_id:
            self._answer(Answer(error=_too_large_error(length)))

    # -- routes ----------------------------------------------------------------------------

    def _reply(self, conn: _Conn, req: Request, status: int, body: bytes) -> None:
        sent = self._send(conn, response_bytes(status, body, close=not req.keep_alive))
        if sent and not req.keep_alive:
            self._close(conn)

    def _route(self, conn: _Conn, req: Request) -> None:
        path = req.target.split("?", 1)[0]
        if path == _NEXT:
            if req.method != "GET":
                return self._reply(conn, req, 405, _error_body("MethodNotAllowed", "use GET"))
            return self._next(conn, req)
        if path == _INIT_ERROR:
            if req.method != "POST":
                return self._reply(conn, req, 405, _error_body("MethodNotAllowed", "use POST"))
            if self.initialized or self.init_outcome is not None:
                return self._reply(conn, req, 403, _error_body(
                    "InvalidStateTransition", "init/error after init has finished"
                ))  # fmt: skip
            self._reply(conn, req, 202, _ACCEPTED)
            self.init_outcome = InitOutcome(error=runtime_error(req, "Runtime.InitError"))
            return None
        m = _PATH_INVOCATION.match(path)
        if m is None:
            return self._reply(conn, req, 404, _error_body("NotFound", f"no such path {path!r}"))
        if req.method != "POST":
            return self._reply(conn, req, 405, _error_body("MethodNotAllowed", "use POST"))
        request_id, kind = m.groups()
        event = self.event
        if event is None or request_id != event.request_id:
            if request_id in self.finished:
                return self._reply(conn, req, 403, _error_body(
                    "InvalidStateTransition",
                    f"invocation {request_id} has already been answered",
                ))  # fmt: skip
            return self._reply(conn, req, 400, _error_body(
                "InvalidRequestID", f"{request_id!r} is not the invocation in progress"
            ))  # fmt: skip
        duration_us = (time.monotonic_ns() - self.handed_at) / 1000
        if req.too_large:
            self._send(conn, _too_large_response(close=not req.keep_alive))
            if not req.keep_alive:
                self._close(conn)
            too_large = _too_large_error(req.body_size)
            return self._answer(Answer(error=too_large, duration_us=duration_us))
        self._reply(conn, req, 202, _ACCEPTED)
        if kind == "response":
            return self._answer(Answer(result=req.body, duration_us=duration_us))
        return self._answer(Answer(error=runtime_error(req, "Unhandled"), duration_us=duration_us))

    def _answer(self, answer: Answer) -> None:
        if self.answer is None and self.event is not None:
            self.answer = answer
            self.finished[self.event.request_id] = None
            self.event = None

    def _next(self, conn: _Conn, req: Request) -> None:
        if self.event is not None:
            return self._reply(conn, req, 403, _error_body(
                "InvalidStateTransition",
                f"next called before invocation {self.event.request_id} was answered",
            ))  # fmt: skip
        conn.waiting_next = True
        conn.close_after_next = not req.keep_alive
        if not self.initialized and self.init_outcome is None:
            self.init_outcome = InitOutcome(ready=True)
        if self.pending is not None:
            self._hand_out(conn)

    def _hand_out(self, conn: _Conn) -> None:
        event = self.pending
        assert event is not None
        headers = {
            "Lambda-Runtime-Aws-Request-Id": event.request_id,
            "Lambda-Runtime-Deadline-Ms": str(event.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": event.function_arn,
            "Lambda-Runtime-Trace-Id": event.trace_id,
        }
        if event.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = event.client_context
        if event.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = event.cognito_identity
        close = conn.close_after_next
        conn.waiting_next = False
        self.pending = None
        self.event = event
        self.handed_at = time.monotonic_ns()
        if not self._send(conn, response_bytes(200, event.payload, headers, close=close)):
            # The runtime hung up on its own ``next``: it gets the event again when it asks.
            self.event, self.pending = None, event
            return
        if close:
            self._close(conn)
        else:
            self._process(conn)  # requests it pipelined behind ``next``


def _too_large_response(close: bool) -> bytes:
    return response_bytes(413, _error_body(
        "RequestEntityTooLarge",
        f"Exceeded maximum allowed payload size ({MAX_RESPONSE} bytes).",
    ), close=close)  # fmt: skip


def _too_large_error(size: int) -> dict[str, Any]:
    return {
        "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed "
        f"payload size ({MAX_RESPONSE} bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
        "stackTrace": [],
    }


def runtime_error(req: Request, default_type: str) -> dict[str, Any]:
    """Lambda's error object from an ``error`` post: the JSON body if it is one (with the
    ``Lambda-Runtime-Function-Error-Type`` header as the type when the body has none), else
    the header alone. Bounded: the body is at most the parser's cap."""
    header_type = req.headers.get("lambda-runtime-function-error-type", "")[:256]
    error: dict[str, Any] = {}
    try:
        parsed = json.loads(req.body[:MAX_ERROR_BODY]) if req.body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        error = {k: v for k, v in parsed.items() if k in ("errorMessage", "errorType")}
        for key in ("stackTrace", "trace"):
            trace = parsed.get(key)
            if isinstance(trace, list):
                error[key] = [str(t) for t in trace[:256]]
            elif isinstance(trace, str):
                error[key] = trace.splitlines()[:256]
        if not isinstance(error.get("errorMessage"), str):
            error["errorMessage"] = str(error.get("errorMessage", ""))
        if not isinstance(error.get("errorType"), str) or not error["errorType"]:
            error["errorType"] = header_type or default_type
    else:
        error = {"errorMessage": "", "errorType": header_type or default_type}
        if req.body and parsed is None:
            error["errorMessage"] = req.body[:MAX_ERROR_BODY].decode("utf-8", "replace")
    error.setdefault("stackTrace", error.get("trace", []))
    return error
