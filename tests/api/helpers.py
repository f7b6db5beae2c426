"""An :class:`HttpServer` on a loopback port, its loop in a thread, for tests with real sockets."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lambdad.frontends.http import App, HttpServer


class Served:
    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        host, _, port = server.address.rpartition(":")
        self.host = host
        self.port = int(port)
        self.sockets: list[socket.socket] = []
        self.clients: list[http.client.HTTPConnection] = []

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def http(self) -> http.client.HTTPConnection:
        """An http.client connection; closed when the server is stopped."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self.clients.append(conn)
        return conn

    def connect(self) -> socket.socket:
        """A raw client socket; closed when the server is stopped."""
        sock = socket.create_connection((self.host, self.port), timeout=10)
        self.sockets.append(sock)
        return sock


@contextmanager
def serve(app: App, **kwargs: Any) -> Iterator[Served]:
    """Start an HttpServer for ``app`` on 127.0.0.1 (a free port); stop it afterwards."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        server = HttpServer(app, **kwargs)
        await server.start("127.0.0.1", 0)
        box["server"] = server

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            box["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "server did not start"
    if "error" in box:
        raise box["error"]
    served = Served(box["server"], loop)
    try:
        yield served
    finally:
        for sock in served.sockets:
            sock.close()
        for conn in served.clients:
            conn.close()
        served.call(served.server.close(grace_s=2.0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the peer sends until it closes (raises TimeoutError past ``timeout``)."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"peer did not close within {timeout} s; got {b''.join(chunks)!r}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_responses(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    """Read ``count`` complete responses (each with a Content-Length) from ``sock``."""
    deadline = time.monotonic() + timeout
    buf = b""
    out: list[bytes] = []
    while len(out) < count:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            total = head_end + 4 + length
            if len(buf) >= total:
                out.append(buf[:total])
                buf = buf[total:]
                continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(out)} of {count} responses; buffer {buf!r}")
        sock.settimeout(remaining)
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed after {len(out)} of {count} responses; {buf!r}")
        buf += data
    return out
