"""The `lambdad` command line against the real daemon: output, exit codes, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, ROOT, DaemonProcess
from tests.integration.test_daemon import REPORT_RE


def lambdad(
    daemon_socket: str, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAMBDAD_SOCKET": daemon_socket}
    return subprocess.run(
        [sys.executable, "-m", "lambdad", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_the_readme_flow(shared_daemon: DaemonProcess) -> None:
    s = shared_daemon.socket
    deploy = lambdad(s, "deploy", "hello", "--code", str(EXAMPLES / "hello"))
    assert deploy.returncode == 0, deploy.stderr
    assert json.loads(deploy.stdout)["name"] == "hello"

    inv = lambdad(s, "invoke", "hello", "--payload", '{"name": "Ada"}')
    assert inv.returncode == 0, inv.stderr
    assert json.loads(inv.stdout)["message"] == "Hello, Ada!"
    assert REPORT_RE.match(inv.stderr.strip()), inv.stderr

    greet = lambdad(
        s, "deploy", "greet", "--code", str(EXAMPLES / "hello"), "--memory", "256", "--timeout", "5"
    )
    assert greet.returncode == 0, greet.stderr
    described = json.loads(greet.stdout)
    assert described["memory_mb"] == 256 and described["timeout_s"] == 5.0

    ls = lambdad(s, "ls")
    assert ls.returncode == 0
    assert ls.stdout.splitlines()[0].split()[:2] == ["NAME", "VERSION"]
    names = {line.split()[0] for line in ls.stdout.splitlines()[1:]}
    assert {"hello", "greet"} <= names

    logs = lambdad(s, "logs", "hello")
    assert logs.returncode == 0 and "saying hello to Ada" in logs.stdout

    stats = lambdad(s, "stats", "hello")
    assert stats.returncode == 0 and json.loads(stats.stdout)["invocations"] >= 1

    rm = lambdad(s, "rm", "greet")
    assert rm.returncode == 0
    assert "greet" not in lambdad(s, "ls").stdout


def test_payload_from_file_and_stdin(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    s = shared_daemon.socket
    lambdad(s, "deploy", "hello", "--code", str(EXAMPLES / "hello"))
    payload = tmp_path / "event.json"
    payload.write_text('{"name": "File"}')
    from_file = lambdad(s, "invoke", "hello", "--payload", f"@{payload}")
    assert json.loads(from_file.stdout)["message"] == "Hello, File!"
    from_stdin = lambdad(s, "invoke", "hello", "-", stdin=b'{"name": "Stdin"}')
    assert json.loads(from_stdin.stdout)["message"] == "Hello, Stdin!"


def test_function_error_exit_status_and_error_json(shared_daemon: DaemonProcess) -> None:
    s = shared_daemon.socket
    lambdad(s, "deploy", "raises", "--code", str(EXAMPLES / "raises"))
    out = lambdad(s, "invoke", "raises")
    assert out.returncode == 1
    error = json.loads(out.stdout)
    assert error["errorType"] == "InsufficientFunds" and "stackTrace" in error
    assert REPORT_RE.match(out.stderr.strip())


def test_invalid_json_payload(shared_daemon: DaemonProcess) -> None:
    out = lambdad(shared_daemon.socket, "invoke", "hello", "--payload", "{not json")
    assert out.returncode == 2
    assert "not valid JSON" in out.stderr and out.stdout == ""


def test_unknown_function_and_bad_deploy(shared_daemon: DaemonProcess) -> None:
    s = shared_daemon.socket
    out = lambdad(s, "invoke", "no-such-thing")
    assert out.returncode == 2 and "ResourceNotFound" in out.stderr
    bad = lambdad(s, "deploy", "x", "--code", str(EXAMPLES / "hello"), "--memory", "1")
    assert bad.returncode == 2 and "memory_mb" in bad.stderr


def test_log_tail_and_async_and_dry_run(shared_daemon: DaemonProcess) -> None:
    s = shared_daemon.socket
    lambdad(s, "deploy", "hello", "--code", str(EXAMPLES / "hello"))
    tail = lambdad(s, "invoke", "hello", "--payload", '{"name": "Tail"}', "--log-tail")
    assert "saying hello to Tail" in tail.stderr and "REPORT RequestId" in tail.stderr
    queued = lambdad(s, "invoke", "hello", "--async")
    assert queued.returncode == 0 and json.loads(queued.stdout)["status"] == 202
    dry = lambdad(s, "invoke", "hello", "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["status"] == 204


def test_unreachable_daemon_message(tmp_path: Path) -> None:
    sock = str(tmp_path / "absent.sock")
    out = lambdad(sock, "ls")
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and sock in lines[0] and "lambdad serve" in lines[0]


def test_python_dash_m_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lambdad", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("lambdad ")


def test_logs_follow(shared_daemon: DaemonProcess) -> None:
    s = shared_daemon.socket
    lambdad(s, "deploy", "hello", "--code", str(EXAMPLES / "hello"))
    env = {**os.environ, "LAMBDAD_SOCKET": s}
    follower = subprocess.Popen(
        [sys.executable, "-m", "lambdad", "logs", "hello", "-f"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert follower.stdout is not None
        lambdad(s, "invoke", "hello", "--payload", '{"name": "Followed"}')
        # Read lines until the new invocation's output shows up (bounded by the pipe: the
        # follower prints it within a poll interval; pytest-timeout bounds the worst case).
        for line in follower.stdout:
            if "saying hello to Followed" in line:
                break
        else:
            raise AssertionError("logs -f ended without showing the new invocation")
    finally:
        follower.terminate()
        follower.wait(10)
        if follower.stdout is not None:
            follower.stdout.close()
