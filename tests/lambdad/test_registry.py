"""The registry on a real temporary directory: code store, versions, persistence, GC."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from lambdad import codebuild
from lambdad.errors import InvalidParameterValue, ResourceNotFound
from lambdad.functions import FunctionConfig, validate
from lambdad.registry import Registry, atomic_write

APP = b"def handler(event, context):\n    return event\n"


def make_zip(
    files: dict[str, bytes],
    *,
    modes: dict[str, int] | None = None,
    dirs: tuple[str, ...] = (),
) -> bytes:
    """A zip of ``files`` (path -> content); ``modes`` sets Unix permission bits per path."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in dirs:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFDIR | 0o755) << 16
            archive.writestr(info, b"")
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | (modes or {}).get(name, 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buf.getvalue()


def config(name: str = "f", **fields: object) -> FunctionConfig:
    return validate({"name": name, **fields})


def deploy(reg: Registry, cfg: FunctionConfig, files: dict[str, bytes]) -> tuple[int, bool]:
    version, created = reg.add_version(cfg, reg.store_code(make_zip(files)))
    return version.number, created


def tree(root: str) -> dict[str, bytes]:
    """The files of an extracted code tree, without the bytecode the registry adds."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = Path(path).read_bytes()
    return out


@pytest.fixture
def state(tmp_path: Path) -> str:
    return str(tmp_path / "state")


@pytest.fixture
def reg(state: str) -> Registry:
    return Registry(state)


# ---------------------------------------------------------------------------------------------
# Deploys and versions


def test_first_deploy_is_version_1_and_extracts_the_code(reg: Registry) -> None:
    sha = reg.store_code(make_zip({"app.py": APP, "lib/util.py": b"X = 1\n"}))
    version, created = reg.add_version(config(), sha)

    assert (version.number, created) == (1, True)
    assert version.code_sha256 == sha
    assert len(sha) == 64
    assert tree(reg.code_path(version)) == {"app.py": APP, "lib/util.py": b"X = 1\n"}
    assert reg.get("f").latest is version
    assert [fn.name for fn in reg] == ["f"]


def test_identical_redeploy_reuses_the_version(reg: Registry) -> None:
    assert deploy(reg, config(), {"app.py": APP}) == (1, True)
    first = reg.get("f").latest

    assert deploy(reg, config(), {"app.py": APP}) == (1, False)
    assert reg.get("f").latest is first
    assert len(reg.get("f").versions) == 1


def test_changed_config_or_code_makes_a_new_version(reg: Registry) -> None:
    assert deploy(reg, config(), {"app.py": APP}) == (1, True)
    assert deploy(reg, config(memory_mb=256), {"app.py": APP}) == (2, True)
    assert deploy(reg, config(memory_mb=256), {"app.py": APP + b"# v3\n"}) == (3, True)
    # Going back to an older configuration is a new deploy, as on Lambda.
    assert deploy(reg, config(), {"app.py": APP}) == (4, True)

    fn = reg.get("f")
    assert [v.number for v in fn.versions] == [1, 2, 3, 4]
    assert fn.version("2").config.memory_mb == 256
    assert fn.version("$LATEST") is fn.latest
    assert fn.version(None) is fn.latest
    assert fn.version("") is fn.latest
    assert fn.versions[0].sha256 == fn.versions[3].sha256
    assert fn.versions[0].code_sha256 != fn.versions[2].code_sha256
    with pytest.raises(ResourceNotFound, match="has no version '9'"):
        fn.version("9")


def test_code_address_depends_on_content_not_on_zip_layout(reg: Registry) -> None:
    a = make_zip({"app.py": APP, "b.py": b"b"})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:  # other order, no deflate
        archive.writestr(zipfile.ZipInfo("b.py", date_time=(2001, 1, 1, 0, 0, 0)), b"b")
        archive.writestr("app.py", APP)
    b = buf.getvalue()
    assert a != b

    assert reg.store_code(a) == reg.store_code(b)
    assert reg.store_code(make_zip({"app.py": APP, "b.py": b"b"}, modes={"b.py": 0o755})) != (
        reg.store_code(a)
    )
    assert len([e for e in os.listdir(reg.code_dir)]) == 2
    # CodeSize is the first zip's that made the tree (Lambda's is the deployment package's).
    assert reg.zip_size(reg.store_code(a)) == len(a)


def test_a_leading_dot_slash_is_normalised(reg: Registry) -> None:
    sha = reg.store_code(make_zip({"./app.py": APP, "pkg//mod.py": b"m"}, dirs=("./",)))
    assert tree(os.path.join(reg.code_dir, sha)) == {"app.py": APP, "pkg/mod.py": b"m"}
    assert sha == reg.store_code(make_zip({"app.py": APP, "pkg/mod.py": b"m"}))


def test_extracted_modes(reg: Registry) -> None:
    sha = reg.store_code(
        make_zip(
            {"app.py": APP, "bin/tool": b"#!/bin/sh\n", "secret.txt": b"s"},
            modes={"bin/tool": 0o700, "secret.txt": 0o600},
            dirs=("empty/",),
        )
    )
    root = os.path.join(reg.code_dir, sha)

    def mode(rel: str) -> int:
        return stat.S_IMODE(os.stat(os.path.join(root, rel)).st_mode)

    assert mode("app.py") == 0o644
    assert mode("secret.txt") == 0o644  # readable by the sandbox's unprivileged uid
    assert mode("bin/tool") == 0o755
    assert mode(".") == 0o755
    assert mode("bin") == 0o755
    assert stat.S_IMODE(os.stat(reg.code_dir).st_mode) == 0o755
    assert not os.path.exists(os.path.join(root, "empty"))  # empty dirs carry nothing


def test_a_concurrent_store_of_the_same_code_is_not_an_error(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_zip({"app.py": APP})
    real_rename = os.rename

    def lose_the_race(src: str, dst: str) -> None:
        real_rename(src, dst)  # the other thread's tree lands first...
        os.makedirs(src)
        Path(src, "app.py").write_bytes(APP)
        real_rename(src, dst)  # ...so ours cannot (ENOTEMPTY)

    monkeypatch.setattr(os, "rename", lose_the_race)
    sha = reg.store_code(data)
    monkeypatch.undo()

    assert os.listdir(reg.code_dir) == [sha]
    assert tree(os.path.join(reg.code_dir, sha)) == {"app.py": APP}


# ---------------------------------------------------------------------------------------------
# Refused zips


def field_of(exc: pytest.ExceptionInfo[InvalidParameterValue]) -> object:
    return exc.value.details.get("field")


@pytest.mark.parametrize(
    "name",
    ["../x.py", "a/../../x.py", "a/..", "/abs.py", "/etc/passwd", "a\\..\\x.py"],
    ids=repr,
)
def test_unsafe_paths_are_refused(reg: Registry, name: str) -> None:
    with pytest.raises(InvalidParameterValue, match="unsafe path in zip") as info:
        reg.store_code(make_zip({"app.py": APP, name: b"evil"}))
    assert field_of(info) == "code"
    assert os.listdir(reg.code_dir) == []


def test_symlink_entries_are_refused(reg: Registry) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", APP)
        link = zipfile.ZipInfo("passwd")
        link.create_system = 3  # Unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")

    with pytest.raises(InvalidParameterValue, match="symlinks are not allowed: 'passwd'") as info:
        reg.store_code(buf.getvalue())
    assert field_of(info) == "code"
    assert os.listdir(reg.code_dir) == []


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04" + b"\0" * 40], ids=repr)
def test_not_a_zip_is_refused(reg: Registry, data: bytes) -> None:
    with pytest.raises(InvalidParameterValue, match="code is not a valid zip file") as info:
        reg.store_code(data)
    assert field_of(info) == "code"


def test_a_damaged_member_is_refused(reg: Registry) -> None:
    data = bytearray(make_zip({"app.py": APP * 50}))
    # Flip a byte inside the deflated data (after the 30-byte local header and the name).
    data[30 + len("app.py") + 5] ^= 0xFF

    damaged = re.escape("code zip entry 'app.py' is damaged")
    with pytest.raises(InvalidParameterValue, match=damaged) as info:
        reg.store_code(bytes(data))
    assert field_of(info) == "code"
    assert os.listdir(reg.code_dir) == []


def test_an_encrypted_member_is_refused(reg: Registry) -> None:
    data = bytearray(make_zip({"app.py": APP}))
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x01  # general purpose flag bit 0: encrypted

    with pytest.raises(InvalidParameterValue, match="encrypted entries are not allowed"):
        reg.store_code(bytes(data))


def test_a_file_where_a_directory_must_be_is_refused(reg: Registry) -> None:
    with pytest.raises(InvalidParameterValue, match="both a file and a directory at 'lib'"):
        reg.store_code(make_zip({"lib": b"file", "lib/mod.py": b"m"}))
    with pytest.raises(InvalidParameterValue, match="both a file and a directory at 'lib'"):
        reg.store_code(make_zip({"lib": b"file"}, dirs=("lib/",)))
    assert os.listdir(reg.code_dir) == []


def test_duplicate_entries_are_refused(reg: Registry) -> None:
    buf = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", APP)
        archive.writestr("app.py", b"other")

    with pytest.raises(InvalidParameterValue, match=re.escape("duplicate entry in zip: 'app.py'")):
        reg.store_code(buf.getvalue())


def test_size_limits(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codebuild, "MAX_ENTRIES", 2)
    with pytest.raises(InvalidParameterValue, match="more than 2 files"):
        reg.store_code(make_zip({"a.py": b"", "b.py": b"", "c.py": b""}))

    monkeypatch.setattr(codebuild, "MAX_ENTRIES", 20_000)
    monkeypatch.setattr(codebuild, "MAX_UNZIPPED", 100)
    with pytest.raises(InvalidParameterValue, match="larger than 0 MB unzipped"):
        reg.store_code(make_zip({"a.py": b"x" * 101}))
    reg.store_code(make_zip({"a.py": b"x" * 100}))


# ---------------------------------------------------------------------------------------------
# Persistence


def test_reload_from_disk_gives_the_same_functions(state: str) -> None:
    reg = Registry(state)
    deploy(reg, config("a", env={"K": "v"}, concurrency=2), {"app.py": APP})
    deploy(reg, config("a", env={"K": "w"}, concurrency=2), {"app.py": APP})
    deploy(reg, config("b", handler="pkg/mod.run", timeout_s=30), {"pkg/mod.py": APP})

    again = Registry(state)

    assert again.load_errors == []
    assert [fn.name for fn in again] == ["a", "b"]
    for name in ("a", "b"):
        assert again.get(name).versions == reg.get(name).versions
    assert again.get("a").latest.config.env == {"K": "w"}
    assert again.get("b").latest.config.timeout_s == 30.0
    # Identity survives a restart: the same deploy is still recognised.
    assert deploy(again, config("a", env={"K": "w"}, concurrency=2), {"app.py": APP}) == (2, False)


def test_a_damaged_record_is_skipped_and_reported(state: str) -> None:
    reg = Registry(state)
    deploy(reg, config("good"), {"app.py": APP})
    deploy(reg, config("torn"), {"app.py": APP})
    deploy(reg, config("gone"), {"app.py": APP + b"#"})
    functions = Path(reg.functions_dir)
    (functions / "torn.json").write_bytes(b'{"name": "torn", "versions": [')
    (functions / "bad.json").write_text(json.dumps({"name": "bad", "versions": []}))
    doc = json.loads((functions / "good.json").read_text())
    doc["name"] = "impostor"
    (functions / "impostor.json").write_text(json.dumps({**doc, "name": "other"}))
    gone_sha = reg.get("gone").latest.code_sha256
    shutil.rmtree(Path(reg.code_dir, gone_sha))

    again = Registry(state)

    assert [fn.name for fn in again] == ["good"]
    errors = sorted(again.load_errors)
    assert len(errors) == 4
    assert errors[0].startswith(str(functions / "bad.json") + ": ")
    assert "no versions" in errors[0]
    assert errors[1].startswith(str(functions / "gone.json") + ": ")
    assert f"code {gone_sha} is missing" in errors[1]
    assert errors[2].startswith(str(functions / "impostor.json") + ": ")
    assert "the file holds function 'other'" in errors[2]
    assert errors[3].startswith(str(functions / "torn.json") + ": ")


def test_an_invalid_stored_config_is_reported(state: str) -> None:
    reg = Registry(state)
    deploy(reg, config("f"), {"app.py": APP})
    path = Path(reg.functions_dir, "f.json")
    doc = json.loads(path.read_text())
    doc["versions"][0]["config"]["memory_mb"] = 1
    path.write_text(json.dumps(doc))

    again = Registry(state)

    assert list(again) == []
    [error] = again.load_errors
    assert "memory_mb must be an integer between 64 and 10240" in error


def test_interrupted_writes_are_cleaned_up_at_start(state: str) -> None:
    reg = Registry(state)
    deploy(reg, config("f"), {"app.py": APP})
    Path(reg.code_dir, ".tmp-abc").mkdir()
    Path(reg.code_dir, ".tmp-abc", "app.py").write_bytes(b"half")
    Path(reg.functions_dir, ".tmp-xyz").write_bytes(b'{"na')

    again = Registry(state)

    assert again.load_errors == []
    assert not Path(reg.code_dir, ".tmp-abc").exists()
    assert sorted(os.listdir(reg.functions_dir)) == ["f.json"]


def test_records_are_plain_json(reg: Registry) -> None:
    deploy(reg, config("f", env={"A": "1"}), {"app.py": APP})
    doc = json.loads(Path(reg.functions_dir, "f.json").read_text())

    assert doc["name"] == "f"
    [v] = doc["versions"]
    assert v["number"] == 1
    assert v["config"]["env"] == {"A": "1"}
    assert v["code_sha256"] == reg.get("f").latest.code_sha256


# ---------------------------------------------------------------------------------------------
# Delete and code garbage collection


def test_delete_removes_the_record_and_unreferenced_code_only(state: str) -> None:
    reg = Registry(state)
    deploy(reg, config("a"), {"app.py": APP})
    shared = reg.get("a").latest.code_sha256
    deploy(reg, config("a"), {"app.py": APP + b"# only a\n"})
    only_a = reg.get("a").latest.code_sha256
    deploy(reg, config("b"), {"app.py": APP})
    assert reg.get("b").latest.code_sha256 == shared
    assert sorted(os.listdir(reg.code_dir)) == sorted([shared, only_a])

    deleted = reg.delete("a")

    assert deleted.name == "a"
    assert [v.code_sha256 for v in deleted.versions] == [shared, only_a]
    assert os.listdir(reg.code_dir) == [shared]
    assert os.listdir(reg.functions_dir) == ["b.json"]
    with pytest.raises(ResourceNotFound, match="Function not found: a") as info:
        reg.get("a")
    assert info.value.details == {"name": "a"}

    again = Registry(state)
    assert [fn.name for fn in again] == ["b"]
    assert again.load_errors == []

    reg.delete("b")
    assert os.listdir(reg.code_dir) == []


def test_delete_of_an_unknown_function(reg: Registry) -> None:
    with pytest.raises(ResourceNotFound, match="Function not found: nope"):
        reg.delete("nope")


# ---------------------------------------------------------------------------------------------
# atomic_write


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    atomic_write(str(target), b"one")
    atomic_write(str(target), b"two")

    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["record.json"]


def test_atomic_write_failure_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "record.json"
    atomic_write(str(target), b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(str(target), b"new")
    monkeypatch.undo()

    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["record.json"]


def test_a_failed_extraction_leaves_nothing_behind(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        reg.store_code(make_zip({"app.py": APP}))
    monkeypatch.undo()

    assert os.listdir(reg.code_dir) == []


def test_python_modules_are_byte_compiled_for_the_sandbox_path(reg: Registry) -> None:
    """/var/task is read-only in a sandbox: the .pyc must exist already, and name the path
    the sandbox sees in tracebacks."""
    import marshal

    sha = reg.store_code(make_zip({"app.py": b"def handler(e, c):\n    return 1\n"}))
    pyc = Path(reg.code_dir, sha, "__pycache__").glob("app.*.pyc")
    data = next(pyc).read_bytes()
    code = marshal.loads(data[16:])
    assert code.co_filename == "/var/task/app.py"


def test_load_records_skips_and_names_what_it_cannot_read(tmp_path: Path) -> None:
    from lambdad.registry import load_records

    atomic_write(str(tmp_path / "b.json"), b'{"n": 2}')
    atomic_write(str(tmp_path / "a.json"), b'{"n": 1}')
    (tmp_path / "torn.json").write_bytes(b'{"n": ')
    (tmp_path / "wrong.json").write_bytes(b'{"m": 1}')
    (tmp_path / "notes.txt").write_bytes(b"ignored")
    records, errors = load_records(str(tmp_path), lambda doc: int(doc["n"]))
    assert records == [1, 2]
    assert sorted(e.split(":")[0].rsplit("/", 1)[1] for e in errors) == ["torn.json", "wrong.json"]
