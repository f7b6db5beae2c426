"""The client-facing side: a thin asyncio protocol that feeds :mod:`lambdad.protocol`.

Like uvicorn's h11 implementation: ``data_received`` hands the bytes to the sans-IO connection
and dispatches whatever events come out. Each request runs as its own task, so a connection can
have many requests in flight; responses go out in completion order with their ids.

Backpressure: a client that does not read its responses gets its reading paused, so a slow or
malicious client cannot make the daemon buffer without bound.

Closing (docs/protocol.md, "Closing"): at the client's EOF, the requests already read are
answered, then the daemon closes. After a fatal error (bytes that are not msgpack, a frame over
the limit, no hello in time) the daemon sends the error frame at once, reads no further
requests, still answers every request it had read before, then half-closes and discards input
until the client's EOF or LINGER_S.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import TYPE_CHECKING, Any, cast

from lambdad.errors import LambdadError, ProtocolError, ServiceError
from lambdad.protocol import (
    BadRequest,
    Connection,
    ErrorResponse,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    State,
    _Sentinel,
)

if TYPE_CHECKING:
    from lambdad.daemon import Daemon, Peer

MAX_IN_FLIGHT = 1024  # requests per connection before reading pauses
LINGER_S = 2.0  # after a fatal protocol error: how long to swallow input before closing


class ClientProtocol(asyncio.Protocol):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.conn = Connection(Role.SERVER, daemon.config.max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.in_flight = 0
        self._paused_reading = False
        self._write_paused = False
        self._closing = False
        self._discarding = False  # a fatal error was sent: input is read and thrown away
        self._peer_eof = False
        self._eof_sent = False
        self._hello_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Future[None]] = set()  # strong references: see asyncio docs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from lambdad.daemon import peer_credentials

        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.peer = peer_credentials(sock)
        timeout = self.daemon.config.hello_timeout_s
        if timeout > 0:
            self._hello_timer = asyncio.get_running_loop().call_later(timeout, self._no_hello)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self._peer_eof = True
        if self._discarding:
            if self._eof_sent:  # nothing left to answer
                self._close()
                return False
            return True  # _linger_close finishes once the requests in flight are answered
        self.conn.receive_data(b"")
        self._process()
        # Keep our side open until in-flight responses are written (half-close).
        return self.in_flight > 0

    def connection_lost(self, exc: Exception | None) -> None:
        # In-flight invocations run to completion (a sandbox must not be left mid-call);
        # their responses are dropped.
        self._closing = True
        for timer in (self._hello_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self._closing:
            return
        # Discarded input needs no room: keep reading it, or closing would reset the
        # connection (unread input) and lose the answers still to come.
        should_pause = not self._discarding and (
            self._write_paused or self.in_flight >= MAX_IN_FLIGHT
        )
        if should_pause and not self._paused_reading:
            self.transport.pause_reading()
            self._paused_reading = True
        elif not should_pause and self._paused_reading:
            self._paused_reading = False
            self.transport.resume_reading()
            self._process()

    def _process(self) -> None:
        while not self._closing and not self._paused_reading and not self._discarding:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                self._write(ErrorResponse.of(None, exc.error))
                self._linger_close()
                return
            if isinstance(event, _Sentinel):
                if event.value == "CLOSED" and self.in_flight == 0:
                    self._close()
                return
            if isinstance(event, BadRequest):
                self._write(ErrorResponse.of(event.id, event.error))
            elif isinstance(event, Request):
                if self._hello_timer is not None and self.conn.state is State.READY:
                    self._hello_timer.cancel()
                    self._hello_timer = None
                self.in_flight += 1
                task = asyncio.ensure_future(self._handle(event))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                self._update_reading()

    async def _handle(self, request: Request) -> None:
        try:
            body = await self.daemon.dispatch(request.op, dict(request.args), self.peer)
            self._write(Response(request.id, body))
        except LambdadError as exc:
            self._write(ErrorResponse.of(request.id, exc))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self._write(ErrorResponse.of(request.id, ServiceError(f"internal error: {exc!r}")))
        finally:
            self.in_flight -= 1
            if self._discarding:
                if self.in_flight == 0:
                    self._linger_close()
            elif self.conn.state is State.CLOSED and self.in_flight == 0:
                self._close()
            else:
                self._update_reading()

    def _write(self, event: Any) -> None:
        if self.transport is None or self.transport.is_closing() or self._eof_sent:
            return
        self.transport.write(self.conn.send(event))

    def _no_hello(self) -> None:
        """The hello timer fired: a connection that never said hello is closed (fatal)."""
        self._hello_timer = None
        if self._closing or self._discarding or self.conn.state is not State.AWAIT_HELLO:
            return
        timeout = self.daemon.config.hello_timeout_s
        error = ProtocolError(f"no hello within {timeout:g} s", fatal=True)
        self._write(ErrorResponse.of(None, error))
        self._linger_close()

    def _linger_close(self) -> None:
        """Close after a fatal error without losing a frame.

        Requests read before the fatal bytes still run, and each gets its answer; only then
        does the daemon send EOF. Closing a Unix socket that still has unread input resets
        the connection and the peer never sees our last frames; so: swallow whatever still
        arrives, and close at the peer's EOF or LINGER_S after ours.
        """
        if not self._discarding:
            self._discarding = True
            if self._hello_timer is not None:
                self._hello_timer.cancel()
                self._hello_timer = None
            self._update_reading()  # discarded input is read even if reading was paused
        if self.transport is None or self._closing or self.in_flight > 0 or self._eof_sent:
            return
        if self._peer_eof:  # everything it sent has been read: closing cannot reset
            self._close()
            return
        self._eof_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_S, self._close)

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()
