"""Lambda's versions and aliases in the registry: $LATEST, PublishVersion, aliases, routing."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from lambdad.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lambdad.registry import Registry, Target, revision_id_of
from tests.lambdad.test_registry import APP, config, make_zip


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "state"))


def put(reg: Registry, name: str = "f", body: bytes = APP, **fields: object) -> int:
    """set_latest (no publish); returns $LATEST's number (0 = unpublished)."""
    return reg.set_latest(config(name, **fields), reg.store_code(make_zip({"app.py": body}))).number


def test_set_latest_publishes_nothing(reg: Registry) -> None:
    assert put(reg) == 0
    fn = reg.get("f")
    assert fn.versions == [] and fn.latest.number == 0
    assert reg.resolve("f", None) == Target(fn.latest, "$LATEST")
    assert reg.resolve("f", "$LATEST").executed == "$LATEST"
    with pytest.raises(ResourceNotFound, match="has no version '1'"):
        reg.resolve("f", "1")
    # An identical update changes nothing, not even the revision.
    rev = revision_id_of(fn.latest)
    put(reg)
    assert revision_id_of(reg.get("f").latest) == rev


def test_publish_freezes_latest_and_skips_unchanged(reg: Registry) -> None:
    put(reg)
    v1, created = reg.publish("f", description="first")
    assert (v1.number, created) == (1, True)
    assert reg.get("f").latest is v1
    assert reg.publish("f") == (v1, False)  # unchanged $LATEST: the existing version

    assert put(reg, memory_mb=256) == 0  # changed: $LATEST is ahead of version 1
    assert reg.resolve("f", "1").version.config.memory_mb == 128
    assert reg.resolve("f", None).version.config.memory_mb == 256
    v2, created = reg.publish("f")
    assert (v2.number, created) == (2, True)

    # Back to the newest version's exact content: $LATEST is version 2 again.
    put(reg, memory_mb=128)
    assert put(reg, memory_mb=256) == 2
    assert reg.publish("f") == (reg.get("f").published("2"), False)
    # Back to an older version's content is a new version, as on Lambda.
    assert put(reg, memory_mb=128) == 0
    assert reg.publish("f")[0].number == 3
    fn = reg.get("f")
    assert [v.number for v in fn.versions] == [1, 2, 3]
    assert fn.description(fn.published("1")) == "first"
    assert fn.description(fn.published("2")) == ""


def test_publish_preconditions(reg: Registry) -> None:
    put(reg)
    latest = reg.get("f").latest
    with pytest.raises(InvalidParameterValue, match=r"CodeSha256 .* is different"):
        reg.publish("f", code_sha256="0" * 64)
    with pytest.raises(PreconditionFailed, match="Revision Id provided does not match"):
        reg.publish("f", revision_id="not-it")
    with pytest.raises(InvalidParameterValue, match="Description must be a string of at most 256"):
        reg.publish("f", description="d" * 257)
    with pytest.raises(ResourceNotFound, match="Function not found: g"):
        reg.publish("g")
    assert reg.get("f").versions == []
    version, _ = reg.publish(
        "f", code_sha256=latest.code_sha256, revision_id=revision_id_of(latest)
    )
    assert version.number == 1


def test_version_numbers_are_never_reused(reg: Registry) -> None:
    put(reg)
    reg.publish("f")
    put(reg, memory_mb=256)
    reg.publish("f")
    assert reg.delete_version("f", "2").number == 2
    fn = reg.get("f")
    # $LATEST keeps version 2's content but is no longer a published version.
    assert fn.latest.number == 0 and fn.latest.config.memory_mb == 256
    assert os.path.isdir(reg.code_path(fn.latest))
    assert reg.publish("f")[0].number == 3
    assert [v.number for v in reg.get("f").versions] == [1, 3]


