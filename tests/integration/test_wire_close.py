"""How a connection ends, over a raw socket against the real daemon (docs/protocol.md, "Closing").

* A fatal error (bytes that are not msgpack, a frame declared or grown over the limit) is one
  error frame with ``"id": nil`` and ``"fatal": true``; every request read before it is still
  answered; then the daemon half-closes, swallows input, and closes at the client's EOF.
* A client's half-close gets the answers to everything it sent, then the daemon's EOF.
* A connection that never says hello is closed after ``hello_timeout_s``.

After each test the daemon's own output must be free of tracebacks: a dropped response used to
leave "Task exception was never retrieved ... Cannot call write() after write_eof()" there.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from lambdad.frontends.unix import LINGER_S
from tests.conftest import TEST_CONFIG, DaemonProcess, running_daemon, wait_for, write_function

HELLO_TIMEOUT_S = 1.0
SLOW_S = 0.3  # how long the slow function runs: long enough to be in flight at the bad bytes

SLOW = f"""
import time

def handler(event, context):
    time.sleep(event.get("s", {SLOW_S}))
    return {{"slept": event.get("s", {SLOW_S}), "n": event.get("n")}}
"""


@pytest.fixture(scope="module")
def wire_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    for d in running_daemon(TEST_CONFIG + f"hello_timeout_s = {HELLO_TIMEOUT_S}\n"):
        with d.client() as c:
            c.deploy("slow", write_function(tmp_path_factory.mktemp("slow"), SLOW))
        yield d


@pytest.fixture(autouse=True)
def clean_stderr(wire_daemon: DaemonProcess) -> Iterator[None]:
    yield
    output = wire_daemon.output()
    for bad in ("Traceback", "Task exception was never retrieved", "Exception in callback"):
        assert bad not in output, output


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


HELLO = pack({"id": 0, "op": "hello", "args": {"version": 1}})


def invoke(id: int, event: dict[str, Any], name: str = "slow") -> bytes:
    return pack({"id": id, "op": "invoke", "args": {"name": name, "payload": pack_json(event)}})


def pack_json(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


class Raw:
    """A client socket that records each frame with the time it arrived, and the EOF."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(30)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.eof_at: float | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until_eof(self) -> list[dict[str, Any]]:
        """Every frame until the daemon's EOF (a reset fails the test: frames may be lost)."""
        while self.eof_at is None:
            data = self.sock.recv(65536)
            now = time.monotonic()
            if not data:
                self.eof_at = now
                break
            self.unpacker.feed(data)
            self.frames.extend((now, frame) for frame in self.unpacker)
        return [frame for _, frame in self.frames]

    def read_frames(self, count: int) -> list[dict[str, Any]]:
        while len(self.frames) < count:
            data = self.sock.recv(65536)
            assert data, f"EOF after {self.frames}"
            self.unpacker.feed(data)
            self.frames.extend((time.monotonic(), frame) for frame in self.unpacker)
        return [frame for _, frame in self.frames]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(wire_daemon: DaemonProcess) -> Iterator[Raw]:
    conn = Raw(wire_daemon.socket)
    yield conn
    conn.close()


def invocations(daemon: DaemonProcess, name: str) -> int:
    with daemon.client() as c:
        return int(c.stats(name)["invocations"])


def test_requests_read_before_garbage_are_answered_then_the_daemon_closes(
    wire_daemon: DaemonProcess, raw: Raw
) -> None:
    before = invocations(wire_daemon, "slow")
    raw.send(HELLO + invoke(1, {"n": 1}) + pack({"id": 2, "op": "ping"}) + b"\xc1" + HELLO)

    frames = raw.read_until_eof()

    by_id = {f["id"]: f for f in frames}
    assert set(by_id) == {0, 1, 2, None}, frames
    assert by_id[0]["ok"]["version"] == 1
    assert by_id[2] == {"id": 2, "ok": {}}
    fatal = by_id[None]["error"]
    assert fatal["type"] == "ProtocolError" and fatal["fatal"] is True
    assert fatal["message"].startswith("bytes are not a msgpack frame")
    # The invoke was read before the bad byte: it ran, and its answer came (after the fatal
    # frame, which goes out at once) before the daemon's EOF.
    assert json.loads(by_id[1]["ok"]["result"]) == {"slept": SLOW_S, "n": 1}
    order = [f["id"] for f in frames]
    assert order.index(None) < order.index(1)
    assert invocations(wire_daemon, "slow") == before + 1


