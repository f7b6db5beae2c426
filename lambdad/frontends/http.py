"""HTTP/1.1 on the daemon's own loop: the machinery under every HTTP front.

One asyncio protocol per connection feeds bytes to **httptools** (llhttp, the parser behind
Node.js and uvicorn) and hands each complete request to an application::

    async def app(request: Request) -> Response: ...

    server = HttpServer(app, limits=Limits(max_body_bytes=6 * 2**20))
    await server.start("127.0.0.1", 9001)

The Lambda API, the HTTP gateway and the metrics endpoint are such applications; this module
knows nothing about any of them.

Why httptools and not h11 — measured on this machine with ``python -m benchmarks.http_parsers``
(uvloop server in a child process, one keep-alive connection, a botocore-sized signed POST
answered with a 2-byte JSON body; 2 cores shared with other test runs, so p99s are noisy):

=============  ====================================  ==========================
parser         round trip p50 (p99)                   parse + respond, no I/O
=============  ====================================  ==========================
h11 0.16       149-176 µs (229-350 µs)                88-112 µs per request
httptools 0.9  27-33 µs (54-177 µs)                   2-3 µs per request
=============  ====================================  ==========================

h11 is the nicer API, but its pure-Python state machine alone costs about the whole budget of
a warm invocation (the msgpack path answers in ~100 µs; the issue allows HTTP 1.5 times that).
httptools is a thin binding over llhttp (Node.js's parser), maintained with uvicorn, and
parses in C; what it does not do — size limits, deadlines, pipelining order, error answers —
this module does.

What this layer guarantees, whatever the application:

* **Keep-alive and pipelining.** Requests on a connection are answered one at a time, in the
  order they arrived; bytes of the next request may arrive while one is being served. At most
  ``max_pipelined`` parsed requests wait; beyond that reading pauses (and it pauses while the
  peer does not read its responses), so no client makes the daemon buffer without bound.
* **Bounded input.** Request line + headers over ``max_head_bytes`` or ``max_headers`` → 431,
  a target over ``max_target_bytes`` → 414, a body over the limit → 413 (from Content-Length,
  before the body is read, or counted while a chunked body arrives). ``Expect: 100-continue``
  gets ``100 Continue`` only when the announced body fits.
* **Slowloris-safe time limits.** A request's head must arrive within ``header_timeout_s`` of
  its first byte and its body within ``body_timeout_s`` of the end of its head — absolute
  deadlines, so trickling bytes buys nothing → 408. An idle keep-alive connection (nothing
  received since the last response) is closed silently after ``keepalive_timeout_s``. One
  server-wide sweeper enforces them (a deadline fires at most a quarter of the shortest
  timeout late), so a request arms no timer of its own.
* **An answer to every request.** Malformed bytes get a 400 naming the parser's complaint, an
  application exception a 500; after an error that ends the connection the socket is
  half-closed and its input swallowed for ``LINGER_S``, so the peer reads the answer instead
  of a reset. Only a peer that vanishes gets nothing.
* **Many connections**: ``max_connections`` open at once; one more is answered 503 and closed.

The time an application spends is not bounded here: that is the application's business (an
invocation has its function's timeout). If the peer disconnects meanwhile, the application
still runs to completion and its response is dropped: a sandbox is never abandoned mid-call.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import math
import sys
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, cast

import httptools

LINGER_S: Final = 2.0  # after an error that ends a connection: how long to swallow input
HOP_BY_HOP: Final = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


@dataclass(frozen=True, slots=True)
class Request:
    """One complete HTTP request, as received.

    ``path`` and ``query`` are exactly the bytes of the request target (still percent-encoded,
    decoded as latin-1): signature verification needs them untouched. Header names are
    lower-case; order and repeated headers are kept.
    """

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    http_version: str = "1.1"
    peer: Any = None  # the socket's peer address, as the transport reports it

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name`` (lower-case); repeated headers joined with ``,``."""
        values = [v for k, v in self.headers if k == name]
        if not values:
            return default
        return values[0] if len(values) == 1 else ",".join(values)


