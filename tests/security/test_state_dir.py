"""The state directory as a local, non-admin user meets it (issue 12, points 7 and 9).

Attacks: read another tenant's logs and queued async payloads from the file system, and start a
second daemon on a running daemon's state directory (whose start-up clean-up used to reap the
first one's sandboxes).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lambdad.testing import wait_for
from tests.conftest import make_daemon, write_function

pytestmark = pytest.mark.root

SHARED = ("code", "rootfs", "layers")  # read by sandboxes (other uids) through mounts


def _private_violations(root: str) -> list[str]:
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in SHARED]
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                bad.append(f"{path} {stat.S_IMODE(st.st_mode):04o}")
    return bad


def test_logs_payloads_and_records_are_private_to_the_daemon(tmp_path):
    d = make_daemon(str(tmp_path))
    d.start()
    try:
        code = write_function(tmp_path / "fn", "def handler(e, c):\n    print('SECRET', e)\n")
        with d.client() as c:
            c.deploy("private", str(code), env={"API_KEY": "hunter2"})
            c.invoke("private", {"n": 1})
            c.invoke("private", {"n": 2}, type="async")
            wait_for(lambda: c.stats("private")["invocations"] >= 2)
        wait_for(lambda: any(Path(d.state_dir, "logs").rglob("*")))
        assert stat.S_IMODE(os.stat(d.state_dir).st_mode) == 0o700
        assert _private_violations(d.state_dir) == []
    finally:
        d.stop()


def test_a_world_readable_state_directory_is_fixed_at_start_and_said(tmp_path):
    d = make_daemon(str(tmp_path))
    os.makedirs(os.path.join(d.state_dir, "logs"))
    leaked = Path(d.state_dir, "logs", "old.log")
    leaked.write_text("a tenant's line\n")
    os.chmod(d.state_dir, 0o755)
    os.chmod(leaked, 0o644)
    d.start()
    try:
        assert stat.S_IMODE(os.stat(d.state_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(leaked).st_mode) == 0o600
        assert "old.log: mode 0644 -> 0600" in d.output()
    finally:
        d.stop()


def test_a_second_daemon_on_the_same_state_directory_is_refused_and_harms_nothing(tmp_path):
    first = make_daemon(str(tmp_path))
    first.start()
    try:
        code = write_function(tmp_path / "fn", "def handler(e, c):\n    return 'alive'\n")
        with first.client() as c:
            c.deploy("warm", str(code))
            before = c.invoke("warm", {})
            assert before.result == "alive"
        with tempfile.TemporaryDirectory() as other:
            second = subprocess.run(
                [sys.executable, "-m", "lambdad", "serve", "--socket",
                 os.path.join(other, "second.sock"), "--state-dir", first.state_dir],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        assert second.returncode != 0
        assert first.proc is not None
        assert f"is in use by lambdad pid {first.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        with first.client() as c:
            after = c.invoke("warm", {})
        # The same warm sandbox still serves: the second daemon reaped nothing.
        assert after.result == "alive" and not after.report.cold
    finally:
        first.stop()
