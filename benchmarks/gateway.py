"""The ``gateway`` scenario (issue 15 item 6): an HTTP request through lambdad's gateway
(``--gateway``, an ``http`` trigger, payload format 2.0, a warm sandbox running the no-op
handler) beside two peers in the same run, on the same body (``{}``, ``application/json``):

* **the floor**: a plain uvicorn + Starlette app (uvloop, httptools) answering the route
  itself, no function and no isolation — what any Python HTTP server costs here;
* **serverless-offline**'s ``httpApi`` emulation running the same handler
  (``benchmarks/functions/noop_http``) in its long-lived Python process.

Measured: warm latency (one client, one keep-alive connection, sequential GETs, interleaved
blocks so the shared machine's noise lands on all alike) and requests per second with
keep-alive (``RATE_CONNECTIONS`` connections, one request in flight on each, a fixed window,
driven by one ``selectors`` loop in this process — the same generator for all three, so a
generator bound would show as equal rates). Targets: gateway p50 <= 2x the floor's; >= 10x
faster than serverless-offline warm.

``python -m benchmarks --only gateway [--quick]``. The floor runs as
``python -m benchmarks.gateway --floor PORT`` in a child process.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import ROOT, BenchDaemon, Settings, summarize
from benchmarks.http_invoke import FUNCTION_DIR, ServerlessOffline, _timed_msgpack, free_port
from lambdad.testing import wait_for

PATH = "/bench"
BODY = b"{}"
BLOCK = 500
WARMUP = 200
RATE_CONNECTIONS = 8
START_S = 30.0
SERVERLESS_YML = """\
service: bench
frameworkVersion: "3"
provider:
  name: aws
  runtime: python3.11
  region: us-east-1
functions:
  noop:
    handler: app.handler
    events:
      - httpApi:
          method: GET
          path: /bench
plugins:
  - serverless-offline
"""


def request_bytes(port: int) -> bytes:
    return f"GET {PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()


def parse(buf: bytes | bytearray) -> tuple[int, dict[str, str], bytes, int] | None:
    """One HTTP/1.1 response at the start of ``buf``: (status, lower-case headers, body, bytes
    used), or None while incomplete. Content-Length and chunked bodies (the peers use both)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    pos = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:  # the last chunk; then trailers (if any) and an empty line
                if buf[eol + 2 : eol + 4] == b"\r\n":
                    return status, headers, bytes(body), eol + 4
                tail = buf.find(b"\r\n\r\n", eol + 2)
                return None if tail < 0 else (status, headers, bytes(body), tail + 4)
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
    length = int(headers.get("content-length", "0"))
    if len(buf) < pos + length:
        return None
    return status, headers, bytes(buf[pos : pos + length]), pos + length


# Node's and uvicorn's servers close a keep-alive connection idle for 5 s (the gateway: 60 s);
# a connection idle longer than this is opened again before a block is timed.
IDLE_REOPEN_S = 2.0