@dataclass(frozen=True, slots=True)
class Response:
    """What an application answers. The server adds Content-Length, Date and Connection."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def text(cls, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return cls(
            status,
            (("content-type", "text/plain; charset=utf-8"), *headers),
            text.encode(),
        )


App = Callable[[Request], Awaitable[Response]]
ErrorRenderer = Callable[[int, str], Response]
BodyLimit = Callable[[str, str], int]


@dataclass(frozen=True)
class Limits:
    """Every bound the server enforces; one instance per server."""

    max_head_bytes: int = 16 * 1024  # request line + headers of one request
    max_target_bytes: int = 8 * 1024  # the request target (path + query)
    max_headers: int = 100  # header fields in one request
    max_body_bytes: int = 6 * 1024 * 1024  # unless ``body_limit`` says otherwise per request
    header_timeout_s: float = 10.0  # first byte of a request -> end of its head
    body_timeout_s: float = 60.0  # end of the head -> end of the body
    keepalive_timeout_s: float = 60.0  # idle connection (between requests) -> closed
    max_connections: int = 10_000  # open at once; the next one gets 503
    max_pipelined: int = 16  # parsed requests waiting on one connection before reading pauses


def plain_error(status: int, message: str) -> Response:
    """The default rendering of the server's own refusals: a one-line text body."""
    return Response.text(status, message + "\n")


class _Refuse(Exception):
    """Raised inside a parser callback: answer ``status`` and end the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class _Failure:
    """Queued in request order: the answer to a request that cannot be served."""

    status: int
    message: str


_REASONS: Final = {s.value: s.phrase for s in http.HTTPStatus}
_date_cache: list[Any] = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True).encode()
    return cast(bytes, _date_cache[1])


def _encode_head(status: int, headers: tuple[tuple[str, str], ...], length: int | None,
                 close: bool) -> bytes:  # fmt: skip
    """Serialise a response head. Raises ValueError on a header that would split the head."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}".encode("latin-1")]
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower == "date":
            continue
        if not name or any(c in name for c in "\r\n: ") or "\r" in value or "\n" in value:
            raise ValueError(f"invalid response header {name!r}: {value!r}")
        lines.append(f"{name}: {value}".encode("latin-1"))
    lines.append(b"date: " + _date_header())
    if length is not None:
        lines.append(b"content-length: %d" % length)
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


