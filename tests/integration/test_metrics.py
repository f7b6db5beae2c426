"""The metrics endpoint on the daemon's HTTP machinery: keep-alive, methods, paths, bad bytes."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.helpers import read_until_closed
from tests.conftest import EXAMPLES, DaemonProcess, make_daemon


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, str]]:
    d = make_daemon(str(tmp_path_factory.mktemp("metrics")),
                    '[daemon]\nmetrics_address = "127.0.0.1:0"\npool_size = 1\n')  # fmt: skip
    d.start()
    try:
        with d.client() as c:
            c.deploy("hello", EXAMPLES / "hello")
            c.invoke("hello", {"name": "scraped"})
            address = c.stats()["metrics_address"]
        yield d, address
    finally:
        d.stop()


def connect(address: str) -> http.client.HTTPConnection:
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def test_scrapes_reuse_one_connection(metrics: tuple[DaemonProcess, str]) -> None:
    daemon, address = metrics
    conn = connect(address)
    try:
        counts = []
        for _ in range(3):
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("content-type", "").startswith("text/plain; version=")
            text = response.read().decode()
            counts.append(text.count('lambdad_invocations_total{function="hello"}'))
            assert not response.will_close  # keep-alive: the same socket serves the next one
        assert counts == [1, 1, 1]
        with daemon.client() as c:
            c.invoke("hello", {"name": "again"})
        conn.request("GET", "/metrics?name[]=hello")  # Prometheus may add a query; ignored
        text = conn.getresponse().read().decode()
        assert 'lambdad_invocations_total{function="hello"} 2.0' in text
        conn.request("HEAD", "/metrics")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 404), ("GET", "/metricsx", 404), ("POST", "/metrics", 405),
     ("DELETE", "/metrics", 405)],
)  # fmt: skip
def test_other_requests_get_a_clear_answer(
    metrics: tuple[DaemonProcess, str], method: str, path: str, status: int
) -> None:
    conn = connect(metrics[1])
    try:
        conn.request(method, path)
        response = conn.getresponse()
        assert response.status == status
        assert b"/metrics" in response.read()
        if status == 405:
            assert response.getheader("allow") == "GET, HEAD"
    finally:
        conn.close()


def test_garbage_gets_a_400_and_the_daemon_carries_on(
    metrics: tuple[DaemonProcess, str], tmp_path: Path
) -> None:
    daemon, address = metrics
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 ")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")  # a scrape has no body
    with daemon.client() as c:
        assert c.invoke("hello", {"name": "still"}).ok
