"""Run a real ``lambdad serve`` in a subprocess, for tests and benchmarks (yours too).

    proc = spawn_daemon("/tmp/t/lambdad.sock", "/tmp/t/state", log_path="/tmp/t/daemon.log")
    ...  # Client("/tmp/t/lambdad.sock")
    proc.terminate(); proc.wait()

It returns once the daemon answers on its socket — it polls that condition with a deadline, it
does not sleep for a fixed time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lambdad.client import Client
from lambdad.errors import LambdadError

START_DEADLINE_S = 60.0


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that; raise
    ``TimeoutError`` after ``timeout`` seconds. The alternative to sleeping "long enough"."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s: {condition}")
        time.sleep(interval)


class DaemonStartError(RuntimeError):
    """The daemon exited or did not answer in time; the message ends with its log."""


def spawn_daemon(
    socket_path: str,
    state_dir: str,
    *,
    log_path: str,
    config_path: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    deadline_s: float = START_DEADLINE_S,
) -> subprocess.Popen[bytes]:
    """Start ``python -m lambdad serve`` and wait until it answers a ``ping``.

    Raises:
        DaemonStartError: it exited, or did not answer within ``deadline_s``.
    """
    args = [sys.executable, "-m", "lambdad", "serve", "--socket", socket_path,
            "--state-dir", state_dir, *extra_args]  # fmt: skip
    if config_path:
        args += ["--config", config_path]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=log, cwd=cwd, env=dict(env) if env is not None else None
        )
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            raise DaemonStartError(f"lambdad exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with Client(socket_path, timeout=10) as c:
                c.call("ping")
            return proc
        except LambdadError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise DaemonStartError(
                f"lambdad did not answer within {deadline_s:.0f} s:\n{_tail(log_path)}"
            )
        time.sleep(0.02)


def _tail(path: str, size: int = 8192) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return ""
    return data[-size:].decode("utf-8", "replace")


__all__ = ["DaemonStartError", "spawn_daemon", "wait_for"]
