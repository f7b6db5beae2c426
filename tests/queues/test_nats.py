"""The NATS JetStream backend against a real ``nats-server -js`` (Debian's package), started
on a free loopback port with its own store directory and stopped after each test."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from tests.conftest import DaemonProcess, wait_for, write_function

pytestmark = pytest.mark.root

RECORDER = """
import json
def handler(event, context):
    for r in event["Records"]:
        print("BODY " + r["body"])
        if r["body"].startswith("fail"):
            raise RuntimeError("failing " + r["body"])
    return {}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    port: int
    store: str
    log: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server")
        assert binary, "nats-server is not installed (scripts/system-packages)"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store],
                stdout=log, stderr=log,
            )  # fmt: skip
        wait_for(self._answers, timeout=30)

    def _answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, Path(self.log).read_text()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="lambdad-nats-") as tmp:
        server = NatsServer(free_port(), str(Path(tmp) / "store"), str(Path(tmp) / "nats.log"))
        server.start()
        try:
            yield server
        finally:
            server.stop()


async def _publish(url: str, subject: str, bodies: list[str]) -> None:
    import nats
    from nats.js import api
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(subject)
        except NotFoundError:
            await js.add_stream(api.StreamConfig(name=subject, subjects=[subject]))
        for body in bodies:
            await js.publish(subject, body.encode(), headers={"origin": "test"})
    finally:
        await nc.close()


def publish(url: str, subject: str, bodies: list[str]) -> None:
    asyncio.run(_publish(url, subject, bodies))


async def _stream_bodies(url: str, stream: str) -> list[tuple[str, dict[str, Any]]]:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:  # the mapping has not created it yet
            return []
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            msg = await js.get_msg(stream, seq)
            out.append(((msg.data or b"").decode(), dict(msg.headers or {})))
        return out
    finally:
        await nc.close()


def stream_bodies(url: str, stream: str) -> list[tuple[str, dict[str, Any]]]:
    return asyncio.run(_stream_bodies(url, stream))


def bodies_seen(c: Client, function: str) -> list[str]:
    text, _ = c.logs(function)
    return [line[5:] for line in text.splitlines() if line.startswith("BODY ")]


def test_a_stream_is_consumed_in_batches_and_acked(
    daemon: DaemonProcess, nats_server: NatsServer, tmp_path: Path
) -> None:
    publish(nats_server.url, "orders", [f"m{i}" for i in range(30)])
    with daemon.client() as c:
        c.deploy("nrec", write_function(tmp_path / "f", RECORDER))
        m = c.create_mapping("nrec", "nrec", f"{nats_server.url}/orders", batch_size=10)
        assert m["source_arn"] == f"{nats_server.url}/orders"
        wait_for(lambda: sorted(set(bodies_seen(c, "nrec"))) == sorted(f"m{i}" for i in range(30)))
        wait_for(lambda: c.get_mapping("nrec")["counters"]["succeeded"] >= 30)
        # Acked: the durable consumer has nothing pending; a daemon restart redelivers nothing.
        before = bodies_seen(c, "nrec")
    daemon.restart()
    with daemon.client() as c:
        publish(nats_server.url, "orders", ["after"])
        wait_for(lambda: "after" in bodies_seen(c, "nrec"))
        assert bodies_seen(c, "nrec") == [*before, "after"]


def test_past_the_receive_count_a_message_goes_to_the_dead_letter_subject(
    daemon: DaemonProcess, nats_server: NatsServer, tmp_path: Path
) -> None:
    publish(nats_server.url, "jobs", ["fail-1"])
    url = f"{nats_server.url}/jobs?visibility_timeout=1&max_receive_count=2"
    with daemon.client() as c:
        c.deploy("ndlq", write_function(tmp_path / "f", RECORDER))
        c.create_mapping("ndlq", "ndlq", url, batch_size=1)
        dead = wait_for(lambda: stream_bodies(nats_server.url, "jobs_DLQ"), timeout=120)
        [(body, headers)] = dead
        assert body == "fail-1"
        assert headers["origin"] == "test"  # its headers travel with it
        # Received at least twice (the receive count), then moved; under load AckWait (1 s here)
        # may also expire while an attempt still runs, which is a further receive, never a lost
        # message, and the header counts it.
        assert int(headers["Lambdad-Receive-Count"]) >= 2, headers
        assert bodies_seen(c, "ndlq").count("fail-1") >= 2


def test_the_server_going_away_mid_delivery_and_coming_back_loses_nothing(
    daemon: DaemonProcess, nats_server: NatsServer, tmp_path: Path
) -> None:
    total = 200
    publish(nats_server.url, "burst", [f"b{i}" for i in range(total)])
    with daemon.client() as c:
        c.deploy("nburst", write_function(tmp_path / "f", RECORDER))
        url = f"{nats_server.url}/burst?visibility_timeout=2"
        c.create_mapping("nburst", "nburst", url, batch_size=5)
        wait_for(lambda: len(bodies_seen(c, "nburst")) >= 10)
        nats_server.stop()  # mid-delivery
        wait_for(lambda: c.get_mapping("nburst")["counters"]["last_error"] is not None)
        nats_server.start()  # same port, same store: the stream and the consumer are still there
        wanted = {f"b{i}" for i in range(total)}
        wait_for(lambda: wanted <= set(bodies_seen(c, "nburst")), timeout=120)
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert json.dumps(c.get_mapping("nburst")["counters"])  # still answering
