"""Counters survive restarts (issue 13, point 7): per-minute roll-ups per function, persisted,
served by ``stats --since`` (client, socket op, CLI) and behind Prometheus counters that
continue across a restart — a graceful one or a SIGKILL."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdad.errors import InvalidParameterValue, ResourceNotFound, TooManyRequests
from lambdad.rollups import COUNTERS, Delta, RollupStore
from tests.conftest import (
    ROOT,
    TEST_CONFIG,
    DaemonProcess,
    make_daemon,
    wait_for,
    write_function,
)

HANDLER = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return "ok"
"""
CONFIG = TEST_CONFIG + 'metrics_address = "127.0.0.1:0"\n'


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, CONFIG)
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def scrape(d: DaemonProcess, family: str, function: str) -> float:
    with d.client() as c:
        address = c.stats()["metrics_address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as r:
        text = r.read().decode()
    m = re.search(rf'^{family}{{function="{function}"}} ([0-9.e+]+)$', text, re.M)
    assert m, f"{family} for {function} not in:\n{text}"
    return float(m.group(1))


def test_counts_survive_a_restart_and_a_sigkill(daemon: DaemonProcess, tmp_path: Path) -> None:
    code = write_function(tmp_path / "fn", HANDLER)
    with daemon.client() as c:
        c.deploy("counted", code, concurrency=1)
        for i in range(6):
            c.invoke("counted", {"fail": i % 3 == 0})  # 2 of the 6 fail

        # One throttle: the only concurrency slot is busy for a second.
        def sleep_a_second() -> None:
            with daemon.client() as other:
                other.invoke("counted", {"sleep": 1})

        busy = threading.Thread(target=sleep_a_second)
        busy.start()
        try:
            wait_for(lambda: c.stats("counted")["concurrent"] == 1)
            with pytest.raises(TooManyRequests):
                c.invoke("counted", {})
        finally:
            busy.join()
        total = c.stats_since(3600, "counted")["functions"]["counted"]["total"]
        assert {k: total[k] for k in COUNTERS} == {
            "invocations": 7, "errors": 2, "throttles": 1, "cold_starts": 1,
        }  # fmt: skip
        assert 1000 <= total["duration_ms"]["p99"] <= 1000 * 1.1  # the 1 s one, to a bucket
        assert total["gb_seconds"] > 0
    assert scrape(daemon, "lambdad_invocations_total", "counted") == 7

    daemon.restart()  # graceful
    with daemon.client() as c:
        stats = c.stats("counted")
        assert (stats["invocations"], stats["errors"], stats["throttles"]) == (7, 2, 1)
        history = c.stats_since(3600)["functions"]["counted"]
        assert history["total"]["invocations"] == 7
        assert sum(m["invocations"] for m in history["minutes"]) == 7
        c.invoke("counted", {})
    assert scrape(daemon, "lambdad_invocations_total", "counted") == 8
    assert scrape(daemon, "lambdad_errors_total", "counted") == 2

    with daemon.client() as c:
        c.invoke("counted", {"fail": True})
        c.stats_since(60)  # a query flushes: what it shows is on disk
    daemon.stop(signal.SIGKILL)
    daemon.start()
    with daemon.client() as c:
        stats = c.stats("counted")
        assert (stats["invocations"], stats["errors"]) == (9, 3)
        assert c.stats_since(3600, "counted")["functions"]["counted"]["total"]["errors"] == 3


def test_retention_drops_old_minutes(tmp_path: Path) -> None:
    """Minutes past ``rollup_retention_s`` go, and never more than ``rollup_max_rows``."""
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, CONFIG + "rollup_retention_s = 7200\nrollup_max_rows = 100\n")
        d.start()
        with d.client() as c:
            c.deploy("kept", write_function(tmp_path / "fn", HANDLER))
        d.stop()
        # History as a long-running daemon would have written it: one row a minute for
        # three hours, for one function.
        store = RollupStore(str(Path(d.state_dir) / "rollups.sqlite3"))
        store.open()
        now = int(time.time() // 60 * 60)
        for age in range(1, 181):
            delta = Delta(counters=dict.fromkeys(COUNTERS, 0) | {"invocations": 1})
            store.add(now - age * 60, {"kept": delta})
        store.close()
        d.start()
        try:
            with d.client() as c:
                minutes = c.stats_since(24 * 3600, "kept")["functions"]["kept"]["minutes"]
                # 2 hours are kept, but only the newest 100 rows fit.
                assert len(minutes) == 100
                assert min(m["minute"] for m in minutes) == now - 100 * 60
                # The totals are not history: they keep every invocation ever counted.
                assert c.stats("kept")["invocations"] == 180
                with pytest.raises(InvalidParameterValue, match="positive number of seconds"):
                    c.stats_since(-5)
                with pytest.raises(ResourceNotFound):
                    c.stats_since(60, "nope")
        finally:
            d.stop()


def test_the_cli_shows_the_history(daemon: DaemonProcess, tmp_path: Path) -> None:
    with daemon.client() as c:
        c.deploy("cli-hist", write_function(tmp_path / "fn", HANDLER))
        c.invoke("cli-hist", {})
    cli = [sys.executable, "-m", "lambdad", "stats", "--socket", daemon.socket]
    out = subprocess.run(
        [*cli, "cli-hist", "--since", "1h"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["functions"]["cli-hist"]["total"]["invocations"] == 1
    bad = subprocess.run(
        [*cli, "--since", "soon"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
