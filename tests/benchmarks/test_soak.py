"""The soak's short form (issue 13 point 8): 20 s of the mixed load, end to end, without
timing assertions — zero unexpected outcomes, every accepted async event ran, every
invocation has its REPORT (see ``benchmarks/soak.py`` for the kinds tolerated for now), the
RSS series and its plot exist. The long form is ``python -m benchmarks --only soak``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_short_soak_has_no_unexpected_outcome(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "soak", "--minutes", "0.33",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    soak = doc["soak"]
    assert "error" not in soak, soak.get("error")
    assert soak["daemon_alive"]
    assert soak["unexpected"] == 0, soak["unexpected_examples"]
    # Every kind of the mix ran (20 s at this weighting makes each near certain).
    for kind in ("warm", "cold", "handled", "timeout", "crash", "oom", "flood", "async"):
        assert soak["invocations"].get(kind, 0) > 0, soak["invocations"]
    assert soak["async_accepted"] > 0
    assert soak["async_ran"] == soak["async_accepted"]
    assert soak["async_counts"]["dead"] == 0
    assert soak["reports_expected"] > 0 and soak["reports_missing"] == 0, soak
    assert len(soak["samples"]) >= 5
    assert all(s["rss_mb"] > 0 and s["fds"] > 0 for s in soak["samples"])
    assert Path(soak["plot"]).stat().st_size > 0
    assert not doc["problems"], doc["problems"]
