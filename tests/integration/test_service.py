"""The daemon as a service: Ctrl-C on `make run`, and systemd's notify protocol (Type=notify).

Ctrl-C: a terminal sends SIGINT to its whole foreground process group. The daemon is started in
a session of its own (``start_new_session=True``) and the *group* is signalled, as a terminal
would: it must drain, say one line, remove its socket and leave no process behind.

Notify: ``NOTIFY_SOCKET`` points at a datagram socket the test reads, as systemd's would be.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import Client, Invocation
from lambdad.errors import LambdadError
from lambdad.testing import spawn_daemon
from tests.conftest import EXAMPLES, ROOT, TEST_CONFIG, wait_for, write_function

STOP_WITHIN_S = 3.0  # "within a second or two", on a loaded 2-core machine
SLEEPER_MS = 300


def session_processes(sid: int) -> list[int]:
    """Live processes of session ``sid`` (zygotes and sandboxes included), zombies excluded."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def answers(path: str) -> bool:
    try:
        with Client(path, timeout=5) as c:
            return len(c.list()) >= 5  # the examples are deployed
    except LambdadError:
        return False


def test_ctrl_c_stops_daemon_and_zygotes_cleanly(tmp_path: Path) -> None:
    sock = str(tmp_path / "lambdad.sock")
    (tmp_path / "lambdad.toml").write_text(TEST_CONFIG)
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lambdad", "serve", "--socket", sock, "--state-dir",
             str(tmp_path / "state"), "--config", str(tmp_path / "lambdad.toml"),
             "--examples", str(EXAMPLES)],
            stdout=out, stderr=out, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or answers(sock), 60)
        assert proc.poll() is None, log.read_text()
        with Client(sock) as c:
            # The examples deploy one by one once the socket answers.
            wait_for(lambda: "sleeper" in {f["name"] for f in c.list()}, 60)
            # The thumbnail example comes last (its Pillow layer is pip-installed first) and
            # ends with its s3 trigger: nothing is printed after that.
            wait_for(lambda: "thumbnail-on-upload" in {t["name"] for t in c.trigger_list()}, 300)
            assert c.invoke("hello", {}).error is None  # a warm sandbox exists
        in_flight: list[Invocation | LambdadError] = []

        def slow() -> None:
            try:
                with Client(sock) as c:
                    in_flight.append(c.invoke("sleeper", {"ms": SLEEPER_MS}))
            except LambdadError as exc:
                in_flight.append(exc)

        worker = threading.Thread(target=slow)
        worker.start()
        wait_for(lambda: "sleeper" in _busy(sock), 30)
        before = log.read_text()
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # daemon, zygote and sandboxes: the whole group
        status = proc.wait(30)
        took = time.monotonic() - t0
        worker.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = log.read_text()[len(before):]
    assert status == 0, after
    assert after == "lambdad: stopped (SIGINT)\n"  # one line: no traceback, no zygote restart
    assert took < STOP_WITHIN_S, f"took {took:.2f} s to stop"
    assert in_flight and isinstance(in_flight[0], Invocation), in_flight
    assert in_flight[0].error is None, "the in-flight invocation was drained"
    assert not os.path.exists(sock)
    wait_for(lambda: session_processes(proc.pid) == [], 10)  # no zygote or sandbox left


def test_ctrl_c_during_start_up_waits_for_it_then_stops_cleanly(tmp_path: Path) -> None:
    """SIGINT to the group the moment the daemon has a child (``ldconfig``, run by an import,
    or the zygote being started): no traceback from either, a stop once start-up is done, the
    socket removed, nothing left behind."""
    sock = str(tmp_path / "lambdad.sock")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lambdad", "serve", "--socket", sock, "--state-dir",
             str(tmp_path / "state")],
            stdout=out, stderr=out, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or _children(proc.pid), 60)
        os.killpg(proc.pid, signal.SIGINT)
        status = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert status == 0, text
    assert "Traceback" not in text and "zygote" not in text, text
    assert text.endswith("lambdad: stopped (SIGINT)\n"), text
    assert not os.path.exists(sock)
    wait_for(lambda: session_processes(proc.pid) == [], 10)


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []


def _busy(sock: str) -> str:
    with Client(sock) as c:
        return "sleeper" if c.stats("sleeper")["concurrent"] else ""


class NotifyListener:
    """What systemd would receive on ``$NOTIFY_SOCKET``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[str] = []

    def wait_for(self, wanted: str, timeout: float = 30.0) -> str:
        """The first message (read from now on) with a line starting ``wanted``."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"no {wanted!r} within {timeout} s: {self.messages}") from None
            self.messages.append(msg)
            if any(line.startswith(wanted) for line in msg.split("\n")):
                return msg


@pytest.fixture
def listener() -> Iterator[tuple[NotifyListener, str]]:
    name = f"lambdad-test-notify-{uuid.uuid4().hex}"  # abstract namespace, as systemd's may be
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield NotifyListener(sock), "@" + name


def test_systemd_notify_ready_status_watchdog_reload_stopping(
    tmp_path: Path, listener: tuple[NotifyListener, str]
) -> None:
    notes, address = listener
    config = tmp_path / "lambdad.toml"
    config.write_text(TEST_CONFIG)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    proc = spawn_daemon(str(tmp_path / "lambdad.sock"), str(tmp_path / "state"),
                        log_path=str(tmp_path / "daemon.log"), config_path=str(config),
                        env=env, cwd=str(ROOT))  # fmt: skip
    try:
        ready = notes.wait_for("READY=1")
        assert "STATUS=0 functions, " in ready and "0 in flight" in ready
        # The socket answered before READY=1 was sent (spawn_daemon pinged it; so does this).
        with Client(str(tmp_path / "lambdad.sock")) as c:
            c.deploy("notified", write_function(tmp_path / "fn", "def handler(e, c):\n  return 1"))
            assert c.invoke("notified").result == 1
        status = notes.wait_for("STATUS=1 function,")
        assert "warm" in status
        # Pinged from the event loop at least every WATCHDOG_USEC / 2.
        t0 = time.monotonic()
        notes.wait_for("WATCHDOG=1")
        notes.wait_for("WATCHDOG=1")
        assert time.monotonic() - t0 < 5.0
        proc.send_signal(signal.SIGHUP)
        reloading = notes.wait_for("RELOADING=1")
        assert "MONOTONIC_USEC=" in reloading
        assert "STATUS=" in notes.wait_for("READY=1")
        proc.send_signal(signal.SIGTERM)
        assert "STATUS=draining" in notes.wait_for("STOPPING=1")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = (tmp_path / "daemon.log").read_text()
    assert "cannot notify" not in out and "Traceback" not in out


def test_daemon_children_do_not_inherit_the_notify_socket(
    tmp_path: Path, listener: tuple[NotifyListener, str]
) -> None:
    """A sandbox must never talk to the service manager: nothing the daemon starts sees
    $NOTIFY_SOCKET (the zygote's environment is checked; sandboxes are its forks)."""
    notes, address = listener
    env = {**os.environ, "NOTIFY_SOCKET": address}
    proc = spawn_daemon(str(tmp_path / "lambdad.sock"), str(tmp_path / "state"),
                        log_path=str(tmp_path / "daemon.log"), env=env,
                        cwd=str(ROOT))  # fmt: skip
    try:
        notes.wait_for("READY=1")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "no zygote"
        for child in children:
            assert b"NOTIFY_SOCKET" not in Path(f"/proc/{child}/environ").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
