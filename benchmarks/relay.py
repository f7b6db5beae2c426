"""The floor for this design: a raw msgpack echo behind a trivial relay, two Unix-socket hops.

lambdad's warm path is client -> daemon -> sandbox and back. The baseline replaces the daemon by
a relay that only forwards bytes and the sandbox by an echo that only parses each frame and
answers it with a canned body — the body of a real no-op invoke response, captured from the
daemon in the same run, so the client decodes exactly the same bytes. Both servers run on the
same event loop as the daemon (uvloop), each in its own process::

    python -m benchmarks.relay echo  --listen ECHO.sock --body BODY.msgpack
    python -m benchmarks.relay relay --listen RELAY.sock --upstream ECHO.sock

Clients speak the lambdad protocol to the relay (``hello`` first, then any request); the same
:class:`lambdad.client.Client` and load generator drive both, so the ratio is like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import msgpack

from lambdad import loops

HELLO_BODY = msgpack.packb({"version": 1, "server": "benchmarks.relay echo"}, use_bin_type=True)


class EchoProtocol(asyncio.Protocol):
    """Parse each request frame; answer ``{"id": id, "ok": <canned body>}``."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.unpacker.feed(data)
        out = []
        for frame in self.unpacker:
            body = HELLO_BODY if frame.get("op") == "hello" else self.body
            # A two-entry map written by hand: {"id": <id>, "ok": <body>}.
            out.append(b"\x82\xa2id" + msgpack.packb(frame.get("id")) + b"\xa2ok" + body)
        self.transport.write(b"".join(out))


class _Upstream(asyncio.Protocol):
    def __init__(self, downstream: asyncio.Transport) -> None:
        self.downstream = downstream

    def data_received(self, data: bytes) -> None:
        self.downstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.downstream.close()


class RelayProtocol(asyncio.Protocol):
    """Forward bytes to a fresh upstream connection and back, untouched."""

    def __init__(self, upstream_path: str) -> None:
        self.upstream_path = upstream_path
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        downstream = self.transport
        upstream, _ = await loop.create_unix_connection(
            lambda: _Upstream(downstream), self.upstream_path
        )
        self.upstream = upstream
        if self.pending:
            self.upstream.write(b"".join(self.pending))
            self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def _serve(kind: str, listen: str, upstream: str | None, body: bytes) -> None:
    loop = asyncio.get_running_loop()
    if os.path.exists(listen):
        os.unlink(listen)
    if kind == "echo":
        server = await loop.create_unix_server(lambda: EchoProtocol(body), listen, backlog=4096)
    else:
        assert upstream is not None
        server = await loop.create_unix_server(
            lambda: RelayProtocol(upstream), listen, backlog=4096
        )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay")
    parser.add_argument("kind", choices=("echo", "relay"))
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", help="relay: the echo's socket")
    parser.add_argument("--body", help="echo: a file holding the msgpack body to answer with")
    args = parser.parse_args(argv)
    body = Path(args.body).read_bytes() if args.body else msgpack.packb({}, use_bin_type=True)
    try:
        loops.run(_serve(args.kind, args.listen, args.upstream, body))
    except KeyboardInterrupt:
        pass


class EchoRelay:
    """Start the echo and the relay (two processes); ``path`` is the relay's socket.

    Args:
        work_dir: where the sockets go.
        body: the response body (a dict) the echo answers every request with.
    """

    def __init__(self, work_dir: Path, body: dict[str, Any]) -> None:
        self.dir = work_dir / "relay"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.echo_path = str(self.dir / "echo.sock")
        self.path = str(self.dir / "relay.sock")
        self.body_path = self.dir / "body.msgpack"
        self.body_path.write_bytes(msgpack.packb(body, use_bin_type=True))
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> EchoRelay:
        me = [sys.executable, "-m", "benchmarks.relay"]
        self.procs.append(
            subprocess.Popen(
                [*me, "echo", "--listen", self.echo_path, "--body", str(self.body_path)]
            )
        )
        _wait_listening(self.echo_path)
        self.procs.append(
            subprocess.Popen([*me, "relay", "--listen", self.path, "--upstream", self.echo_path])
        )
        _wait_listening(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_listening(path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} is not listening after {timeout:.0f} s") from None
            time.sleep(0.02)
        finally:
            probe.close()


if __name__ == "__main__":
    main()
