"""``python -m benchmarks --quick`` runs end to end and writes well-formed output.

No timing assertions: SPEC §10's figures are measured by ``make bench``, never by a test. This
checks the shape — every scenario ran, every SPEC §10 target and every peer has a row in the
JSON and in the markdown, the plots exist — which is what breaks when the harness or the
daemon's client API drifts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.peers import PEERS

ROOT = Path(__file__).resolve().parent.parent.parent
SCENARIOS = ("peers", "cold", "warm", "http", "gateway", "metering", "throughput", "scale")
PLOTS = ("cold_latency.png", "warm_latency.png", "throughput.png", "scale_out.png")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench-quick")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]


def test_json_has_every_scenario(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    doc = json.loads((out / "latest.json").read_text())
    for key in ("meta", "targets", "problems", "plots", *SCENARIOS):
        assert key in doc, f"latest.json lacks {key!r}"
    errors = {s: doc[s]["error"] for s in SCENARIOS if "error" in doc[s]}
    assert not errors, f"scenarios failed: {errors}"
    meta = doc["meta"]
    assert meta["quick"] is True
    for key in ("cpu", "cores", "kernel", "python"):
        assert meta["machine"][key]
    for mode in ("pool_ready", "pool_empty", "force_cold"):
        assert doc["cold"][mode]["latency_ms"]["n"] > 0
        assert doc["cold"][mode]["phases_us"]
    assert doc["warm"]["lambdad_us"]["n"] == doc["warm"]["relay_us"]["n"] > 0
    assert {(p["connections"], p["depth"]) for p in doc["throughput"]["points"]}
    assert doc["scale"]["density"]["warm_sandboxes"] > 0
    assert len(doc["metering"]["cases"]) == 4
    http = doc["http"]
    assert http["warm_us"]["msgpack"]["n"] > 0 and http["cold_ms"]["msgpack"]["n"] > 0
    for part, warm, cold in (("api", "http", "http"), ("serverless_offline",
                                                       "serverless_offline", None)):  # fmt: skip
        status = http[part]["status"]
        assert status == "ok" or status.startswith(("skipped: ", "failed: ")), status
        measured = http["warm_us"][warm] is not None
        assert measured == (status == "ok"), (part, status)
        if cold is not None:
            assert (http["cold_ms"][cold] is not None) == (status == "ok"), (part, status)


def test_a_row_for_every_target(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    doc = json.loads((out / "latest.json").read_text())
    expected = [t.figure for t in report.targets({})]
    assert [t["figure"] for t in doc["targets"]] == expected
    markdown = (out / "latest.md").read_text()
    for row in doc["targets"]:
        assert set(row) == {"figure", "target", "measured", "baseline", "met", "ratio"}
        # Every target was measured, except a part of the http or gateway scenario that says
        # why not (no Lambda API Invoke, no serverless-offline or uvicorn installed).
        skipped = row["measured"].startswith(("skipped: ", "failed: "))
        informative = row["target"] == report.NO_TARGET
        assert row["met"] in (True, False) or (row["met"] is None and (skipped or informative)), row
        assert row["measured"] and row["baseline"]
        figure = row["figure"].replace("|", "\\|")
        assert f"| {figure} | {row['target']} |" in markdown
        assert row["figure"] in stdout  # the printed summary


def test_a_row_for_every_peer(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    doc = json.loads((out / "latest.json").read_text())
    markdown = (out / "latest.md").read_text()
    assert list(doc["peers"]) == [p.name for p in PEERS]
    for peer in PEERS:
        result = doc["peers"][peer.name]
        status = result["status"]
        assert status == "ok" or status.startswith(("skipped: ", "failed: ")), status
        if status == "ok":
            assert result["latency_ms"]["n"] > 0
        assert f"| {peer.name} | " in markdown
        assert f"  {peer.name} " in stdout


def test_the_http_scenario_has_its_table(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    markdown = (out / "latest.md").read_text()
    assert "## Invoke over HTTP (Lambda API) vs msgpack vs serverless-offline" in markdown
    for path in ("lambdad, msgpack (Unix socket)", "lambdad, Lambda API over HTTP",
                 "serverless-offline ("):  # fmt: skip
        assert f"| {path}" in markdown, path
    for label in ("msgpack ", "HTTP ", "serverless-offline "):
        assert f"    {label}" in stdout, label


def test_plots_are_pngs(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    doc = json.loads((out / "latest.json").read_text())
    assert sorted(doc["plots"]) == sorted(PLOTS)
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_the_gateway_scenario_has_its_table(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    doc = json.loads((out / "latest.json").read_text())
    assert doc["gateway"]["warm_us"]["gateway"]["n"] > 0
    assert doc["gateway"]["rate"]["gateway"]["responses"] > 0
    markdown = (out / "latest.md").read_text()
    assert "## HTTP gateway vs uvicorn+Starlette vs serverless-offline httpApi" in markdown
    for label in ("lambdad gateway ", "uvicorn+Starlette ", "serverless-offline "):
        assert f"    {label}" in stdout, label
