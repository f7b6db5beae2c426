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
      Runtime: cobol85
      Tracing: Active
      Events:
        Q:
          Type: Kinesis
          Properties: {Stream: !GetAtt Bucket.Arn}
""")
    r = cli(gw_daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert r.returncode == 2
    for reason in (
        "Bucket: resource type AWS::DynamoDB::Table is not supported",
        "Fn: runtime 'cobol85' is not supported",
        "Fn: property Tracing is not supported",
        "Fn.Events.Q: event type Kinesis is not supported",
        "!GetAtt Bucket.Arn does not resolve locally",
    ):
        assert reason in r.stderr, r.stderr
    with gw_daemon.client() as c:
        assert "Fn" not in {f["name"] for f in c.list()}


LAYERED_APP = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      LayerName: sam-shared
      ContentUri: layer/
      CompatibleRuntimes: [python3.11]
  Dead:
    Type: AWS::SQS::Queue
    Properties: {QueueName: sam-dead}
  Work:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: sam-work
      VisibilityTimeout: 5
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dead.Arn, maxReceiveCount: 1}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: sam-worker
      CodeUri: worker/
      Handler: app.handler
      Runtime: python3.11
      Layers: [!Ref Shared]
      AutoPublishAlias: live
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
  Greeter:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: sam-node
      CodeUri: node/
      Handler: index.handler
      Runtime: nodejs20.x
"""


def test_layers_aliases_queues_and_sqs_events(gw_daemon: DaemonProcess, tmp_path: Path) -> None:
    (tmp_path / "layer" / "python").mkdir(parents=True)
    (tmp_path / "layer" / "python" / "shared.py").write_text("PREFIX = 'done:'\n")
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "app.py").write_text(
        "import shared\n\n"
        "def handler(event, context):\n"
        "    failures = []\n"
        "    for r in event['Records']:\n"
        "        if r['body'] == 'bad':\n"
        "            failures.append({'itemIdentifier': r['messageId']})\n"
        "        else:\n"
        "            print(shared.PREFIX + r['body'], context.invoked_function_arn)\n"
        "    return {'batchItemFailures': failures}\n"
    )
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "index.js").write_text("exports.handler = async (e) => ({hi: e.name});\n")
    (tmp_path / "template.yaml").write_text(LAYERED_APP)
    r = cli(gw_daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert r.returncode == 0, r.stderr
    for line in ("queue sam-dead: created", "queue sam-work: created",
                 "layer sam-shared: published (version 1)", "function sam-worker: deployed",
                 "alias sam-worker:live: created (version 1)", "trigger sam-worker-Jobs: created",
                 "function sam-node: deployed"):  # fmt: skip
        assert line in r.stdout, r.stdout
    with gw_daemon.client() as c:
        assert c.get("sam-worker")["layers"][0].endswith(":layer:sam-shared:1")
        (mapping,) = [m for m in c.list_mappings() if m["name"] == "sam-worker-Jobs"]
        assert (mapping["qualifier"], mapping["batch_size"]) == ("live", 5)
        assert c.invoke("sam-node", {"name": "Ada"}).result == {"hi": "Ada"}
        c.send_message("sam-work", "job-1")
        c.send_message("sam-work", "bad")
        wait_for(lambda: "done:job-1" in c.logs("sam-worker")[0], timeout=60)
        assert ":function:sam-worker:live" in c.logs("sam-worker")[0]
        wait_for(lambda: any(q["name"] == "sam-dead" and q["visible"] == 1
                             for q in c.list_queues()), timeout=60)  # fmt: skip
    # Idempotent: nothing new the second time.
    r = cli(gw_daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert r.returncode == 0, r.stderr
    assert "published" not in r.stdout and "created" not in r.stdout, r.stdout
    assert "deployed" not in r.stdout, r.stdout
    # A change to the layer: a new version, a new function version, the alias moved to it.
    (tmp_path / "layer" / "python" / "shared.py").write_text("PREFIX = 'v2:'\n")
    r = cli(gw_daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert r.returncode == 0, r.stderr
    assert "layer sam-shared: published (version 2)" in r.stdout, r.stdout
    assert "alias sam-worker:live: moved to version 2" in r.stdout, r.stdout
    with gw_daemon.client() as c:
        c.send_message("sam-work", "job-2")
        wait_for(lambda: "v2:job-2" in c.logs("sam-worker")[0], timeout=60)
