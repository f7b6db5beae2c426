"""``python -m benchmarks.http_api``: what each layer of the Lambda API front costs per request.

One keep-alive connection sends the same botocore-signed ``Invoke`` request N times (a
signature stays valid for 5 minutes) to a uvloop server in a child process running:

* ``HttpServer`` with a trivial application (the HTTP machinery alone);
* ``LambdaApi`` without authentication (+ routing and the error machinery);
* ``LambdaApi`` with SigV4 against a real key store (+ signature verification).

The handler echoes the payload; no function runs. This is a development measurement, not the
issue's ``http`` benchmark scenario (which compares against the msgpack path and
serverless-offline in the same run).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
import tempfile
import time
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lambdad.frontends.http import HttpServer, Request, Response
from lambdad.frontends.lambda_api_routes import Call, LambdaApi, http_error, sigv4_authenticator
from lambdad.keys import KeyStore

PATH = "/2015-03-31/functions/hello/invocations"


async def _trivial(request: Request) -> Response:
    return Response(200, (("x-amz-executed-version", "$LATEST"),), request.body)


async def _invoke(call: Call) -> Response:
    return Response(200, (("x-amz-executed-version", "$LATEST"),), call.request.body)


def _serve(kind: str, state_dir: str, ports: Any) -> None:
    import uvloop

    app: Any = _trivial
    if kind == "api":
        app = LambdaApi({"Invoke": _invoke})
    elif kind == "api+sigv4":
        app = LambdaApi({"Invoke": _invoke}, authenticate=sigv4_authenticator(KeyStore(state_dir)))

    async def main() -> None:
        server = HttpServer(app, error_response=http_error)
        ports.put(await server.start("127.0.0.1", 0))
        await asyncio.Event().wait()

    uvloop.run(main())


def measure(kind: str, n: int) -> tuple[float, float]:
    state_dir = tempfile.mkdtemp(prefix="lambdad-bench-")
    key = KeyStore(state_dir).create(admin=True)
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(kind, state_dir, ports))
    proc.start()
    try:
        port = int(ports.get(timeout=30).rpartition(":")[2])
        request = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}{PATH}", data=b"{}")
        creds = Credentials(key.key.access_key_id, key.secret_access_key)
        SigV4Auth(creds, "lambda", "us-east-1").add_auth(request)
        prepared = request.prepare()
        head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in prepared.headers.items()
        )
        raw = (head + "\r\n").encode() + b"{}"
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for _ in range(n):
            start = time.perf_counter_ns()
            sock.sendall(raw)
            buf = b""
            while not buf.endswith(b"\r\n\r\n{}"):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"closed by the server: {buf!r}")
                buf += data
            if not buf.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {buf!r}")
            samples.append(time.perf_counter_ns() - start)
        sock.close()
    finally:
        proc.terminate()
        proc.join()
    samples = sorted(samples[n // 10 :])
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    for kind, label in [
        ("trivial", "HttpServer + trivial app"),
        ("api", "+ LambdaApi routing, no auth"),
        ("api+sigv4", "+ SigV4 verification"),
    ]:
        p50, p99 = measure(kind, n)
        print(f"{label:32s} p50 {p50:6.1f} us  p99 {p99:7.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