class HttpServer:
    """Listens on one TCP address and serves ``app`` with :class:`HttpProtocol`.

    Args:
        app: the application coroutine.
        limits: the bounds (defaults: :class:`Limits`).
        error_response: renders the server's own refusals (400, 408, 413, 414, 431, 500, 503);
            a front gives its clients errors in their own dialect (the Lambda API's JSON).
        body_limit: ``(method, path) -> bytes``, the body limit of one request when it is not
            ``limits.max_body_bytes`` (the Lambda API takes bigger zips than invocations).
    """

    def __init__(
        self,
        app: App,
        *,
        limits: Limits | None = None,
        error_response: ErrorRenderer = plain_error,
        body_limit: BodyLimit | None = None,
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.error_response = error_response
        self.body_limit = body_limit
        self.connections: set[HttpProtocol] = set()
        self.server: asyncio.AbstractServer | None = None
        self.address = ""
        self._all_closed: asyncio.Future[None] | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._tick = 1.0

    async def start(self, host: str, port: int) -> str:
        """Listen on ``host:port`` (port 0 picks a free one); returns ``"host:port"`` bound."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: HttpProtocol(self), host, port)
        bound = self.server.sockets[0].getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        limits = self.limits
        shortest = min(limits.header_timeout_s, limits.body_timeout_s, limits.keepalive_timeout_s)
        self._tick = min(1.0, shortest / 4)
        self._sweeper = loop.call_later(self._tick, self._sweep)
        return self.address

    def _sweep(self) -> None:
        """Enforce every connection's deadline; runs every ``_tick`` seconds.

        One timer for the whole server instead of a timer armed and cancelled per request
        and phase: a request costs two float assignments, and a deadline fires at most a
        tick late (a quarter of the shortest timeout, at most 1 s).
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            if conn.deadline <= now:
                conn.deadline = math.inf
                conn.on_deadline()
        self._sweeper = loop.call_later(self._tick, self._sweep)

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop listening; close idle connections now and busy ones after their response.

        Connections still busy after ``grace_s`` are aborted.
        """
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            self._all_closed = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._all_closed), grace_s)
            except TimeoutError:
                for conn in list(self.connections):
                    conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()

    def _forget(self, conn: HttpProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parser callbacks build requests; one task answers them."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request | _Failure] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None  # only for the linger after an error
        self.deadline = math.inf  # loop time; HttpServer._sweep calls on_deadline past it
        self.on_deadline: Callable[[], None] = self._idle_timeout
        # The message being parsed.
        self._in_message = False
        self._in_head = False
        self._head_pending = 0  # bytes fed while in a head (bounds httptools' own buffering)
        self._head_size = 0
        self._target = bytearray()
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_limit = 0
        # Connection state.
        self._stop_parsing = False  # no more requests are read (close after the queue)
        self._lingering = False
        self._closed = False
        self._paused_reading = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.peer = transport.get_extra_info("peername")
        if len(self.server.connections) >= self.limits.max_connections:
            self._stop_parsing = True
            self.queue.append(_Failure(503, "too many connections"))
            self._start_worker()
            return
        self.server.connections.add(self)
        self._expect(self.limits.keepalive_timeout_s, self._idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._stop_parsing:
            return  # lingering after an error, or closing after the last request: swallow
        if self._in_head or not self._in_message:
            self._head_pending += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parse_error(exc)
        else:
            if self._in_head and self._head_pending > self.limits.max_head_bytes:
                self._fail(431, f"request head larger than {self.limits.max_head_bytes} bytes")

    def _parse_error(self, exc: Exception) -> None:
        if self._stop_parsing:
            # The last request said "Connection: close": llhttp refuses what follows it, and
            # so do we, silently; the answer to that request is on its way.
            return
        if isinstance(exc, httptools.HttpParserUpgrade):
            # Upgrades (e.g. "h2c") are not offered: the request was served as plain
            # HTTP/1.1, and since llhttp stops there, the connection ends after it.
            self._stop_parsing = True
        elif isinstance(exc, httptools.HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self._fail(cause.status, cause.message)
            else:
                self._fail(400, f"malformed HTTP request: {cause or exc}")
        else:
            self._fail(400, f"malformed HTTP request: {exc}")

    def eof_received(self) -> bool | None:
        # A request cut short by the EOF can never complete: forget it.
        self._in_message = self._in_head = False
        self._stop_parsing = True
        if self._lingering or (not self.queue and self.worker is None):
            self._close()
            return False
        self._cancel_timer()
        return True  # half-closed by the peer: answer what was received, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._stop_parsing = True
        self._cancel_timer()
        self.server._forget(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._update_reading()

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._head_size = 0
        self._target.clear()
        self._raw_headers = []
        self._body = []
        self._body_size = 0
        self._expect(self.limits.header_timeout_s, self._header_timeout)

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > self.limits.max_target_bytes:
            raise _Refuse(414, f"request target longer than {self.limits.max_target_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size + len(self._target) > self.limits.max_head_bytes:
            raise _Refuse(431, f"request head larger than {self.limits.max_head_bytes} bytes")
        raw = self._raw_headers
        if len(raw) >= self.limits.max_headers:
            raise _Refuse(431, f"more than {self.limits.max_headers} header fields")
        raw.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_pending = 0
        self._headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in self._raw_headers
        ]
        method = self.parser.get_method().decode("latin-1")
        limit = self.limits.max_body_bytes
        if self.server.body_limit is not None:
            limit = self.server.body_limit(method, self._target_path())
        self._body_limit = limit
        for name, value in self._headers:
            if name == "content-length" and int(value) > limit:  # llhttp checked the digits
                raise _Refuse(413, f"request body larger than {limit} bytes")
        self._expect(self.limits.body_timeout_s, self._body_timeout)
        expect = [v for k, v in self._headers if k == "expect"]
        if expect:
            if [v.lower() for v in expect] != ["100-continue"]:
                raise _Refuse(417, f"cannot meet expectation {', '.join(expect)!r}")
            # Only when no earlier pipelined request still awaits its answer: an interim
            # response must not overtake it. Otherwise the client sends the body after its
            # own short wait, as RFC 9110 lets it.
            idle = not self.queue and self.worker is None
            if idle and self.parser.get_http_version() == "1.1" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._body_limit:
            raise _Refuse(413, f"request body larger than {self._body_limit} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._cancel_timer()
        url = httptools.parse_url(bytes(self._target))
        request = Request(
            method=self.parser.get_method().decode("latin-1"),
            path=(url.path or b"/").decode("latin-1"),
            query=(url.query or b"").decode("latin-1"),
            headers=tuple(self._headers),
            body=b"".join(self._body),
            http_version=self.parser.get_http_version(),
            peer=self.peer,
        )
        self._body = []
        if not self.parser.should_keep_alive():
            self._stop_parsing = True
        self.queue.append(request)
        self._start_worker()
        self._update_reading()

    # -- answering -----------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self.worker is None:
            self.worker = self.loop.create_task(self._work())

    async def _work(self) -> None:
        try:
            while self.queue:
                item = self.queue.popleft()
                self._update_reading()
                if isinstance(item, _Failure):
                    self._write_response(self.server.error_response(item.status, item.message),
                                         close=True, head_only=False)  # fmt: skip
                    self._linger_close()
                    return
                try:
                    response = await self.server.app(item)
                except Exception as exc:
                    traceback.print_exc(file=sys.stderr)
                    response = self.server.error_response(500, f"internal error: {exc!r}")
                close = self._stop_parsing and not self.queue and not self._in_message
                self._write_response(response, close=close, head_only=item.method == "HEAD")
                if close:
                    self._close()
                    return
                if self._write_paused and not self._closed:
                    self._drained = self.loop.create_future()
                    await self._drained
                    self._drained = None
        finally:
            self.worker = None
        if self._closed:
            return
        if self._stop_parsing and not self._in_message:
            self._close()
        elif not self._in_message:
            self._expect(self.limits.keepalive_timeout_s, self._idle_timeout)

    def _write_response(self, response: Response, *, close: bool, head_only: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        status = response.status
        body = response.body
        no_body = status < 200 or status in (204, 304)
        try:
            head = _encode_head(status, response.headers, None if no_body else len(body), close)
        except ValueError as exc:
            traceback.print_exc(file=sys.stderr)
            fallback = self.server.error_response(500, f"internal error: {exc}")
            body = fallback.body
            head = _encode_head(fallback.status, fallback.headers, len(body), close)
        if no_body or head_only:
            self.transport.write(head)
        else:
            self.transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                self.transport.write(body)

    # -- time limits ---------------------------------------------------------------------

    def _expect(self, delay: float, callback: Callable[[], None]) -> None:
        """The next thing must happen within ``delay`` seconds, or ``callback`` runs."""
        self.deadline = self.loop.time() + delay
        self.on_deadline = callback

    def _cancel_timer(self) -> None:
        self.deadline = math.inf
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _idle_timeout(self) -> None:
        if not self._in_message and not self.queue and self.worker is None:
            self._close()

    def _header_timeout(self) -> None:
        self._fail(408, f"request head not received within {self.limits.header_timeout_s:g} s")

    def _body_timeout(self) -> None:
        self._fail(408, f"request body not received within {self.limits.body_timeout_s:g} s")

    # -- ending ----------------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        """Answer ``status`` after the requests already queued, then end the connection."""
        if self._stop_parsing and self._lingering:
            return
        self._stop_parsing = True
        self._in_message = False
        self._cancel_timer()
        self.queue.append(_Failure(status, message))
        self._start_worker()

    def _update_reading(self) -> None:
        if self.transport is None or self._closed:
            return
        pause = self._write_paused or len(self.queue) >= self.limits.max_pipelined
        if pause and not self._paused_reading:
            self._paused_reading = True
            self.transport.pause_reading()
        elif not pause and self._paused_reading:
            self._paused_reading = False
            self.transport.resume_reading()

    def _linger_close(self) -> None:
        """Close without losing the answer just written.

        Closing a TCP socket with unread input sends a reset, and the peer may lose the
        response still in flight; so: half-close, swallow input, close at the peer's EOF or
        after LINGER_S.
        """
        self._lingering = True
        if self.transport is None or self.transport.is_closing():
            return
        if self._paused_reading:
            self._paused_reading = False
            self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.deadline = math.inf
        self.timer = self.loop.call_later(LINGER_S, self._close)

    def shutdown(self) -> None:
        """Server shutdown: close now if idle, else after the response being prepared."""
        self._stop_parsing = True
        if not self._in_message and not self.queue and self.worker is None:
            self._close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _target_path(self) -> str:
        target = bytes(self._target)
        end = min((i for i in (target.find(b"?"), target.find(b"#")) if i >= 0), default=-1)
        return (target if end < 0 else target[:end]).decode("latin-1")