def test_delete_version_refusals(reg: Registry) -> None:
    put(reg)
    reg.publish("f")
    reg.create_alias("f", "live", "1")
    reg.create_alias("f", "beta", "$LATEST")
    with pytest.raises(ResourceConflict, match=r"aliases reference it: \['live'\]"):
        reg.delete_version("f", "1")
    with pytest.raises(InvalidParameterValue, match=r"\$LATEST version cannot be deleted"):
        reg.delete_version("f", "$LATEST")
    with pytest.raises(InvalidParameterValue, match="is not a version number"):
        reg.delete_version("f", "live")
    with pytest.raises(ResourceNotFound, match="has no version '7'"):
        reg.delete_version("f", "7")
    reg.delete_alias("f", "live")
    reg.delete_version("f", "1")
    assert reg.get("f").versions == []


def test_aliases_create_get_update_list_delete(reg: Registry) -> None:
    put(reg)
    reg.publish("f")
    put(reg, memory_mb=256)
    reg.publish("f")

    live = reg.create_alias("f", "live", "1", description="prod")
    assert (live.name, live.version, dict(live.weights), live.description) == (
        "live",
        "1",
        {},
        "prod",
    )
    assert reg.get("f").alias("live") == live
    with pytest.raises(ResourceConflict, match="Alias already exists: live"):
        reg.create_alias("f", "live", "2")

    canary = reg.update_alias("f", "live", weights={"2": 0.25})
    assert (canary.version, dict(canary.weights), canary.description) == ("1", {"2": 0.25}, "prod")
    assert canary.revision_id != live.revision_id
    with pytest.raises(PreconditionFailed):
        reg.update_alias("f", "live", version="2", revision_id=live.revision_id)
    moved = reg.update_alias("f", "live", version="2", weights={}, revision_id=canary.revision_id)
    assert (moved.version, dict(moved.weights)) == ("2", {})
    reg.create_alias("f", "edge", "$LATEST")
    assert sorted(reg.get("f").aliases) == ["edge", "live"]

    assert reg.delete_alias("f", "edge").name == "edge"
    with pytest.raises(ResourceNotFound, match="has no alias 'edge'"):
        reg.delete_alias("f", "edge")
    with pytest.raises(ResourceNotFound, match="has no alias 'nope'"):
        reg.update_alias("f", "nope", version="1")


@pytest.mark.parametrize("name", ["123", "$LATEST", "a b", "x" * 129, "", "ünï"])
def test_bad_alias_names(reg: Registry, name: str) -> None:
    put(reg)
    with pytest.raises(InvalidParameterValue, match="alias name must match"):
        reg.create_alias("f", name, "$LATEST")


@pytest.mark.parametrize(
    ("version", "weights", "error", "message"),
    [
        ("3", {}, ResourceNotFound, "has no version '3'"),
        ("v1", {}, InvalidParameterValue, "FunctionVersion must be"),
        ("1", {"3": 0.5}, ResourceNotFound, "has no version '3'"),
        ("1", {"1": 0.5}, InvalidParameterValue, "already included in routing configuration"),
        ("1", {"2": 1.5}, InvalidParameterValue, "from 0.0 to 1.0"),
        ("1", {"2": -0.1}, InvalidParameterValue, "from 0.0 to 1.0"),
        ("1", {"2": True}, InvalidParameterValue, "from 0.0 to 1.0"),
        ("1", {"2": "0.5"}, InvalidParameterValue, "from 0.0 to 1.0"),
        ("1", {"2": 0.1, "3": 0.1}, InvalidParameterValue, "one additional version only"),
        ("1", {"$LATEST": 0.1}, InvalidParameterValue, "published version number"),
        ("$LATEST", {"2": 0.1}, InvalidParameterValue, "not supported for an alias pointing"),
    ],
)
def test_bad_alias_routing(
    reg: Registry, version: str, weights: dict[str, object], error: type, message: str
) -> None:
    put(reg)
    reg.publish("f")
    put(reg, memory_mb=256)
    reg.publish("f")
    with pytest.raises(error, match=message):
        reg.create_alias("f", "a", version, weights=weights)  # type: ignore[arg-type]
    assert reg.get("f").aliases == {}


