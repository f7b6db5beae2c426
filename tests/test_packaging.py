"""The repository's set-up pieces: the systemd unit, the example config, the Makefile targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lambdad import config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_parses_with_every_setting() -> None:
    cfg = config.load(str(ROOT / "systemd" / "lambdad.toml"))
    assert cfg.strict and cfg.socket_path == "/run/lambdad/lambdad.sock"
    text = (ROOT / "systemd" / "lambdad.toml").read_text()
    for field in config.DaemonConfig.__dataclass_fields__:
        if field not in ("max_frame_bytes", "sync_payload_max", "async_payload_max"):
            assert f"\n{field} =" in text, f"{field} missing from systemd/lambdad.toml"


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\npool_sise = 3\n")
    with pytest.raises(Exception, match="pool_sise"):
        config.load(str(bad))


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "lambdad.service").read_text()
    unit = unit.replace(
        "/opt/lambdad/.venv/bin/lambdad", str(Path(sys.executable).parent / "lambdad")
    )
    path = tmp_path / "lambdad.service"
    path.write_text(unit)
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    problems = [line for line in out.stderr.splitlines() if "lambdad.service" in line]
    assert problems == [], out.stderr
    assert "Delegate=yes" in unit


def test_ci_runs_make_test() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
