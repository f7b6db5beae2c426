"""Schedules and the trigger model against the real daemon: fires into the durable store,
exactly once per scheduled time across kill -9, catch-up; CLI, persistence, deleted functions,
counters in stats and Prometheus."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from lambdad.errors import ResourceNotFound
from tests.conftest import ROOT, TEST_CONFIG, make_daemon, wait_for, write_function

NOOP = "def handler(event, context):\n    return event\n"


def fires(state_dir: str, function: str) -> list[str]:
    """The scheduled times of the events stored for ``function`` (from their payloads)."""
    db = sqlite3.connect(os.path.join(state_dir, "events.sqlite3"))
    try:
        rows = db.execute("SELECT payload FROM events WHERE function=?", (function,)).fetchall()
    finally:
        db.close()
    return sorted(json.loads(bytes(r[0]))["time"] for r in rows)


def states(state_dir: str, function: str) -> set[str]:
    db = sqlite3.connect(os.path.join(state_dir, "events.sqlite3"))
    try:
        rows = db.execute("SELECT state FROM events WHERE function=?", (function,)).fetchall()
    finally:
        db.close()
    return {r[0] for r in rows}


def cli(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdad", *args, "--socket", socket],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_schedule_fires_exactly_once_per_time_across_kill_9(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG + 'metrics_address = "127.0.0.1:0"\n')
        d.start()
        try:
            with d.client() as c:
                c.deploy("tick", str(write_function(tmp_path / "tick", NOOP)))
                t = c.trigger_add(
                    "schedule", "every-second", "tick", expression="rate(1 second)", catch_up="all"
                )
                assert t["next_fire"] is not None
            wait_for(lambda: len(fires(d.state_dir, "tick")) >= 3, timeout=60)
            # The events ran (async worker) and carry EventBridge's shape.
            with d.client() as c:
                wait_for(lambda: c.stats()["async"]["done"] >= 2, timeout=60)
            db = sqlite3.connect(os.path.join(d.state_dir, "events.sqlite3"))
            payload = json.loads(bytes(db.execute("SELECT payload FROM events").fetchone()[0]))
            db.close()
            assert payload["detail-type"] == "Scheduled Event"
            assert payload["source"] == "aws.events" and payload["detail"] == {}
            assert payload["resources"] == [
                "arn:aws:events:us-east-1:000000000000:rule/every-second"
            ]
            assert payload["time"].endswith("Z") and payload["version"] == "0"
            assert d.proc is not None
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(30)
            before = fires(d.state_dir, "tick")
            d.start()
            wait_for(lambda: len(fires(d.state_dir, "tick")) >= len(before) + 3, timeout=60)
            with d.client() as c:
                stats = c.stats()
                counters = stats["triggers"]["every-second"]
                assert counters["received"] >= 1 and counters["lag_ms"] is not None
                metrics_address = stats["metrics_address"]
            text = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=30).read()
            assert b'lambdad_trigger_received_total{kind="schedule",trigger="every-second"}' in text
        finally:
            d.stop()
        # Nothing lost: every stored event ran (the ones running at the kill ran again).
        d.start()
        try:
            wait_for(lambda: states(d.state_dir, "tick") == {"done"}, timeout=60)
        finally:
            d.stop()
        times = fires(d.state_dir, "tick")
        # Exactly one event per scheduled second: no duplicates, and (catch_up = all) no gaps
        # across the kill.
        assert len(times) == len(set(times))
        from datetime import datetime

        secs = [int(datetime.strptime(x, "%Y-%m-%dT%H:%M:%SZ").timestamp()) for x in times]
        assert secs == list(range(secs[0], secs[0] + len(secs))), times


def test_trigger_model_cli_persistence_and_deleted_function(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG)
        d.start()
        try:
            with d.client() as c:
                c.deploy("fn", str(write_function(tmp_path / "fn", NOOP)))
            r = cli(
                d.socket,
                "trigger",
                "add",
                "schedule",
                "nightly",
                "fn",
                "--expression",
                "cron(0 3 * * ? *)",
                "--timezone",
                "Europe/Paris",
                "--json",
            )
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["settings"]["timezone"] == "Europe/Paris"
            r = cli(
                d.socket,
                "trigger",
                "add",
                "schedule",
                "bad",
                "fn",
                "--expression",
                "cron(0 3 * * * *)",
            )
            assert r.returncode != 0 and "at position 9" in r.stderr
            r = cli(d.socket, "trigger", "add", "http", "web", "fn", "--route", "GET /x")
            assert r.returncode == 0, r.stderr
            r = cli(d.socket, "trigger", "add", "http", "ghost", "nope", "--route", "GET /y")
            assert r.returncode != 0 and "ResourceNotFound" in r.stderr
            assert cli(d.socket, "trigger", "disable", "web").returncode == 0
            ls = json.loads(cli(d.socket, "trigger", "ls", "--json").stdout)
            assert {t["name"]: t["enabled"] for t in ls} == {"nightly": True, "web": False}
            d.restart()  # persisted
            with d.client() as c:
                names = {t["name"]: t for t in c.trigger_list(function="fn")}
                assert set(names) == {"nightly", "web"} and names["web"]["enabled"] is False
                assert names["nightly"]["next_fire"].endswith("Z")
                c.delete("fn")
                after = {t["name"]: t for t in c.trigger_list()}
                assert after["nightly"]["enabled"] is False
                assert after["nightly"]["disabled_reason"] == "function 'fn' was deleted"
                with pytest.raises(ResourceNotFound):
                    c.trigger_enable("nightly")
                c.trigger_delete("web")
                assert [t["name"] for t in c.trigger_list()] == ["nightly"]
            r = cli(d.socket, "trigger", "rm", "web")
            assert r.returncode != 0 and "no trigger named 'web'" in r.stderr
        finally:
            d.stop()


SLOW = "import time\ndef handler(event, context):\n    time.sleep(2)\n    return None\n"


@pytest.mark.parametrize(("catch_up", "expected"), [("none", 0), ("last", 1), ("all", 10)])
def test_missed_fires_follow_catch_up(tmp_path: Path, catch_up: str, expected: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG)
        d.start()
        try:
            with d.client() as c:
                c.deploy("hourly", str(write_function(tmp_path / "hourly", NOOP)))
                c.trigger_add(
                    "schedule", "h", "hourly", expression="rate(1 hour)", catch_up=catch_up
                )
            d.stop()
            # As if the daemon had been down for the last ten hours' fires.
            record = Path(d.state_dir) / "triggers" / "h.json"
            doc = json.loads(record.read_text())
            now = time.time()
            doc["created"] = doc["last_fire"] = now - now % 3600 - 10 * 3600 - 1
            record.write_text(json.dumps(doc))
            d.start()
            with d.client() as c:
                if expected:
                    wait_for(lambda: c.trigger_list()[0]["counters"]["invoked"] == expected)
                t = c.trigger_list()[0]
                assert t["counters"]["invoked"] == expected
            assert len(fires(d.state_dir, "hourly")) == expected
        finally:
            d.stop()


def test_overlap_skip_does_not_pile_up(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lambdad-test-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG)
        d.start()
        try:
            with d.client() as c:
                c.deploy("slow", str(write_function(tmp_path / "slow", SLOW)), timeout_s=10)
                c.trigger_add("schedule", "s", "slow", expression="rate(1 second)", overlap="skip")
                wait_for(lambda: c.trigger_list()[0]["counters"]["received"] >= 4, timeout=60)
                t = c.trigger_list()[0]
            # The run takes 2 s and a fire comes every second: every other fire is skipped.
            assert t["counters"]["invoked"] < t["counters"]["received"]
            assert "the previous run is going" in t["counters"]["last_error"]
        finally:
            d.stop()
