"""``lambdad deploy --template`` against the real daemon: the example SAM app deploys, serves
its route and fires its schedule; re-deploying is idempotent; --prune removes what the template
dropped; unsupported resources are refused in one message."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, ROOT, DaemonProcess, wait_for
from tests.triggers.test_gateway import request


def cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdad", *args, "--socket", d.socket],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def stored_events(state_dir: str, function: str) -> int:
    db = sqlite3.connect(os.path.join(state_dir, "events.sqlite3"))
    try:
        return int(
            db.execute("SELECT count(*) FROM events WHERE function=?", (function,)).fetchone()[0]
        )
    finally:
        db.close()


def test_example_sam_app(gw_daemon: DaemonProcess, tmp_path: Path) -> None:
    app = tmp_path / "sam-app"
    shutil.copytree(EXAMPLES / "sam-app", app)
    template = str(app / "template.yaml")
    args = [
        "deploy",
        "--template",
        template,
        "--param",
        "Stage=t",
        "--param",
        "TickSchedule=rate(1 second)",
    ]
    r = cli(gw_daemon, *args)
    assert r.returncode == 0, r.stderr
    assert "function hello-t: deployed" in r.stdout and "trigger tick-t-Every: created" in r.stdout
    with gw_daemon.client() as c:
        address = c.stats()["gateway_address"]
        triggers = {t["name"]: t for t in c.trigger_list()}
        assert triggers["hello-t-Hello"]["settings"]["route"] == "GET /hello/{name}"
        assert c.get("hello-t")["env"] == {"STAGE": "t"}
    status, headers, body = request(address, "GET", "/hello/ada?greeting=Hi")
    assert status == 200, body
    assert json.loads(body) == {"message": "Hi, ada!", "route": "GET /hello/{name}"}
    assert headers["set-cookie"] == ["last_name=ada; Path=/"]
    wait_for(lambda: stored_events(gw_daemon.state_dir, "tick-t") >= 2, timeout=60)
    # Idempotent.
    r = cli(gw_daemon, *args)
    assert r.returncode == 0, r.stderr
    assert "deployed" not in r.stdout and "created" not in r.stdout, r.stdout
    assert r.stdout.count("unchanged") == 4
    # Drop the scheduled function: kept without --prune, removed with it.
    text = (app / "template.yaml").read_text()
    (app / "template.yaml").write_text(text[: text.index("  TickFunction:")])
    r = cli(gw_daemon, *args)
    assert "tick-t: no longer in the template" in r.stdout
    r = cli(gw_daemon, *args, "--prune")
    assert r.returncode == 0, r.stderr
    assert "function tick-t: removed (--prune)" in r.stdout
    assert "trigger tick-t-Every: removed (--prune)" in r.stdout
    with gw_daemon.client() as c:
        assert "tick-t" not in {f["name"] for f in c.list()}


def test_unsupported_template_is_refused_in_one_message(
    gw_daemon: DaemonProcess, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(e, c):\n    return e\n")
    (tmp_path / "template.yaml").write_text("""
Transform: AWS::Serverless-2016-10-31
Resources:
  Bucket:
    Type: AWS::DynamoDB::Table
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Runtime: nodejs20.x
      Tracing: Active
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt Bucket.Arn}
""")
    r = cli(gw_daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert r.returncode == 2
    for reason in (
        "Bucket: resource type AWS::DynamoDB::Table is not supported",
        "Fn: runtime 'nodejs20.x' is not supported",
        "Fn: property Tracing is not supported",
        "Fn.Events.Q: event type SQS is not supported",
        "!GetAtt Bucket.Arn does not resolve locally",
    ):
        assert reason in r.stderr, r.stderr
    with gw_daemon.client() as c:
        assert "Fn" not in {f["name"] for f in c.list()}
