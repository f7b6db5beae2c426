"""Buckets and s3 triggers against a real daemon: objects written into a bucket's directory
reach a function as S3 event records, which it writes into another bucket it mounts.

The recorder function writes every event it gets to ``/mnt/out/REQUEST_ID.json`` — a
``bucket:out`` mount, so the test also checks that a bucket resolves to its directory at
deploy and that a handler writes through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.client import Client
from lambdad.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from tests.conftest import ROOT, TEST_CONFIG, DaemonProcess, make_daemon, wait_for, write_function

pytestmark = [pytest.mark.root]

RECORDER = """
import json, os
def handler(event, context):
    path = os.path.join("/mnt/out", context.aws_request_id + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(event, f)
    os.rename(path + ".tmp", path)
    return {}
"""


@pytest.fixture
def bucket_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-buckets-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG)
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def setup_recorder(client: Client, tmp: Path, **trigger: Any) -> tuple[Path, Path]:
    """Buckets ``in`` and ``out``, the recorder with ``out`` mounted, an s3 trigger on ``in``."""
    inbox = Path(client.create_bucket("in-bucket")["path"])
    outbox = Path(client.create_bucket("out-bucket")["path"])
    code = write_function(tmp / "recorder", RECORDER)
    client.deploy("recorder", str(code), mounts=["bucket:out-bucket:/mnt/out"])
    client.trigger_add("s3", "on-in", "recorder", bucket="in-bucket", **trigger)
    return inbox, outbox


def received(outbox: Path) -> list[dict[str, Any]]:
    """Every record the recorder wrote, in sequencer order."""
    found = []
    for entry in outbox.iterdir():
        if entry.suffix == ".json":
            found.extend(json.loads(entry.read_text())["Records"])
    return sorted(found, key=lambda r: (r["s3"]["object"]["sequencer"], r["eventName"]))


def put(inbox: Path, key: str, data: bytes) -> None:
    """Write an object as tools do: a temporary dot-file renamed into place."""
    target = inbox / key
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.part"
    tmp.write_bytes(data)
    os.rename(tmp, target)


def test_bucket_lifecycle_and_errors(bucket_daemon: DaemonProcess, tmp_path: Path) -> None:
    with bucket_daemon.client() as client:
        made = client.create_bucket("photos")
        assert made["path"].startswith(os.path.realpath(bucket_daemon.state_dir))
        assert made["managed"] is True and made["state"] == "watched"
        assert made["arn"] == "arn:aws:s3:::photos"
        own = tmp_path / "existing"
        own.mkdir()
        (own / "old.txt").write_text("there before")
        assert client.create_bucket("mine", str(own))["path"] == str(own.resolve())
        assert [b["name"] for b in client.list_buckets()] == ["mine", "photos"]
        with pytest.raises(InvalidParameterValue, match="S3's rules"):
            client.create_bucket("Bad_Name")
        with pytest.raises(InvalidParameterValue, match="does not exist"):
            client.create_bucket("nowhere", str(tmp_path / "missing"))
        with pytest.raises(ResourceConflict, match="exists"):
            client.create_bucket("photos")
        with pytest.raises(ResourceConflict, match="overlaps"):
            client.create_bucket("inner", str(own))
        Path(made["path"], "x.jpg").write_bytes(b"x")
        with pytest.raises(ResourceConflict, match="not empty"):
            client.delete_bucket("photos")
        os.unlink(Path(made["path"], "x.jpg"))
        client.delete_bucket("mine")
        assert own.is_dir() and (own / "old.txt").exists()  # a --path directory is kept
        with pytest.raises(ResourceNotFound):
            client.trigger_add("s3", "t", "nope", bucket="photos")
    bucket_daemon.restart()
    with bucket_daemon.client() as client:
        assert [b["name"] for b in client.list_buckets()] == ["photos"]  # persisted
        client.delete_bucket("photos")
        assert client.list_buckets() == []


def test_objects_fire_s3_records(bucket_daemon: DaemonProcess, tmp_path: Path) -> None:
    with bucket_daemon.client() as client:
        inbox, outbox = setup_recorder(
            client, tmp_path, events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            prefix="photos/", suffix=".jpg",
        )  # fmt: skip
        with pytest.raises(ResourceConflict, match="source of trigger"):
            client.delete_bucket("in-bucket")
        put(inbox, "photos/red flower.jpg", b"\xff\xd8petals")
        put(inbox, "photos/skip.png", b"not a jpg")  # suffix filter
        put(inbox, "other/a.jpg", b"wrong prefix")  # prefix filter
        records = wait_for(lambda: received(outbox) or None)
        assert len(records) == 1
        r = records[0]
        assert r["eventVersion"] == "2.1" and r["eventSource"] == "aws:s3"
        assert r["eventName"] == "ObjectCreated:Put" and r["awsRegion"] == "us-east-1"
        assert r["eventTime"].endswith("Z") and "." in r["eventTime"]
        assert r["s3"]["s3SchemaVersion"] == "1.0" and r["s3"]["configurationId"] == "on-in"
        assert r["s3"]["bucket"]["name"] == "in-bucket"
        assert r["s3"]["bucket"]["arn"] == "arn:aws:s3:::in-bucket"
        assert set(r["s3"]["bucket"]["ownerIdentity"]) == {"principalId"}
        assert set(r) >= {"userIdentity", "requestParameters", "responseElements"}
        obj = r["s3"]["object"]
        assert obj["key"] == "photos/red+flower.jpg"  # URL-encoded as S3 does
        assert obj["size"] == 8
        assert obj["eTag"] == hashlib.md5(b"\xff\xd8petals").hexdigest()
        os.unlink(inbox / "photos/red flower.jpg")
        records = wait_for(lambda: (rs := received(outbox)) and len(rs) == 2 and rs)
        removed = records[1]
        assert removed["eventName"] == "ObjectRemoved:Delete"
        assert set(removed["s3"]["object"]) == {"key", "sequencer"}
        assert removed["s3"]["object"]["sequencer"] > obj["sequencer"]
        listed = {t["name"]: t for t in client.trigger_list()}
        assert listed["on-in"]["counters"]["invoked"] == 2


def test_directories_created_later_and_changes_while_down(
    bucket_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with bucket_daemon.client() as client:
        inbox, outbox = setup_recorder(client, tmp_path)
        put(inbox, "a/b/c/deep.txt", b"deep")  # three directories made after the watch
        wait_for(lambda: len(received(outbox)) == 1)
        put(inbox, "kept.txt", b"v1")
        wait_for(lambda: len(received(outbox)) == 2)
    bucket_daemon.stop()
    put(inbox, "while-down.txt", b"new")
    put(inbox, "kept.txt", b"v2, longer")  # changed while down
    os.unlink(inbox / "a/b/c/deep.txt")  # removed: not asked for (ObjectCreated only)
    bucket_daemon.start()
    keys = lambda: sorted(r["s3"]["object"]["key"] for r in received(outbox))  # noqa: E731
    wait_for(lambda: len(keys()) == 4)
    assert keys() == ["a/b/c/deep.txt", "kept.txt", "kept.txt", "while-down.txt"]
    sizes = sorted(r["s3"]["object"]["size"] for r in received(outbox))
    assert 10 in sizes  # the new version of kept.txt
    bucket_daemon.restart()  # nothing changed: nothing delivered again
    with bucket_daemon.client() as client:
        put(inbox, "after.txt", b"x")
        wait_for(lambda: len(keys()) == 5)
        assert keys().count("kept.txt") == 2


def test_a_removed_directory_removes_its_objects_and_comes_back(
    bucket_daemon: DaemonProcess, tmp_path: Path
) -> None:
    """A --path bucket whose directory is removed: its objects' removals are delivered, the
    bucket is listed unavailable, and it is watched again once the directory is back."""
    own = tmp_path / "shared"
    own.mkdir()
    with bucket_daemon.client() as client:
        outbox = Path(client.create_bucket("out-bucket")["path"])
        code = write_function(tmp_path / "recorder", RECORDER)
        client.deploy("recorder", str(code), mounts=["bucket:out-bucket:/mnt/out"])
        client.create_bucket("shared", str(own))
        client.trigger_add("s3", "any", "recorder", bucket="shared",
                           events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"])  # fmt: skip
        put(own, "x/one.txt", b"1")
        wait_for(lambda: len(received(outbox)) == 1)
        shutil.rmtree(own)
        names = lambda: [r["eventName"] for r in received(outbox)]  # noqa: E731
        wait_for(lambda: names() == ["ObjectCreated:Put", "ObjectRemoved:Delete"])
        state = lambda: {b["name"]: b["state"] for b in client.list_buckets()}["shared"]  # noqa: E731
        wait_for(lambda: state() == "unavailable")
        own.mkdir()
        wait_for(lambda: state() == "watched")
        put(own, "two.txt", b"2")
        wait_for(lambda: len(received(outbox)) == 3)


def test_the_command_line(bucket_daemon: DaemonProcess, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lambdad", *args, "--socket",
                               bucket_daemon.socket], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)  # fmt: skip

    made = cli("bucket", "create", "media", "--path", str(tmp_path))
    assert made.returncode == 0 and str(tmp_path.resolve()) in made.stdout, made.stderr
    bad = cli("bucket", "create", "xyz", "--path", str(tmp_path / "missing"))
    assert bad.returncode != 0 and "does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr
    listed = json.loads(cli("bucket", "ls", "--json").stdout)
    assert [b["name"] for b in listed] == ["media"]
    code = write_function(tmp_path / ".fn", RECORDER)  # hidden: not an object of the bucket
    with bucket_daemon.client() as client:
        client.deploy("recorder", str(code))
    added = cli("trigger", "add", "s3", "on-media", "recorder", "--bucket", "media",
                "--events", "s3:ObjectRemoved:*", "--suffix", ".png")  # fmt: skip
    assert added.returncode == 0, added.stderr
    ls = cli("trigger", "ls")
    assert "on-media" in ls.stdout and "media/*.png" in ls.stdout
    refused = cli("bucket", "rm", "media")
    assert refused.returncode != 0 and "source of trigger" in refused.stderr
    push = cli("trigger", "add", "s3", "hook", "recorder", "--push")
    assert push.returncode == 0 and "secret " in push.stdout, push.stderr
    assert cli("trigger", "rm", "on-media").returncode == 0
    assert cli("bucket", "rm", "media").returncode == 0
    assert tmp_path.is_dir()
