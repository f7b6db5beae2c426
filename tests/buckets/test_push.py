"""The gateway's S3 push endpoint against a real daemon: MinIO's webhook and Ceph RGW's HTTP
push notifications (tests/buckets/payloads.py) reach the bound function unchanged, only with
the trigger's secret; bad input gets a precise answer."""

from __future__ import annotations

import http.client
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.errors import InvalidParameterValue
from tests.buckets.payloads import CEPH_RGW_PUSH, MINIO_WEBHOOK
from tests.buckets.test_buckets import RECORDER
from tests.conftest import TEST_CONFIG, DaemonProcess, make_daemon, wait_for, write_function

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def push_daemon() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="lambdad-push-") as tmp:
        d = make_daemon(tmp, TEST_CONFIG + 'gateway_address = "127.0.0.1:0"\n')
        d.start()
        try:
            yield d
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def post(address: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def events_in(outbox: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(outbox.glob("*.json"))]


def test_minio_and_ceph_notifications_reach_the_function_unchanged(
    push_daemon: DaemonProcess, tmp_path: Path
) -> None:
    with push_daemon.client() as client:
        outbox = Path(client.create_bucket("push-out")["path"])
        code = write_function(tmp_path / "rec", RECORDER)
        client.deploy("push-recorder", str(code), mounts=["bucket:push-out:/mnt/out"])
        with pytest.raises(InvalidParameterValue, match="secret"):
            client.trigger_add("s3", "weak", "push-recorder", push=True, secret="short")
        trigger = client.trigger_add("s3", "from-minio", "push-recorder", push=True)
        secret = trigger["settings"]["secret"]
        address = client.stats()["gateway_address"]
        assert trigger["endpoint"] == f"http://{address}/s3-events/from-minio"
        body = json.dumps(MINIO_WEBHOOK).encode()
        path = "/s3-events/from-minio"
        json_type = {"content-type": "application/json"}
        assert post(address, path, body, json_type)[0] == 401  # no secret
        assert post(address, path, body, {"authorization": "Bearer wrong-secret-123"})[0] == 401
        assert post(address, "/s3-events/nope", body, {})[0] == 404
        status, answer = post(address, path, body, {"authorization": f"Bearer {secret}"})
        assert status == 200 and answer["eventId"]
        # MinIO retries what it could not deliver: the same notification is the same event.
        again = post(address, path, body, {"authorization": f"Bearer {secret}"})
        assert again == (200, answer)
        # Ceph RGW sets no header: the secret is the endpoint's last segment.
        ceph = json.dumps(CEPH_RGW_PUSH).encode()
        assert post(address, f"{path}/{secret}", ceph, json_type)[0] == 200
        got = wait_for(lambda: len(events_in(outbox)) == 2 and events_in(outbox))
        by_source = {e["Records"][0]["eventSource"]: e for e in got}
        assert by_source["minio:s3"] == {"Records": MINIO_WEBHOOK["Records"]}
        assert by_source["ceph:s3"] == CEPH_RGW_PUSH
        status, answer = post(address, path, b"{not json", {"authorization": f"Bearer {secret}"})
        assert status == 400 and "not JSON" in answer["message"]
        status, answer = post(address, path, b'{"Records": 3}', {"authorization": secret})
        assert status == 400 and "Records" in answer["message"]
        counters = {t["name"]: t for t in client.trigger_list()}["from-minio"]["counters"]
        assert counters["invoked"] == 3 and counters["failed"] == 2
        client.trigger_disable("from-minio")
        assert post(address, path, body, {"authorization": f"Bearer {secret}"})[0] == 404
