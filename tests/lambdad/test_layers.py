"""The layer store: numbering, content addressing, deletes that keep what is in use, persistence."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import botocore.session
import pytest

from lambdad.errors import InvalidParameterValue, ResourceNotFound
from lambdad.layers import (
    RUNTIMES,
    LayerStore,
    PublishRequest,
    created_date,
    parse_layer_name,
    parse_layer_version_arn,
)


def make_zip(files: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | (modes or {}).get(name, 0o644)) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


DEPS = make_zip({"python/deps.py": b"VALUE = 42\n", "bin/tool": b"#!/bin/sh\necho hi\n"},
                {"bin/tool": 0o755})  # fmt: skip


def publish(store: LayerStore, name: str = "deps", code: bytes = DEPS, **kw: object) -> int:
    return store.publish(PublishRequest.make(name, code, **kw)).number  # type: ignore[arg-type]


def test_versions_are_numbered_per_layer(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path))
    assert [publish(store), publish(store), publish(store, "other"), publish(store)] == [1, 2, 1, 3]
    assert [v.number for v in store.list_versions("deps")] == [3, 2, 1]  # newest first
    assert [(v.name, v.number) for v in store.list_layers()] == [("deps", 3), ("other", 1)]


def test_a_version_records_what_lambda_shows(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path), clock=lambda: 1_700_000_000.25)
    version = store.publish(
        PublishRequest.make(
            "deps",
            DEPS,
            description="shared code",
            license_info="MIT",
            compatible_runtimes=["python3.11", "python3.12", "python3.11"],
            compatible_architectures=["x86_64"],
        )
    )
    assert version.code_sha256 == base64.b64encode(hashlib.sha256(DEPS).digest()).decode()
    assert version.code_size == len(DEPS)
    assert version.unzipped_size == len(b"VALUE = 42\n") + len(b"#!/bin/sh\necho hi\n")
    assert version.compatible_runtimes == ("python3.11", "python3.12")  # duplicates dropped
    assert version.compatible_architectures == ("x86_64",)
    assert (version.description, version.license_info) == ("shared code", "MIT")
    assert created_date(version.created) == "2023-11-14T22:13:20.250+0000"
    assert version.arn("eu-west-1") == "arn:aws:lambda:eu-west-1:000000000000:layer:deps:1"
    tree = Path(store.tree_path(version))
    assert (tree / "python" / "deps.py").read_bytes() == b"VALUE = 42\n"
    assert os.stat(tree / "bin" / "tool").st_mode & 0o777 == 0o755
    assert os.stat(tree / "python" / "deps.py").st_mode & 0o777 == 0o644
    # Byte-compiled for a read-only /opt, naming the path the sandbox will see.
    [pyc] = (tree / "python" / "__pycache__").iterdir()
    assert b"/opt/python/deps.py" in pyc.read_bytes()


def test_trees_are_content_addressed_and_shared(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path))
    a = store.publish(PublishRequest.make("a", DEPS))
    # Same files, another zip (other compression, other order): the same tree.
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("bin/tool", "python/deps.py"):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | (0o755 if name == "bin/tool" else 0o644)) << 16
            archive.writestr(info, zipfile.ZipFile(io.BytesIO(DEPS)).read(name))
    b = store.publish(PublishRequest.make("b", other.getvalue()))
    assert a.tree == b.tree and a.code_sha256 != b.code_sha256
    assert os.listdir(store.tree_dir) == [a.tree]
    c = store.publish(PublishRequest.make("a", make_zip({"python/deps.py": b"VALUE = 43\n"})))
    assert c.tree != a.tree and sorted(os.listdir(store.tree_dir)) == sorted([a.tree, c.tree])


def test_delete_forgets_a_version_and_its_unshared_tree(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path))
    publish(store)
    v2 = store.publish(PublishRequest.make("deps", make_zip({"python/x.py": b"x = 1\n"})))
    assert store.delete("deps", 2) == v2
    assert not os.path.exists(store.tree_path(v2))
    with pytest.raises(ResourceNotFound, match="deps:2"):
        store.get("deps", 2)
    with pytest.raises(ResourceNotFound):
        store.resolve("deps", 2)
    assert store.delete("deps", 2) is None  # idempotent
    assert store.delete("nope", 1) is None
    assert [v.number for v in store.list_versions("deps")] == [1]
    # Numbers are never reused, even once every version is gone.
    store.delete("deps", 1)
    assert store.list_layers() == [] and store.list_versions("deps") == []
    assert os.listdir(store.tree_dir) == []
    assert publish(store) == 3


def test_a_deleted_version_in_use_stays_usable_until_unreferenced(tmp_path: Path) -> None:
    in_use = {("deps", 1)}
    store = LayerStore(str(tmp_path), in_use=lambda: set(in_use))
    v1 = store.publish(PublishRequest.make("deps", DEPS))
    store.delete("deps", 1)
    # Gone for listings and lookups, as on Lambda...
    assert store.list_layers() == [] and store.list_versions("deps") == []
    with pytest.raises(ResourceNotFound):
        store.get("deps", 1)
    # ...but a function that references it still finds it, content and all, across a restart.
    reloaded = LayerStore(str(tmp_path), in_use=lambda: set(in_use))
    kept = reloaded.resolve("deps", 1)
    assert kept.deleted and kept.tree == v1.tree
    assert os.path.isdir(reloaded.tree_path(kept))
    assert reloaded.collect() == []  # still referenced
    in_use.clear()
    [dropped] = reloaded.collect()
    assert (dropped.name, dropped.number) == ("deps", 1)
    assert not os.path.exists(reloaded.tree_path(kept))
    with pytest.raises(ResourceNotFound):
        reloaded.resolve("deps", 1)
    assert publish(reloaded) == 2


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path))
    publish(store, description="one", compatible_runtimes=["python3.12"])
    publish(store, "other")
    store.delete("other", 1)
    reloaded = LayerStore(str(tmp_path))
    assert reloaded.load_errors == []
    assert reloaded.get("deps", 1) == store.get("deps", 1)
    assert reloaded.list_layers() == store.list_layers()
    assert publish(reloaded, "other") == 2
    assert oct(os.stat(tmp_path / "layers").st_mode & 0o777) == "0o755"  # sandboxes traverse it


def test_crash_leftovers_and_damage_are_handled_at_start(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path))
    v = store.publish(PublishRequest.make("deps", DEPS))
    publish(store, "gone", make_zip({"a.txt": b"a"}))
    os.mkdir(tmp_path / "layers" / ".tmp-interrupted")  # an extraction cut short
    gone = store.get("gone", 1)
    os.rename(store.tree_path(gone), tmp_path / "elsewhere")  # a tree lost
    reloaded = LayerStore(str(tmp_path))
    assert not os.path.exists(tmp_path / "layers" / ".tmp-interrupted")
    assert reloaded.get("deps", 1) == v
    assert [e for e in reloaded.load_errors if "'gone'" in e and "missing" in e]
    # A torn or foreign index file: start empty, keep it aside for a human.
    (tmp_path / "layers.json").write_text("{not json")
    damaged = LayerStore(str(tmp_path))
    assert damaged.list_layers() == [] and damaged.load_errors
    assert (tmp_path / "layers.json.damaged").read_text() == "{not json"


def test_the_index_is_written_atomically(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path))
    publish(store)
    doc = json.loads((tmp_path / "layers.json").read_text())
    assert doc["layers"]["deps"]["last_number"] == 1
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (b"not a zip", "not a valid zip"),
        (make_zip({"../escape.py": b""}), "unsafe path"),
        (make_zip({"/abs.py": b""}), "unsafe path"),
        (make_zip({"link": b"target"}, {"link": 0o777 | stat.S_IFLNK}), "symlinks"),
    ],
)
def test_bad_content_is_refused(tmp_path: Path, code: bytes, message: str) -> None:
    store = LayerStore(str(tmp_path))
    with pytest.raises(InvalidParameterValue, match=message) as info:
        store.publish(PublishRequest.make("deps", code))
    assert info.value.details["field"] == "Content"
    assert store.list_layers() == [] and os.listdir(store.tree_dir) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "bad name"}, "LayerName"),
        ({"name": "x" * 141}, "LayerName"),
        ({"code": b""}, "Content"),
        ({"description": "d" * 257}, "Description"),
        ({"license_info": "l" * 513}, "LicenseInfo"),
        ({"compatible_runtimes": ["python9"]}, "CompatibleRuntimes"),
        ({"compatible_runtimes": "python3.11"}, "CompatibleRuntimes"),
        ({"compatible_runtimes": [f"python3.{i}" for i in range(6, 16)] + [
            "nodejs18.x", "nodejs20.x", "nodejs22.x", "java21", "go1.x", "provided"]},
         "CompatibleRuntimes"),
        ({"compatible_architectures": ["sparc"]}, "CompatibleArchitectures"),
    ],
)  # fmt: skip
def test_publish_requests_are_validated(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "deps", "code": DEPS, **kwargs}
    name, code = args.pop("name"), args.pop("code")
    with pytest.raises(InvalidParameterValue) as info:
        PublishRequest.make(name, code, **args)  # type: ignore[arg-type]
    assert info.value.details["field"] == field


def test_names_and_arns() -> None:
    assert parse_layer_name("my-layer_1") == "my-layer_1"
    assert parse_layer_name("arn:aws:lambda:us-east-1:000000000000:layer:deps") == "deps"
    for bad in ("", "a b", "arn:aws:lambda:us-east-1:000000000000:layer:deps:1", "x" * 141):
        with pytest.raises(InvalidParameterValue):
            parse_layer_name(bad)
    arn = "arn:aws:lambda:eu-west-1:000000000000:layer:deps:12"
    assert parse_layer_version_arn(arn) == ("deps", 12)
    for bad in ("deps:1", "arn:aws:lambda:eu-west-1:000000000000:layer:deps"):
        with pytest.raises(InvalidParameterValue):
            parse_layer_version_arn(bad)


def test_runtimes_are_botocores_enum() -> None:
    model = botocore.session.get_session().get_service_model("lambda")
    assert set(model.shape_for("Runtime").enum) == RUNTIMES - {"python3"}