def test_resolving_qualifiers_and_weighted_routing(reg: Registry) -> None:
    put(reg)
    v1, _ = reg.publish("f")
    put(reg, memory_mb=256)
    v2, _ = reg.publish("f")
    reg.create_alias("f", "live", "1", weights={"2": 0.1})
    reg.create_alias("f", "head", "$LATEST")

    assert reg.resolve("f", "live", rand=lambda: 0.0999) == Target(v2, "2", "live")
    assert reg.resolve("f", "live", rand=lambda: 0.1) == Target(v1, "1", "live")
    assert reg.resolve("f", "head") == Target(reg.get("f").latest, "$LATEST", "head")
    assert reg.resolve("f", "2") == Target(v2, "2")
    assert reg.get("f").version("live") in (v1, v2)  # the msgpack path resolves aliases too
    with pytest.raises(ResourceNotFound, match="has no alias 'dev'"):
        reg.resolve("f", "dev")

    rng = random.Random(1234)
    n = 20_000
    picks = [reg.resolve("f", "live", rand=rng.random).executed for _ in range(n)]
    share = picks.count("2") / n
    assert abs(share - 0.1) < 0.01  # 0.1 ± 4.7 standard deviations
    reg.update_alias("f", "live", weights={"2": 0.0})
    assert {reg.resolve("f", "live").executed for _ in range(500)} == {"1"}
    reg.update_alias("f", "live", weights={"2": 1.0})
    assert {reg.resolve("f", "live").executed for _ in range(500)} == {"2"}


def test_everything_survives_a_reload(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    reg = Registry(state)
    put(reg)
    reg.publish("f", description="one")
    put(reg, memory_mb=256)
    reg.publish("f")
    reg.delete_version("f", "2")
    put(reg, memory_mb=512)  # unpublished $LATEST
    reg.create_alias("f", "live", "1", description="prod")
    reg.update_alias("f", "live", weights={})
    put(reg, "g")
    reg.publish("g")

    again = Registry(state)

    assert again.load_errors == []
    for name in ("f", "g"):
        assert again.get(name) == reg.get(name)
    f = again.get("f")
    assert (f.latest.number, f.latest.config.memory_mb, f.last_number) == (0, 512, 2)
    assert f.description(f.published("1")) == "one"
    assert f.alias("live") == reg.get("f").alias("live")
    assert again.get("g").latest is again.get("g").versions[-1]
    assert again.publish("f")[0].number == 3


def test_a_record_from_before_aliases_loads(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    reg = Registry(state)
    reg.add_version(config("old"), reg.store_code(make_zip({"app.py": APP})))
    reg.add_version(config("old", memory_mb=256), reg.store_code(make_zip({"app.py": APP})))
    path = Path(reg.functions_dir, "old.json")
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({"name": doc["name"], "versions": doc["versions"]}))

    again = Registry(state)

    fn = again.get("old")
    assert again.load_errors == []
    assert fn.latest is fn.versions[-1] and fn.latest.number == 2
    assert fn.aliases == {} and fn.last_number == 2


def test_a_dangling_alias_is_a_load_error(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    reg = Registry(state)
    put(reg)
    reg.publish("f")
    reg.create_alias("f", "live", "1")
    path = Path(reg.functions_dir, "f.json")
    doc = json.loads(path.read_text())
    doc["aliases"]["live"]["version"] = "9"
    path.write_text(json.dumps(doc))

    again = Registry(state)
    assert list(again) == []
    [error] = again.load_errors
    assert "alias 'live' points at missing version 9" in error


def test_code_of_an_unpublished_latest_is_kept_and_collected(reg: Registry) -> None:
    put(reg, body=APP + b"# one\n")
    one = reg.get("f").latest.code_sha256
    put(reg, "other")
    reg.delete("other")  # collects unused code: f's unpublished $LATEST is in use
    assert os.path.isdir(os.path.join(reg.code_dir, one))

    reg.publish("f")
    put(reg, body=APP + b"# two\n")
    two = reg.get("f").latest.code_sha256
    put(reg, body=APP + b"# three\n")  # replaces the unpublished "two"
    three = reg.get("f").latest.code_sha256
    assert sorted(os.listdir(reg.code_dir)) == sorted([one, three])
    assert not os.path.exists(os.path.join(reg.code_dir, two))