def test_many_requests_in_flight_at_the_fatal_frame_are_all_answered(
    wire_daemon: DaemonProcess, raw: Raw
) -> None:
    requests = b"".join(invoke(i, {"n": i, "s": 0.01}) for i in range(1, 41))
    raw.send(HELLO + requests + b"\xc1garbage that follows is discarded")

    frames = raw.read_until_eof()

    answered = {f["id"] for f in frames if "ok" in f}
    assert answered == set(range(41))
    assert [f["error"]["fatal"] for f in frames if "error" in f] == [True]


def test_a_frame_declaring_a_huge_bin_is_refused_from_its_header(
    wire_daemon: DaemonProcess, raw: Raw
) -> None:
    # invoke with a payload bin32 of 100 MiB: only the header is sent, the daemon does not wait.
    head = pack({"id": 1, "op": "invoke", "args": {"name": "slow", "payload": b""}})
    assert head.endswith(b"\xc4\x00")
    raw.send(HELLO + head[:-2] + b"\xc6" + struct.pack(">I", 100 * 2**20) + b"{")

    frames = raw.read_until_eof()

    # The hello's answer may come after the fatal frame (which goes out at once).
    assert [f["id"] for f in frames if "ok" in f] == [0]
    assert [f for f in frames if "error" in f] == [
        {
            "id": None,
            "error": {
                "type": "FrameTooLarge",
                "message": "frame larger than the limit of 8388608 bytes",
                "limit": 8 * 2**20,
                "fatal": True,
            },
        }
    ]


