"""The client-facing side: a thin asyncio protocol that feeds :mod:`lambdad.protocol`.

Like uvicorn's h11 implementation: ``data_received`` hands the bytes to the sans-IO connection
and dispatches whatever events come out. Each request runs as its own task, so a connection can
have many requests in flight; responses go out in completion order with their ids.

Backpressure: a client that does not read its responses gets its reading paused, so a slow or
malicious client cannot make the daemon buffer without bound.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import TYPE_CHECKING, Any, cast

from lambdad.errors import LambdadError, ServiceError
from lambdad.protocol import (
    BadRequest,
    Connection,
    ErrorResponse,
    RemoteProtocolError,
    Request,
    Response,
    Role,
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
        self._discarding = False
        self.tasks: set[asyncio.Future[None]] = set()  # strong references: see asyncio docs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from lambdad.daemon import peer_credentials

        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.peer = peer_credentials(sock)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        if self._discarding:
            self._close()
            return False
        self.conn.receive_data(b"")
        self._process()
        # Keep our side open until in-flight responses are written (half-close).
        return self.in_flight > 0

    def connection_lost(self, exc: Exception | None) -> None:
        # In-flight invocations run to completion (a sandbox must not be left mid-call);
        # their responses are dropped.
        self._closing = True

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self._closing:
            return
        should_pause = self._write_paused or self.in_flight >= MAX_IN_FLIGHT
        if should_pause and not self._paused_reading:
            self.transport.pause_reading()
            self._paused_reading = True
        elif not should_pause and self._paused_reading:
            self._paused_reading = False
            self.transport.resume_reading()
            self._process()

    def _process(self) -> None:
        while not self._closing and not self._paused_reading:
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
            if self.conn.state.value == "closed" and self.in_flight == 0:
                self._close()
            else:
                self._update_reading()

    def _write(self, event: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(self.conn.send(event))

    def _linger_close(self) -> None:
        """Close after a fatal error without losing the error frame.

        Closing a Unix socket that still has unread input resets the connection and the peer
        never sees our last frame; so: send EOF, swallow whatever still arrives, and close at
        the peer's EOF or after LINGER_S.
        """
        self._discarding = True
        if self.transport is None:
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_S, self._close)

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()
