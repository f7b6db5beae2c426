"""lambdad.notify: the sd_notify datagrams, against real datagram sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad import notify


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_sends_assignments_to_a_path(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = notify.Notifier(path)
    assert n.enabled and n.ready("2 functions")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2 functions"
    assert n.stopping() and sock.recv(4096) == b"STOPPING=1"
    assert n.reloading()
    reloading, monotonic = sock.recv(4096).decode().split("\n")
    assert reloading == "RELOADING=1" and monotonic.startswith("MONOTONIC_USEC=")
    assert abs(int(monotonic.split("=")[1]) - notify.time.monotonic_ns() // 1000) < 60_000_000
    n.close()


def test_abstract_namespace_address() -> None:
    name = f"lambdad-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        n = notify.Notifier("@" + name)
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.close()


def test_environment_is_read_and_removed() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid()),
           "OTHER": "1"}  # fmt: skip
    n = notify.Notifier.from_environment(env)
    assert n.address == "/run/x" and n.watchdog_interval_s == 1.5
    assert env == {"OTHER": "1"}  # children (zygotes, sandboxes) never see them


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    assert notify.Notifier.from_environment(env).watchdog_interval_s is None


def test_without_a_socket_nothing_happens() -> None:
    n = notify.Notifier.from_environment({})
    assert not n.enabled and not n.ready() and not n.watchdog()


def test_an_absent_listener_is_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:  # fmt: skip
    n = notify.Notifier(str(tmp_path / "nobody-listens"))
    assert not n.ready() and not n.ready()
    n.close()
    assert capsys.readouterr().err.count("cannot notify") == 1  # said once, not every time


def test_heartbeat_pings_from_the_loop_and_sends_changed_status(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    state = {"n": 0}

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        notifier = notify.Notifier(path, watchdog_usec=40_000)
        beat = notify.Heartbeat(notifier, loop, lambda: f"{state['n']} functions")
        assert beat.interval_s == 0.02
        beat.start()
        got = [await loop.sock_recv(sock, 4096)]
        while len(got) < 4:
            got.append(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))
            state["n"] = 1
        beat.stop()
        notifier.close()
        return got

    sock.setblocking(False)
    got = asyncio.run(main())
    assert got[0] == b"READY=1\nSTATUS=0 functions"
    assert got[1] == b"WATCHDOG=1"
    assert b"STATUS=1 functions" in got[2:]  # a change is sent once
    assert got.count(b"STATUS=0 functions") == 0


def test_status_line() -> None:
    line = "1 function, 5 sandboxes (2 generic, 3 warm), 4 in flight"
    assert notify.status_line(1, 2, 3, 4) == line
