"""``python -m benchmarks.http_parsers``: h11 vs httptools on one keep-alive connection.

The measurement behind the choice of parser in ``lambdad/frontends/http.py``. A uvloop server
in a child process answers a botocore-sized signed POST with a 2-byte body; the parent sends
the same request N times over one connection and reports round-trip p50/p99, then the cost of
parsing the request and building the response with no I/O at all.

h11 is not a lambdad dependency: ``.venv/bin/pip install h11`` first.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
import time
from typing import Any

REQUEST = (
    b"POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/lambda/aws4_request, "
    b"SignedHeaders=host;x-amz-date, Signature=" + b"a" * 64 + b"\r\n"
    b"X-Amz-Date: 20261201T000000Z\r\nContent-Type: application/json\r\n"
    b"User-Agent: Boto3/1.44 md/Botocore#1.44\r\nContent-Length: 2\r\n\r\n{}"
)
RESPONSE_END = b"\r\n\r\n{}"


def _h11_protocol() -> type[asyncio.Protocol]:
    import h11

    class H11(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.conn = h11.Connection(h11.SERVER)

        def data_received(self, data: bytes) -> None:
            self.conn.receive_data(data)
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.EndOfMessage):
                    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
                    out = self.conn.send(h11.Response(status_code=200, headers=headers))
                    out += self.conn.send(h11.Data(data=b"{}")) + self.conn.send(h11.EndOfMessage())
                    self.transport.write(out)
                    self.conn.start_next_cycle()

    return H11


def _httptools_protocol() -> type[asyncio.Protocol]:
    import httptools

    class HttpTools(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.headers: list[tuple[bytes, bytes]] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_message_complete(self) -> None:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2"
                + RESPONSE_END
            )
            self.headers = []

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

    return HttpTools


PROTOCOLS = {"h11": _h11_protocol, "httptools": _httptools_protocol}


def _serve(kind: str, ports: Any) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(PROTOCOLS[kind](), "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    uvloop.run(main())


def round_trips(kind: str, n: int) -> tuple[float, float]:
    ports: Any = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(kind, ports))
    proc.start()
    try:
        port = ports.get(timeout=30)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for _ in range(n):
            start = time.perf_counter_ns()
            sock.sendall(REQUEST)
            buf = b""
            while not buf.endswith(RESPONSE_END):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                buf += data
            samples.append(time.perf_counter_ns() - start)
        sock.close()
    finally:
        proc.terminate()
        proc.join()
    samples = sorted(samples[n // 10 :])  # drop the warm-up
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def parse_only(kind: str, n: int) -> float:
    start = time.perf_counter()
    if kind == "h11":
        import h11

        for _ in range(n):
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(REQUEST)
            while not isinstance(conn.next_event(), h11.EndOfMessage):
                pass
            conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"2")]))
            conn.send(h11.Data(data=b"{}"))
            conn.send(h11.EndOfMessage())
    else:
        import httptools

        class Sink:
            def on_header(self, name: bytes, value: bytes) -> None:
                pass

        for _ in range(n):
            httptools.HttpRequestParser(Sink()).feed_data(REQUEST)
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    for kind in PROTOCOLS:
        try:
            p50, p99 = round_trips(kind, n)
        except ImportError as exc:
            print(f"{kind:10s} skipped: {exc}")
            continue
        print(
            f"{kind:10s} round trip p50 {p50:6.1f} us  p99 {p99:7.1f} us   "
            f"parse+respond only {parse_only(kind, 20000):5.1f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