def daemon_end(raw: Raw) -> str:
    """The inode of the daemon's end of ``raw`` (``ss`` reads each Unix socket's peer)."""
    ours = str(os.fstat(raw.sock.fileno()).st_ino)
    out = subprocess.run(["ss", "-x", "-H", "-a"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        fields = line.split()
        # Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port
        if len(fields) >= 8 and fields[5] == ours:
            return fields[7]
    raise AssertionError(f"socket {ours} not in ss -x output")


def daemon_holds(daemon: DaemonProcess, inode: str) -> bool:
    """Whether the daemon still has socket ``inode`` open."""
    assert daemon.proc is not None
    fd_dir = Path(f"/proc/{daemon.proc.pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                return True
        except FileNotFoundError:  # closed while we looked
            continue
    return False


def test_after_a_fatal_error_the_close_follows_the_clients_eof(
    wire_daemon: DaemonProcess,
) -> None:
    raw = Raw(wire_daemon.socket)
    raw.send(HELLO + b"\xc1")
    frames = raw.read_until_eof()  # the daemon half-closed: our side may still write
    assert [f["error"]["fatal"] for f in frames if "error" in f] == [True]
    theirs = daemon_end(raw)
    assert daemon_holds(wire_daemon, theirs)

    # Input sent after the daemon's EOF is read and thrown away (no reset, no answer)...
    for _ in range(16):
        raw.send(b"\x00" * 65536)
    assert daemon_holds(wire_daemon, theirs)
    raw.sock.shutdown(socket.SHUT_WR)
    # ...and our EOF makes the daemon close well inside its 2 s linger.
    started = time.monotonic()
    wait_for(lambda: not daemon_holds(wire_daemon, theirs), timeout=10)
    assert time.monotonic() - started < LINGER_S / 2
    raw.close()


def test_after_a_fatal_error_a_silent_client_is_closed_after_the_linger(
    wire_daemon: DaemonProcess,
) -> None:
    raw = Raw(wire_daemon.socket)
    raw.send(HELLO + pack({"id": 1, "op": "hello", "args": {"version": 1}, "x": 1}) + b"\xc1")
    frames = raw.read_until_eof()
    eof_at = raw.eof_at
    assert eof_at is not None
    by_id = {f["id"]: f for f in frames}
    assert sorted(by_id, key=str) == [0, 1, None]
    assert "fatal" not in by_id[1]["error"]  # a bad key is not fatal
    assert by_id[None]["error"]["fatal"] is True
    theirs = daemon_end(raw)
    assert daemon_holds(wire_daemon, theirs)

    wait_for(lambda: not daemon_holds(wire_daemon, theirs), timeout=LINGER_S + 20)

    assert time.monotonic() - eof_at >= LINGER_S * 0.9
    raw.close()


def test_a_half_close_gets_every_answer_then_the_daemons_eof(
    wire_daemon: DaemonProcess, raw: Raw
) -> None:
    raw.send(HELLO + b"".join(invoke(i, {"n": i}) for i in range(1, 4)))
    raw.sock.shutdown(socket.SHUT_WR)

    frames = raw.read_until_eof()

    assert sorted(f["id"] for f in frames) == [0, 1, 2, 3]
    assert all("ok" in f for f in frames)
    assert raw.eof_at is not None
    last_answer = raw.frames[-1][0]
    assert raw.eof_at - last_answer < 0.1, raw.eof_at - last_answer


def test_a_connection_that_never_says_hello_is_closed(wire_daemon: DaemonProcess, raw: Raw) -> None:
    started = time.monotonic()
    with wire_daemon.client() as c:  # a client that did say hello outlives the timeout
        frames = raw.read_until_eof()
        waited = time.monotonic() - started
        assert c.call("ping") == {}

    assert frames == [
        {
            "id": None,
            "error": {
                "type": "ProtocolError",
                "message": f"no hello within {HELLO_TIMEOUT_S:g} s",
                "fatal": True,
            },
        }
    ]
    assert waited >= HELLO_TIMEOUT_S * 0.9


def test_refused_requests_before_hello_do_not_stop_the_timer(
    wire_daemon: DaemonProcess, raw: Raw
) -> None:
    raw.send(pack({"id": 1, "op": "ping"}) + pack({"id": 2, "op": "hello", "args": {}}))
    frames = raw.read_until_eof()
    assert [f["error"]["type"] for f in frames] == [
        "ProtocolError",
        "UnsupportedVersion",
        "ProtocolError",
    ]
    assert frames[-1]["error"]["fatal"] is True


def test_the_daemon_still_serves_after_all_that(wire_daemon: DaemonProcess) -> None:
    with wire_daemon.client() as c:
        assert c.invoke("slow", {"n": 9, "s": 0}).result == {"slept": 0, "n": 9}


def test_answers_finishing_together_are_each_written_once_and_whole_before_the_eof(
    wire_daemon: DaemonProcess, raw: Raw
) -> None:
    # Answers that complete in the same turn of the daemon's loop are joined into one write:
    # each must still come exactly once, whole, and before the EOF that follows a half-close.
    ids = range(1, 61)
    pings = b"".join(pack({"id": 1000 + i, "op": "ping"}) for i in ids)
    raw.send(HELLO + b"".join(invoke(i, {"n": i, "s": 0}) for i in ids) + pings)
    raw.sock.shutdown(socket.SHUT_WR)

    frames = raw.read_until_eof()

    got = [f["id"] for f in frames]
    assert sorted(got) == sorted([0, *ids, *(1000 + i for i in ids)]), got
    for f in frames:
        if 0 < f["id"] < 1000:
            assert json.loads(f["ok"]["result"]) == {"slept": 0, "n": f["id"]}