class KeepAlive:
    """One keep-alive connection sending the same GET."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.raw = request_bytes(port)
        self.sock = self._connect()
        self.buf = bytearray()
        self.used_at = time.monotonic()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def reopen_if_idle(self) -> None:
        """A fresh connection (and one untimed request on it) if this one sat idle."""
        if time.monotonic() - self.used_at > IDLE_REOPEN_S:
            self.sock.close()
            self.sock, self.buf = self._connect(), bytearray()
            self.get()

    def get(self) -> tuple[int, dict[str, str], bytes]:
        self.used_at = time.monotonic()
        self.sock.sendall(self.raw)
        while (parsed := parse(self.buf)) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed by 127.0.0.1:{self.port}")
            self.buf += data
        status, headers, body, used = parsed
        del self.buf[:used]
        return status, headers, body

    def close(self) -> None:
        self.sock.close()


def check(status: int, headers: dict[str, str], body: bytes, who: str) -> None:
    if status != 200 or json.loads(body or b"null") != {}:
        raise RuntimeError(f"{who} answered {status} {headers}: {body[:300]!r}")


def timed(conn: KeepAlive, n: int, sink: list[float], who: str) -> None:
    conn.reopen_if_idle()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        status, headers, body = conn.get()
        sink.append((time.perf_counter_ns() - t0) / 1000)
        if status != 200:
            check(status, headers, body, who)


def rate(port: int, connections: int, warmup_s: float, window_s: float) -> dict[str, Any]:
    """Responses per second inside the window, ``connections`` keep-alive connections each
    with one request in flight; and how many were not a 200."""
    raw = request_bytes(port)
    selector = selectors.DefaultSelector()
    conns = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        buf = bytearray()
        selector.register(sock, selectors.EVENT_READ, buf)
        conns.append(sock)
        sock.send(raw)
    start = time.monotonic() + warmup_s
    stop = start + window_s
    counted = errors = 0
    try:
        while (now := time.monotonic()) < stop:
            for key, _ in selector.select(timeout=max(0.0, stop - now)):
                sock, buf = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"127.0.0.1:{port} closed a connection under load")
                buf += data
                while (parsed := parse(buf)) is not None:
                    status, _headers, _body, used = parsed
                    del buf[:used]
                    at = time.monotonic()
                    if start <= at < stop:
                        counted += 1
                        errors += status != 200
                    sock.send(raw)
    finally:
        for sock in conns:
            selector.unregister(sock)
            sock.close()
        selector.close()
    return {"per_s": counted / window_s, "responses": counted, "non_200": errors,
            "connections": connections, "window_s": window_s}  # fmt: skip


# -- the floor: uvicorn + Starlette ----------------------------------------------------------


def serve_floor(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def bench(request: Request) -> Response:
        return Response(BODY, media_type="application/json")

    app = Starlette(routes=[Route(PATH, bench, methods=["GET"])])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", lifespan="off")  # fmt: skip


class Floor:
    def __init__(self, work_dir: Any) -> None:
        self.port = free_port()
        self.log_path = work_dir / "floor.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    def unavailable(self) -> str | None:
        try:
            import starlette
            import uvicorn
        except ImportError as exc:
            return f"skipped: {exc.name} is not installed (pip install -e '.[bench]')"
        self.version = f"uvicorn {uvicorn.__version__}, Starlette {starlette.__version__}"
        return None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.gateway", "--floor", str(self.port)],
                cwd=ROOT, stdout=log, stderr=log,
            )  # fmt: skip

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the floor exited: {self.log_path.read_text()[-400:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(listening, timeout=START_S, interval=0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# -- the scenario ----------------------------------------------------------------------------


def run(settings: Settings) -> dict[str, Any]:
    warm_n = settings.warm_n // 2
    window_s = 1.0 if settings.quick else 3.0
    warmup_s = 0.3 if settings.quick else 0.5
    result: dict[str, Any] = {"handler": "benchmarks/functions/noop_http (returns {})",
                              "route": f"GET {PATH}, payload format 2.0"}  # fmt: skip
    sls = ServerlessOffline(settings.work_dir, SERVERLESS_YML, "sls-gateway")
    sls_status = sls.unavailable()
    if sls_status is None:
        sls.start()  # seconds to start: meanwhile the daemon and the floor start
    floor = Floor(settings.work_dir)
    floor_status = floor.unavailable() or "ok"
    port = free_port()
    config = {"idle_ttl_s": 3600.0, "pool_size": 4}
    daemon = BenchDaemon("gateway", settings.work_dir, config, ["--gateway", f"127.0.0.1:{port}"])
    conns: dict[str, KeepAlive] = {}
    lat: dict[str, list[float]] = {"gateway": [], "floor": [], "serverless_offline": [],
                                   "msgpack": []}  # fmt: skip
    rates: dict[str, Any] = {}
    try:
        daemon.start()
        if floor_status == "ok":
            floor.start()
        client = daemon.client()
        client.deploy("noop", FUNCTION_DIR)
        client.trigger_add("http", "bench", "noop", route=f"GET {PATH}")
        conns["gateway"] = KeepAlive(port)
        check(*conns["gateway"].get(), "the gateway")
        if floor_status == "ok":
            conns["floor"] = KeepAlive(floor.port)
            check(*conns["floor"].get(), "the floor")
        if sls_status is None:
            try:
                sls.wait_ready(sls.http_port)
                conns["serverless_offline"] = KeepAlive(sls.http_port)
                t0 = time.perf_counter_ns()
                check(*conns["serverless_offline"].get(), "serverless-offline")
                result["serverless_offline_first_ms"] = (time.perf_counter_ns() - t0) / 1e6
                sls_status = "ok"
            except (RuntimeError, OSError, ValueError) as exc:
                sls_status = f"failed: {exc}"[:400]
                conns.pop("serverless_offline", None)
        for who, conn in conns.items():
            timed(conn, WARMUP if who != "serverless_offline" else 50, [], who)
        _timed_msgpack(client, "noop", WARMUP, [])
        remaining = warm_n
        sls_n = min(warm_n, 100 if settings.quick else 1000)
        sls_left = sls_n
        while remaining > 0:
            block = min(BLOCK, remaining)
            for who, conn in conns.items():
                n = block
                if who == "serverless_offline":
                    n = min(sls_left, max(1, sls_n * block // warm_n))
                    sls_left -= n
                timed(conn, n, lat[who], who)
            # The same function through the socket: what the gateway adds to an invocation.
            _timed_msgpack(client, "noop", block, lat["msgpack"])
            remaining -= block
        client.close()
        for conn in conns.values():
            conn.close()
        targets = {"gateway": port, "floor": floor.port, "serverless_offline": sls.http_port}
        for who in list(conns):
            # An unmeasured pass first: the gateway's extra sandboxes (one per connection in
            # flight) are cold-started here, not inside the window.
            rate(targets[who], RATE_CONNECTIONS, 0.0, warmup_s)
            rates[who] = rate(targets[who], RATE_CONNECTIONS, warmup_s, window_s)
    finally:
        for conn in conns.values():
            conn.close()
        sls.stop()
        floor.stop()
        daemon.stop()
    result.update(
        floor={"status": floor_status, "version": floor.version},
        serverless_offline={"status": sls_status, "version": sls.version},
        warm_us={who: summarize(s) if s else None for who, s in lat.items()},
        rate=rates,
    )
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    for who, label in (("gateway", "lambdad gateway"), ("msgpack", "lambdad msgpack"),
                       ("floor", "uvicorn+Starlette"),
                       ("serverless_offline", "serverless-offline")):  # fmt: skip
        w = result["warm_us"][who]
        if w is None:
            status = result.get(who, {}).get("status", "not run")
            print(f"    {label:18s} {status}", flush=True)
            continue
        r = result["rate"].get(who)
        per_s = f" | {r['per_s']:8.0f} req/s ({r['connections']} conns)" if r else ""
        print(f"    {label:18s} warm p50 {w['p50']:8.1f} us  p99 {w['p99']:8.1f} us{per_s}",
              flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway")
    parser.add_argument("--floor", type=int, required=True, help="serve the floor on PORT")
    args = parser.parse_args(argv)
    serve_floor(args.floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- report rows (benchmarks/report.py calls these) -------------------------------------------

VS_FLOOR = "gateway warm request (keep-alive, http trigger) vs uvicorn+Starlette floor: p50"
VS_SLS = "gateway warm request vs serverless-offline's httpApi: p50"


Row = tuple[str, str, str, str, bool | None, str]  # figure, target, measured, baseline, met, ratio


def targets(results: dict[str, Any], error: str | None) -> list[Row]:
    """Issue 15 item 6's two ratios as (figure, target, measured, baseline, met, ratio)."""
    if error is not None:
        return [(VS_FLOOR, "<= 2x", error, "-", None, "-"),
                (VS_SLS, ">= 10x faster", error, "-", None, "-")]
    g = results["gateway"]
    warm, rates = g["warm_us"], g["rate"]
    gw = warm["gateway"]

    def with_rate(who: str, text: str) -> str:
        r = rates.get(who)
        return f"{text}, {r['per_s']:,.0f} req/s" if r else text

    measured = with_rate("gateway", f"gateway {gw['p50']:.0f} us")
    rows: list[Row] = []
    floor, sls = warm["floor"], warm["serverless_offline"]
    if floor is None:
        rows.append((VS_FLOOR, "<= 2x", g["floor"]["status"], "-", None, "-"))
    else:
        ratio = gw["p50"] / floor["p50"]
        rows.append((VS_FLOOR, "<= 2x", f"{ratio:.2f}x ({measured})",
                     with_rate("floor", f"floor {floor['p50']:.0f} us"), ratio <= 2,
                     f"{ratio:.2f}x the floor"))  # fmt: skip
    if sls is None:
        rows.append((VS_SLS, ">= 10x faster", g["serverless_offline"]["status"], "-", None, "-"))
    else:
        faster = sls["p50"] / gw["p50"]
        rows.append((VS_SLS, ">= 10x faster", f"{faster:.1f}x faster ({measured})",
                     with_rate("serverless_offline", f"serverless-offline {sls['p50']:.0f} us"),
                     faster >= 10, f"{faster:.1f}x faster"))  # fmt: skip
    return rows


