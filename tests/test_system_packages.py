"""The one list of system packages (scripts/system-packages) and what uses it: the installer
the Makefile runs, the Makefile's stamp, and the test session's check."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import egress
from tests.conftest import ROOT, system_packages

INSTALLER = ROOT / "scripts" / "install-system-packages"
ABSENT = "lambdad-test-no-such-package"
# Records each call instead of touching the machine's packages (the logic under test is the
# installer's: what it asks apt for, and when).
FAKE_APT = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/apt.calls"\n'


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory every user can read (pytest's tmp_path is root's alone), with a fake
    apt-get in bin/ and the installer copied beside it."""
    with tempfile.TemporaryDirectory(prefix="lambdad-pkgs-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        (base / "bin").mkdir(mode=0o777)
        apt = base / "bin" / "apt-get"
        apt.write_text(FAKE_APT)
        apt.chmod(0o755)
        (base / "bin").chmod(0o777)
        script = base / "install-system-packages"
        script.write_bytes(INSTALLER.read_bytes())
        script.chmod(0o755)
        yield base


def install(world: Path, lines: str, scope: str = "test", *, user: str | None = None
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    listing = world / "list"
    listing.write_text(lines)
    listing.chmod(0o644)
    cmd = [str(world / "install-system-packages"), scope, str(listing)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    env = {**os.environ, "PATH": f"{world / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def apt_calls(world: Path) -> list[str]:
    calls = world / "bin" / "apt.calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_the_list_has_what_the_code_runs() -> None:
    rows = dict((cmd, pkg) for pkg, cmd in system_packages())
    assert rows["nft"] == egress.NFT_PACKAGE == "nftables"  # what the daemon's message says
    assert rows["ip"] == "iproute2" and rows["systemd-analyze"] == "systemd"
    needed = {line.split()[0]: line.split()[2] for line in (ROOT / "scripts" / "system-packages")
              .read_text().splitlines() if line and not line.startswith("#")}  # fmt: skip
    assert needed["nftables"] == "run"  # make run installs it too
    assert set(needed.values()) == {"run", "test"}


def test_nothing_missing_means_apt_is_not_touched(world: Path) -> None:
    out = install(world, "# comment\n\nbash  bash  run  the shell\n")
    assert out.returncode == 0, out.stderr
    assert apt_calls(world) == [] and out.stderr == ""


def test_as_root_exactly_the_missing_ones_are_installed_after_one_update(world: Path) -> None:
    out = install(world, f"bash bash run x\n{ABSENT} nope test y\n{ABSENT}-2 nope2 run z\n")
    assert out.returncode == 0, out.stderr
    assert apt_calls(world) == [
        "update -qq",
        f"install -y -qq --no-install-recommends {ABSENT} {ABSENT}-2",
    ]
    assert f"lambdad needs {ABSENT} (for nope), which is not installed" in out.stderr


def test_run_scope_leaves_out_what_only_the_tests_need(world: Path) -> None:
    out = install(world, f"{ABSENT} nope test only-tests\n", scope="run")
    assert out.returncode == 0 and apt_calls(world) == []


@pytest.mark.root
def test_not_root_prints_the_one_command_and_fails(world: Path) -> None:
    out = install(world, f"bash bash run x\n{ABSENT} nope run y\n", user="65534")
    assert out.returncode == 1
    assert f"    apt-get install -y {ABSENT}\n" in out.stderr
    assert apt_calls(world) == []


def test_make_uses_a_stamp_so_a_second_run_does_not_touch_apt(world: Path) -> None:
    (world / "list").write_text(f"{ABSENT} nope test y\n")
    env = {**os.environ, "PATH": f"{world / 'bin'}:{os.environ['PATH']}"}
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={world / 'venv'}",
            f"SYSTEM_PACKAGES={world / 'list'}", "system-packages"]  # fmt: skip
    first = subprocess.run(make, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    assert len(apt_calls(world)) == 2 and (world / "venv" / ".system-test-stamp").exists()
    second = subprocess.run(make, capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 0 and "Nothing to be done" in second.stdout
    assert len(apt_calls(world)) == 2


@pytest.mark.root
def test_the_suite_refuses_to_run_without_a_listed_tool(tmp_path: Path) -> None:
    """In a mount namespace where nft is not executable, pytest stops before any test with
    the one line that says what to do; pure-logic tests still run there."""
    hide = ('IFS=:; for d in $PATH /usr/local/sbin /usr/sbin /sbin; do'
            ' if [ -x "$d/nft" ]; then mount --bind /dev/null "$d/nft" || exit 1; fi; done;'
            ' exec "$@"')  # fmt: skip
    pytest_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    base = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh"]
    out = subprocess.run([*base, *pytest_cmd, "tests/test_packaging.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert (
        "the test suite needs nft (package nftables); run `make test` (it installs it) or "
        "`apt-get install nftables`"
    ) in out.stdout + out.stderr
    assert "passed" not in out.stdout and "skipped" not in out.stdout
    unit = subprocess.run([*base, *pytest_cmd, "tests/lambdad/test_errors.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_installer_is_executable() -> None:
    assert INSTALLER.stat().st_mode & stat.S_IXUSR


def test_the_makefile_names_the_packages_it_installs() -> None:
    """The Makefile's comment lists what `make` installs, in the list's order: a reader of the
    Makefile (and the project's before-stop check) sees every package without opening the
    list, and the comment cannot drift from it."""
    line = next(
        text for text in (ROOT / "Makefile").read_text().splitlines()
        if text.startswith("# installs: ")
    )  # fmt: skip
    named = line.removeprefix("# installs: ").split()
    listed = [package for package, _ in system_packages()]
    assert named == listed
