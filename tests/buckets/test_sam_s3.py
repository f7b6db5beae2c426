"""SAM's ``S3`` event and ``AWS::S3::Bucket`` through ``lambdad deploy --template`` (the real
CLI, against a real daemon): the bucket is made, the trigger carries the template's filters,
an object written into the bucket runs the function; bad S3 events are refused in one message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.buckets.test_buckets import put
from tests.conftest import ROOT, DaemonProcess, wait_for, write_function

TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  Uploads:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: sam-uploads
  Resize:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: sam-resize
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Photo:
          Type: S3
          Properties:
            Bucket: !Ref Uploads
            Events: s3:ObjectCreated:*
            Filter:
              S3Key:
                Rules:
                  - Name: prefix
                    Value: in/
                  - Name: suffix
                    Value: .jpg
"""

HANDLER = """
import urllib.parse
def handler(event, context):
    print("got", urllib.parse.unquote_plus(event["Records"][0]["s3"]["object"]["key"]))
    return {}
"""


def cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdad", *args, "--socket", d.socket],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip


def logged(d: DaemonProcess, function: str) -> str:
    with d.client() as c:
        return "".join(e.message.decode() for e in c.log_events(function).events)


def test_sam_s3_event_deploys_bucket_and_trigger(daemon: DaemonProcess, tmp_path: Path) -> None:
    write_function(tmp_path / "fn", HANDLER)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    out = cli(daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert out.returncode == 0, out.stderr
    assert "bucket sam-uploads: created" in out.stdout
    with daemon.client() as c:
        bucket = {b["name"]: b for b in c.list_buckets()}["sam-uploads"]
        trigger = {t["name"]: t for t in c.trigger_list()}["sam-resize-Photo"]
    assert trigger["kind"] == "s3"
    assert trigger["settings"]["prefix"] == "in/" and trigger["settings"]["suffix"] == ".jpg"
    put(Path(bucket["path"]), "in/cat.jpg", b"meow")
    put(Path(bucket["path"]), "out/dog.jpg", b"woof")  # outside the prefix
    wait_for(lambda: "got in/cat.jpg" in logged(daemon, "sam-resize"))
    again = cli(daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert again.returncode == 0, again.stderr
    assert "bucket sam-uploads: created" not in again.stdout
    assert "trigger sam-resize-Photo: unchanged" in again.stdout
    assert "dog.jpg" not in logged(daemon, "sam-resize")


def test_bad_s3_events_are_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    write_function(tmp_path / "fn", HANDLER)
    bad = TEMPLATE.replace(
        "BucketName: sam-uploads", "BucketName: sam-uploads\n      Versioning: x"
    )
    bad = bad.replace("Name: suffix", "Name: regex")
    (tmp_path / "template.yaml").write_text(bad)
    out = cli(daemon, "deploy", "--template", str(tmp_path / "template.yaml"))
    assert out.returncode != 0
    assert "bucket properties ['Versioning'] are not supported" in out.stderr
    assert "is not a prefix or suffix rule" in out.stderr
