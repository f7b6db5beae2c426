"""The gateway scenario's own HTTP client and load loop (benchmarks/gateway.py), against the
project's real HTTP server (no daemon): both body framings the peers use, keep-alive, the
rate loop's counting, and the report rows when a peer is missing."""

from __future__ import annotations

from typing import Any

from benchmarks import gateway
from benchmarks.gateway import KeepAlive, parse, rate
from lambdad.frontends.http import Request, Response
from tests.api.helpers import serve


def test_parse_reads_content_length_and_chunked_bodies() -> None:
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1"
    assert parse(plain) == (200, {"content-length": "2"}, b"{}", len(plain) - 8)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1;x=y\r\n}\r\n0\r\n\r\n"
    )
    assert parse(chunked) == (200, {"transfer-encoding": "chunked"}, b"{}", len(chunked))
    trailers = chunked[:-2] + b"trailer: 1\r\n\r\n"
    assert parse(trailers) == (200, {"transfer-encoding": "chunked"}, b"{}", len(trailers))
    for cut in range(len(chunked)):
        assert parse(chunked[:cut]) is None, cut
    assert parse(plain[:-10]) is None


def test_keep_alive_gets_and_the_rate_loop_count_real_answers() -> None:
    seen: list[str] = []

    async def app(request: Request) -> Response:
        seen.append(request.path)
        return Response(200, (("content-type", "application/json"),), b"{}")

    with serve(app) as srv:
        conn = KeepAlive(srv.port)
        try:
            for _ in range(5):
                assert conn.get()[0::2] == (200, b"{}")
            conn.used_at -= gateway.IDLE_REOPEN_S + 1  # as if idle: a fresh connection
            old = conn.sock
            conn.reopen_if_idle()
            assert conn.sock is not old and old.fileno() == -1
        finally:
            conn.close()
        before = len(seen)
        measured = rate(srv.port, connections=2, warmup_s=0.05, window_s=0.2)
    assert measured["responses"] > 0 and measured["non_200"] == 0
    assert len(seen) - before >= measured["responses"]
    assert seen[0] == gateway.PATH


def test_the_rows_say_why_a_peer_was_not_measured() -> None:
    summary: dict[str, Any] = {"n": 10, "p50": 100.0, "p90": 1.0, "p99": 1.0, "max": 1.0}
    results = {"gateway": {
        "warm_us": {"gateway": summary, "msgpack": summary, "floor": None,
                    "serverless_offline": {**summary, "p50": 2000.0}},
        "rate": {"gateway": {"per_s": 1000.0, "connections": 8}},
        "floor": {"status": "skipped: uvicorn is not installed", "version": ""},
        "serverless_offline": {"status": "ok", "version": "serverless-offline 13"},
        "route": "GET /bench", "handler": "noop",
    }}  # fmt: skip
    floor, sls = gateway.targets(results, None)
    assert floor[2:] == ("skipped: uvicorn is not installed", "-", None, "-")
    assert sls[2] == "20.0x faster (gateway 100 us, 1,000 req/s)" and sls[4] is True
    assert sls[5] == "20.0x faster"
    assert gateway.targets({}, "not run")[0][2:] == ("not run", "-", None, "-")
    table = "\n".join(gateway.markdown(results))
    assert "| lambdad gateway (http trigger, v2.0, warm sandbox) | ok | 10 | 100 |" in table
