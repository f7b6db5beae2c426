"""`make install` / `make uninstall` into a temporary DESTDIR: every file, the unit verified,
and the installed lambdad (not the source tree) serving a real invocation."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.client import Client
from lambdad.errors import LambdadError
from tests.conftest import ROOT, TEST_CONFIG, wait_for, write_function

PREFIX = "/opt/lambdad"
LIB = "usr/local/lib"
FILES = {  # installed path (below DESTDIR) -> source in the repository, or None
    f"{LIB}/systemd/system/lambdad.service": None,  # the unit, with PREFIX substituted
    f"{LIB}/sysusers.d/lambdad.conf": "systemd/lambdad.sysusers.conf",
    f"{LIB}/tmpfiles.d/lambdad.conf": "systemd/lambdad.tmpfiles.conf",
    "etc/lambdad/lambdad.toml": "systemd/lambdad.toml",
    "opt/lambdad/doc/README.md": "README.md",
    "opt/lambdad/doc/development.md": "docs/development.md",
    "opt/lambdad/.venv/bin/lambdad": None,
    "opt/lambdad/.venv/bin/python": None,
}


def make(target: str, destdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), target,
                           f"DESTDIR={destdir}"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    destdir = tmp_path_factory.mktemp("destdir")
    out = make("install", destdir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nothing done to the running system" in out.stdout
    yield destdir


def test_every_file_is_installed(staged: Path) -> None:
    for path, source in FILES.items():
        installed = staged / path
        assert installed.exists(), path
        if source is not None:
            assert installed.read_bytes() == (ROOT / source).read_bytes(), path
            assert installed.stat().st_mode & 0o777 == 0o644, path
    unit = (staged / LIB / "systemd/system/lambdad.service").read_text()
    assert f"ExecStart={PREFIX}/.venv/bin/lambdad serve --config /etc/lambdad/lambdad.toml" in unit
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "Delegate=yes" in unit


def test_the_venv_names_the_final_paths_not_destdir(staged: Path) -> None:
    venv = staged / "opt/lambdad/.venv"
    assert (venv / "bin/lambdad").read_text().startswith(f"#!{PREFIX}/.venv/bin/python\n")
    for f in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg"]:
        if f.is_file() and not f.is_symlink():
            assert str(staged) not in f.read_text(errors="replace"), f
    # The package itself is installed (not a link to this source tree).
    where = "import lambdad; print(lambdad.__file__)"
    out = subprocess.run([str(venv / "bin/python"), "-c", where], capture_output=True, text=True,
                         cwd="/", timeout=60)  # fmt: skip
    assert out.stdout.startswith(str(venv / "lib")), out.stdout + out.stderr


def test_installed_unit_verifies(staged: Path) -> None:
    """systemd-analyze verify runs an offline manager (no systemd needed); it checks that
    ExecStart= is executable on this host's paths, so point it at the staged binary."""
    unit = (staged / LIB / "systemd/system/lambdad.service").read_text()
    checked = staged / "lambdad.service"
    checked.write_text(unit.replace(f"{PREFIX}/", f"{staged}{PREFIX}/"))
    out = subprocess.run(["systemd-analyze", "verify", str(checked)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert [line for line in out.stderr.splitlines() if "lambdad.service" in line] == []


def test_installed_lambdad_serves(staged: Path, tmp_path: Path) -> None:
    python = staged / "opt/lambdad/.venv/bin/python"
    sock = tmp_path / "lambdad.sock"
    config = tmp_path / "lambdad.toml"
    config.write_text(TEST_CONFIG)
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(python), "-m", "lambdad", "serve", "--socket", str(sock),
                                 "--state-dir", str(tmp_path / "state"), "--config", str(config)],
                                stdout=out, stderr=out, cwd="/")  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or _answers(sock), 60)
        assert proc.poll() is None, log.read_text()
        with Client(str(sock), timeout=60) as c:
            c.deploy("installed", write_function(tmp_path / "fn", "def handler(e, c):\n  return 7"))
            assert c.invoke("installed").result == 7
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_reinstall_keeps_the_configuration_and_uninstall_removes_the_rest(staged: Path) -> None:
    toml = staged / "etc/lambdad/lambdad.toml"
    toml.write_text(toml.read_text() + "# edited by the administrator\n")
    out = make("install", staged)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kept the existing" in out.stdout
    assert toml.read_text().endswith("# edited by the administrator\n")
    out = make("uninstall", staged)
    assert out.returncode == 0, out.stdout + out.stderr
    left = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if not p.is_dir())
    assert left == ["etc/lambdad/lambdad.toml", "lambdad.service"], left  # config kept
    assert not (staged / "opt/lambdad").exists()


def _answers(sock: Path) -> bool:
    try:
        with Client(str(sock), timeout=5) as c:
            c.call("ping")
        return True
    except LambdadError:
        return False


def test_install_without_destdir_needs_root(tmp_path: Path) -> None:
    """Without DESTDIR, a non-root user is told to use root (or DESTDIR), before anything."""
    cmd = [str(ROOT / "scripts/install")]
    if os.geteuid() == 0:
        # As root it would really install; the refusal is the non-root path, run as nobody,
        # from a copy nobody can read (the clone may sit below a directory only root can).
        world = Path(tempfile.mkdtemp(prefix="lambdad-install-"))
        world.chmod(0o755)
        (world / "scripts").mkdir(mode=0o755)
        shutil.copy2(ROOT / "scripts/install", world / "scripts/install")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               str(world / "scripts/install")]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                             env={"PATH": os.defpath})  # fmt: skip
    finally:
        if os.geteuid() == 0:
            shutil.rmtree(world)
    assert out.returncode == 1, out.stderr
    assert "run it as root" in out.stderr and "DESTDIR=" in out.stderr