def markdown(results: dict[str, Any]) -> list[str]:
    g = results.get("gateway")
    if not isinstance(g, dict) or "error" in g:
        return []
    warm, rates = g["warm_us"], g["rate"]
    rows = []
    floor_version = g["floor"]["version"] or "-"
    sls_version = g["serverless_offline"]["version"] or "not installed"
    for who, label, status in (
        ("gateway", "lambdad gateway (http trigger, v2.0, warm sandbox)", "ok"),
        ("msgpack", "lambdad msgpack invoke of the same function (context)", "ok"),
        ("floor", f"uvicorn+Starlette, no function ({floor_version})", g["floor"]["status"]),
        ("serverless_offline", f"serverless-offline httpApi ({sls_version})",
         g["serverless_offline"]["status"]),
    ):  # fmt: skip
        s = warm.get(who)
        r = rates.get(who)
        cells = ["-"] * 5
        if s:
            cells = [str(s["n"]), *(f"{s[q]:.0f}" for q in ("p50", "p90", "p99", "max"))]
        rows.append([label, status, *cells, f"{r['per_s']:,.0f}" if r else "-"])
    conns = next((r["connections"] for r in rates.values()), 0)
    lines = ["", "## HTTP gateway vs uvicorn+Starlette vs serverless-offline httpApi", ""]
    lines += [f"`{g['route']}`, handler {g['handler']}. Warm in µs (one client, sequential, "
              f"keep-alive); req/s with {conns} keep-alive connections, one request in flight "
              "on each, from one load-generating process.", ""]  # fmt: skip
    header = "| path | status | n | p50 | p90 | p99 | max | req/s |"
    lines += [header, "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
