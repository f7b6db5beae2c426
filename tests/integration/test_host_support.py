"""Missing protections: reported at start, one line each; --strict refuses to start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, DaemonProcess, make_daemon, write_function

STATUS = (
    "def handler(event, context):\n"
    "    lines = open('/proc/self/status').read().splitlines()\n"
    "    return {l.split(':')[0]: l.split(':')[1].strip() for l in lines if ':' in l}\n"
)


@pytest.fixture
def no_seccomp_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = make_daemon(str(tmp_path), '[daemon]\ndisable_isolation = ["seccomp"]\n')
    d.start()
    yield d
    d.stop()


def test_disabled_mechanism_is_reported_and_really_off(
    no_seccomp_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with no_seccomp_daemon.client() as c:
        assert "seccomp: disabled by configuration" in c.stats()["missing"]
        c.deploy("status", write_function(tmp_path / "status", STATUS))
        status = c.invoke("status").result
    assert status["Seccomp"] == "0"
    assert status["CapEff"] == "0000000000000000"  # the rest still applies
    assert "WARNING: seccomp: disabled by configuration" in no_seccomp_daemon.output()


@pytest.mark.root
def test_full_isolation_reports_nothing_missing(
    shared_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with shared_daemon.client() as c:
        assert c.stats()["missing"] == []
        c.deploy("status-full", write_function(tmp_path / "status", STATUS))
        status = c.invoke("status-full").result
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1"


def test_strict_refuses_to_start_without_every_protection(tmp_path: Path) -> None:
    config = tmp_path / "strict.toml"
    config.write_text('[daemon]\ndisable_isolation = ["seccomp"]\n')
    out = subprocess.run(
        [sys.executable, "-m", "lambdad", "serve", "--strict", "--config", str(config),
         "--socket", str(tmp_path / "s.sock"), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "--strict: refusing to start" in out.stderr and "seccomp" in out.stderr
    assert not (tmp_path / "s.sock").exists()


@pytest.mark.root
def test_probe_as_an_unprivileged_user_lists_what_is_off() -> None:
    """Run the host probe in a child that dropped to nobody: it must not raise, and must say
    which protections are off (the user-namespace fallback, no cgroups, no per-sandbox uid)."""
    from sandbox import host, seccomp  # imported while the interpreter's files are readable

    assert seccomp
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            support = host.probe("lambdad-probe-test")
            os.write(w, ("\n".join(support.missing) + f"\nNS={support.isolation.namespaces}"
                         f" CRED={support.isolation.credentials}").encode())  # fmt: skip
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    assert "not root" in text
    assert "no cgroups" in text
    assert "CRED=False" in text
