"""Shared fixtures: a real daemon on a temporary socket and state directory.

``daemon`` starts ``python -m lambdad serve`` as a subprocess (the real thing: zygote, sandboxes,
isolation when run as root), waits until its socket answers, and stops it with SIGTERM after
the test. Nothing here sleeps to "wait for" the daemon: it polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lambdad import testing
from lambdad.client import Client
from lambdad.testing import DaemonStartError, spawn_daemon

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
START_DEADLINE_S = 60.0


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.01) -> Any:
    """:func:`lambdad.testing.wait_for`, failing the test (AssertionError) on time-out."""
    try:
        return testing.wait_for(condition, timeout, interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), from /proc."""
    out: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError), open(path) as f:
            out += [int(p) for p in f.read().split()]
    return out


def uid_of(pid: int) -> int:
    """The real uid of a process (a generic sandbox is still 0, a specialized one is not)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


@dataclass
class DaemonProcess:
    """A running ``lambdad serve`` and how to reach it."""

    socket: str
    state_dir: str
    config: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    extra_args: list[str] = field(default_factory=list)

    def start(self) -> None:
        try:
            self.proc = spawn_daemon(
                self.socket,
                self.state_dir,
                log_path=self.log_path,
                config_path=self.config,
                extra_args=self.extra_args,
                cwd=str(ROOT),
            )
        except DaemonStartError as exc:
            raise AssertionError(str(exc)) from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"lambdad did not stop on signal {sig}:\n{self.output()}"
            ) from None

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, timeout: float | None = 60) -> Client:
        return Client(self.socket, timeout=timeout)

    def sandbox_pids(self) -> list[int]:
        """Every sandbox process: the children of the daemon's zygotes, seen from the host."""
        assert self.proc is not None
        zygotes = [
            p
            for p in children_of(self.proc.pid)
            if b"sandbox.zygote" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        return [s for z in zygotes for s in children_of(z)]


def make_daemon(
    tmp: str, config_text: str | None = None, extra_args: list[str] | None = None
) -> DaemonProcess:
    config = None
    if config_text is not None:
        config = os.path.join(tmp, "lambdad.toml")
        Path(config).write_text(config_text)
    return DaemonProcess(
        socket=os.path.join(tmp, "lambdad.sock"),
        state_dir=os.path.join(tmp, "state"),
        config=config,
        log_path=os.path.join(tmp, "daemon.log"),
        extra_args=extra_args or [],
    )


# Fast retries and freezing so the async and idle tests take seconds, not minutes.
TEST_CONFIG = """
[daemon]
pool_size = 2
async_retry_delays_s = [0.05, 0.1]
queue_timeout_s = 0.5
"""


def running_daemon(config_text: str = TEST_CONFIG) -> Iterator[DaemonProcess]:
    """A started daemon in a temporary directory, stopped (SIGTERM) afterwards."""
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, config_text)
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A fresh daemon for one test (its own socket and state)."""
    yield from running_daemon()


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[DaemonProcess]:
    """One daemon for a whole test module (tests must use their own function names)."""
    yield from running_daemon()


def write_function(directory: Path, source: str, module: str = "app") -> Path:
    """Write a one-file function into ``directory`` and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(source)
    return directory


SYSTEM_PACKAGES = ROOT / "scripts" / "system-packages"
# Pure logic, runnable anywhere (`make unit`): they need no host tool.
NO_HOST_TOOLS = ("tests/protocol/", "tests/lambdad/")
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def system_packages() -> list[tuple[str, str]]:
    """(package, command) of every line of scripts/system-packages, the one list."""
    rows = []
    for line in SYSTEM_PACKAGES.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            rows.append((fields[0], fields[1]))
    return rows


def missing_host_tools() -> list[tuple[str, str]]:
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return [(pkg, cmd) for pkg, cmd in system_packages() if shutil.which(cmd, path=search) is None]


def check_host_tools(items: list[pytest.Item]) -> None:
    """Fail the run at once, before any test, if a test that needs the host's tools was
    collected and one of them is missing: one clear line, not a traceback per test, and
    never a skip (a missing tool must not look like a pass)."""
    if all(item.nodeid.startswith(NO_HOST_TOOLS) for item in items):
        return
    missing = missing_host_tools()
    if missing:
        tools = ", ".join(f"{cmd} (package {pkg})" for pkg, cmd in missing)
        packages = " ".join(pkg for pkg, _ in missing)
        pytest.exit(
            f"the test suite needs {tools}; run `make test` (it installs it) or "
            f"`apt-get install {packages}`",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    check_host_tools(items)
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (real namespaces, cgroups, seccomp)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
