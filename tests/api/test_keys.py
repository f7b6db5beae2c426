"""lambdad.keys on a real temporary state directory, verified with botocore-signed requests."""

from __future__ import annotations

import datetime
import json
import os
import stat
from pathlib import Path

import pytest

from lambdad import sigv4
from lambdad.errors import InvalidParameterValue, ResourceNotFound
from lambdad.keys import FILE_NAME, KeyStore
from lambdad.sigv4 import UnrecognizedClient
from tests.api.signing import NOW, NOW_TS, Wire, signed

pytestmark = pytest.mark.usefixtures("frozen_botocore_clock")


def store(path: Path) -> KeyStore:
    return KeyStore(str(path), clock=lambda: NOW_TS)


def verify_with(keys: KeyStore, wire: Wire, now: float = NOW_TS) -> sigv4.Identity:
    return sigv4.verify(
        wire.method, wire.path, wire.query, wire.headers, wire.body, keys.date_key, now=now
    )


def test_a_created_key_verifies_botocore_requests(tmp_path: Path) -> None:
    keys = store(tmp_path)
    new = keys.create(name="ci", admin=True)
    creds = new.credentials()

    assert creds["AccessKeyId"].startswith("AKID") and len(creds["AccessKeyId"]) == 20
    assert len(creds["SecretAccessKey"]) == 40
    assert (creds["Name"], creds["Admin"], creds["Expires"]) == ("ci", True, "2027-12-01")
    wire = signed(akid=new.key.access_key_id, secret=new.secret_access_key, region="eu-west-1")
    assert verify_with(keys, wire).access_key_id == new.key.access_key_id
    with pytest.raises(sigv4.InvalidSignature):
        verify_with(keys, signed(akid=new.key.access_key_id, secret="x" * 40))


def test_the_secret_is_never_stored(tmp_path: Path) -> None:
    keys = store(tmp_path)
    new = keys.create()
    text = (tmp_path / FILE_NAME).read_text()
    assert new.secret_access_key not in text
    assert new.key.access_key_id in text
    assert "SecretAccessKey" not in json.dumps([k.describe() for k in keys.list()])
    # What is stored is the per-day derived key, and exactly that.
    today = NOW.strftime("%Y%m%d")
    assert new.key.date_key(today) == sigv4.date_key(new.secret_access_key, today)


def test_the_file_is_0600_and_reloads(tmp_path: Path) -> None:
    keys = store(tmp_path)
    a = keys.create(name="a")
    b = keys.create(name="b", admin=True)
    path = tmp_path / FILE_NAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temp files left

    again = store(tmp_path)
    assert again.list() == [a.key, b.key]
    assert again.warnings == []
    wire = signed(akid=b.key.access_key_id, secret=b.secret_access_key)
    assert verify_with(again, wire).access_key_id == b.key.access_key_id


def test_a_file_readable_by_others_is_fixed_and_reported(tmp_path: Path) -> None:
    store(tmp_path).create()
    os.chmod(tmp_path / FILE_NAME, 0o644)
    again = store(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode) == 0o600
    [warning] = again.warnings
    assert "was readable by others (mode 644)" in warning


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text('{"keys": [{"access_key_id": "nope"')
    os.chmod(tmp_path / FILE_NAME, 0o600)
    with pytest.raises(ValueError, match=f"{FILE_NAME}: not a valid key store"):
        store(tmp_path)
    (tmp_path / FILE_NAME).write_text(json.dumps({"keys": [{"access_key_id": "AKIDX"}]}))
    with pytest.raises(ValueError, match="bad access key id 'AKIDX'"):
        store(tmp_path)


def test_remove_by_id_or_name(tmp_path: Path) -> None:
    keys = store(tmp_path)
    a = keys.create(name="a")
    b = keys.create(name="b")
    assert keys.remove("a") == a.key
    assert keys.remove(b.key.access_key_id) == b.key
    assert keys.list() == [] and store(tmp_path).list() == []
    with pytest.raises(ResourceNotFound, match="no API key 'a'"):
        keys.remove("a")
    wire = signed(akid=a.key.access_key_id, secret=a.secret_access_key)
    with pytest.raises(UnrecognizedClient, match="security token included in the request"):
        verify_with(keys, wire)


def test_names_and_validity_are_checked(tmp_path: Path) -> None:
    keys = store(tmp_path)
    keys.create(name="dup")
    with pytest.raises(InvalidParameterValue, match="a key named 'dup' exists already"):
        keys.create(name="dup")
    with pytest.raises(InvalidParameterValue, match="key name must match"):
        keys.create(name="has space")
    for bad in (0, -1, 4000, True):
        with pytest.raises(InvalidParameterValue, match="valid_days must be an integer"):
            keys.create(valid_days=bad)
    assert [k.name for k in keys.list()] == ["dup"]


def test_a_key_works_only_inside_its_window(tmp_path: Path) -> None:
    keys = store(tmp_path)
    new = keys.create(valid_days=2)  # 2026-11-30 (skew margin) to 2026-12-03
    assert new.key.expires == "2026-12-03"
    key_id = new.key.access_key_id
    assert keys.date_key(key_id, "20261130") == sigv4.date_key(new.secret_access_key, "20261130")
    assert keys.date_key(key_id, "20261203") == sigv4.date_key(new.secret_access_key, "20261203")
    for outside in ("20261129", "20261204", "20271201", "garbage!"):
        with pytest.raises(UnrecognizedClient, match="is valid from 2026-11-30 to 2026-12-03"):
            keys.date_key(key_id, outside)

    later = datetime.datetime(2026, 12, 4, 0, 1, tzinfo=datetime.UTC)
    wire = signed(akid=key_id, secret=new.secret_access_key)
    wire_later = Wire(
        wire.method,
        wire.path,
        wire.query,
        tuple(
            (k, v.replace("20261201", "20261204")) if k == "authorization" else (k, v)
            for k, v in wire.headers
        ),
        wire.body,
    )
    with pytest.raises(UnrecognizedClient):
        verify_with(keys, wire_later.header("x-amz-date", "20261204T000100Z"), later.timestamp())
