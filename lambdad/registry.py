"""The function registry: every deployed function and version, persisted under the state dir.

Layout::

    <state>/functions/<name>.json   {"name", "versions": [Version...]}, written atomically
    <state>/code/<sha256>/           an extracted code tree, content-addressed, read-only

Writes are temp file + fsync + rename + fsync of the directory, so a crash leaves either the
old or the new file, never a torn one. Everything is reloaded at start.
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from lambdad.errors import InvalidParameterValue, ResourceNotFound
from lambdad.functions import FunctionConfig, Version, version_sha256

MAX_UNZIPPED: Final = 250 * 1024 * 1024  # Lambda's unzipped deployment package limit
MAX_ENTRIES: Final = 20_000
TASK_ROOT: Final = "/var/task"  # where the code appears inside a sandbox


def _code_files(infos: list[zipfile.ZipInfo]) -> list[tuple[str, zipfile.ZipInfo]]:
    """The regular files of a zip as (safe relative path, entry), sorted by path.

    Names are normalised ("./a//b" is "a/b"). Refused: absolute paths, "..", backslashes, NULs,
    symlinks, encrypted entries, two entries for one path, a file where a directory must be.
    """
    files: dict[str, zipfile.ZipInfo] = {}
    dirs: set[str] = set()
    for info in infos:
        raw = info.filename
        if raw.startswith("/") or "\\" in raw or "\0" in raw:
            raise InvalidParameterValue(f"unsafe path in zip: {raw!r}", field="code")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise InvalidParameterValue(f"unsafe path in zip: {raw!r}", field="code")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidParameterValue(f"symlinks are not allowed: {raw!r}", field="code")
        if info.flag_bits & 0x1:
            raise InvalidParameterValue(f"encrypted entries are not allowed: {raw!r}", field="code")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        name = "/".join(parts)
        if info.is_dir():
            if name:
                dirs.add(name)
            continue
        if not name:
            raise InvalidParameterValue(f"unsafe path in zip: {raw!r}", field="code")
        if name in files:
            raise InvalidParameterValue(f"duplicate entry in zip: {name!r}", field="code")
        files[name] = info
    conflicts = sorted(files.keys() & dirs)
    if conflicts:
        raise InvalidParameterValue(
            f"zip has both a file and a directory at {conflicts[0]!r}", field="code"
        )
    return sorted(files.items())


def _executable(info: zipfile.ZipInfo) -> bool:
    return bool((info.external_attr >> 16) & 0o111)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except Exception as exc:  # whatever a decompressor raises on damaged input (zlib, lzma, ...)
        raise InvalidParameterValue(
            f"code zip entry {info.filename!r} is damaged: {exc}", field="code"
        ) from exc


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class Function:
    name: str
    versions: list[Version] = field(default_factory=list)

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    def version(self, qualifier: str | None) -> Version:
        if qualifier in (None, "", "$LATEST"):
            return self.latest
        for v in self.versions:
            if str(v.number) == qualifier:
                return v
        raise ResourceNotFound(
            f"function {self.name!r} has no version {qualifier!r}",
            name=self.name,
            qualifier=qualifier,
        )


class Registry:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.functions_dir = os.path.join(state_dir, "functions")
        self.code_dir = os.path.join(state_dir, "code")
        for d in (self.functions_dir, self.code_dir):
            os.makedirs(d, mode=0o755, exist_ok=True)
        os.chmod(self.code_dir, 0o755)  # sandboxes (other uids) traverse it
        self.functions: dict[str, Function] = {}
        self.load_errors: list[str] = []
        self._load()

    def _load(self) -> None:
        for entry in os.listdir(self.code_dir):
            if entry.startswith(".tmp-"):  # an extraction a crash interrupted
                shutil.rmtree(os.path.join(self.code_dir, entry), ignore_errors=True)
        for entry in sorted(os.listdir(self.functions_dir)):
            if entry.startswith(".tmp-"):  # an atomic_write a crash interrupted
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.functions_dir, entry))
                continue
            if not entry.endswith(".json") or entry.startswith("."):
                continue
            path = os.path.join(self.functions_dir, entry)
            try:
                with open(path, "rb") as f:
                    raw = json.load(f)
                fn = Function(raw["name"], [Version.from_dict(v) for v in raw["versions"]])
                if not fn.versions:
                    raise ValueError("no versions")
                if f"{fn.name}.json" != entry:  # delete() and _save() find it by its name
                    raise ValueError(f"the file holds function {fn.name!r}")
                if not os.path.isdir(self.code_path(fn.latest)):
                    raise ValueError(f"code {fn.latest.code_sha256} is missing")
            except Exception as exc:  # one bad file must not hide the other functions
                self.load_errors.append(f"{path}: {exc}")
                continue
            self.functions[fn.name] = fn

    def __iter__(self) -> Iterator[Function]:
        return iter(sorted(self.functions.values(), key=lambda f: f.name))

    def get(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise ResourceNotFound(f"Function not found: {name}", name=name) from None

    def code_path(self, version: Version) -> str:
        return os.path.join(self.code_dir, version.code_sha256)

    # Blocking (disk) work: the daemon runs these in a worker thread.

    def store_code(self, zip_bytes: bytes) -> str:
        """Extract a zip into the content-addressed store; return its sha256.

        Raises:
            InvalidParameterValue: (``field="code"``) not a zip, a damaged or encrypted member,
                an unsafe, duplicate or conflicting path, a symlink, or over the size limits.
        """
        try:
            archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
            infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
            raise InvalidParameterValue(
                f"code is not a valid zip file: {exc}", field="code"
            ) from exc
        if len(infos) > MAX_ENTRIES:
            raise InvalidParameterValue(f"code has more than {MAX_ENTRIES} files", field="code")
        if sum(i.file_size for i in infos) > MAX_UNZIPPED:
            raise InvalidParameterValue(
                f"code is larger than {MAX_UNZIPPED // 2**20} MB unzipped", field="code"
            )
        files = _code_files(infos)
        digest = hashlib.sha256()
        for name, info in files:
            data = _read_member(archive, info)
            digest.update(f"{name}\0{int(_executable(info))}\0{len(data)}\0".encode())
            digest.update(data)
        sha = digest.hexdigest()
        final = os.path.join(self.code_dir, sha)
        if os.path.isdir(final):
            return sha
        tmp = tempfile.mkdtemp(dir=self.code_dir, prefix=".tmp-")
        try:
            for name, info in files:
                dest = os.path.join(tmp, name)
                os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
                with open(dest, "wb") as out:
                    out.write(_read_member(archive, info))
                    os.fsync(out.fileno())
                os.chmod(dest, 0o755 if _executable(info) else 0o644)
            # Byte-compile now: /var/task is read-only in the sandbox, so otherwise every cold
            # start would compile the handler module again. ddir makes tracebacks name the
            # path the sandbox sees.
            compileall.compile_dir(tmp, ddir=TASK_ROOT, quiet=2, workers=1)
            for dirpath, _dirs, filenames in os.walk(tmp):
                os.chmod(dirpath, 0o755)
                for name in filenames:
                    if name.endswith(".pyc"):
                        os.chmod(os.path.join(dirpath, name), 0o644)
            try:
                os.rename(tmp, final)
            except OSError:
                # A concurrent deploy of the same code won the race: its tree is ours too.
                if not os.path.isdir(final):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return sha

    def add_version(self, config: FunctionConfig, code_sha256: str) -> tuple[Version, bool]:
        """Record a deploy; returns (version, created). Identical redeploys reuse the version."""
        sha = version_sha256(config, code_sha256)
        fn = self.functions.get(config.name)
        if fn is not None and fn.latest.sha256 == sha:
            return fn.latest, False
        number = fn.latest.number + 1 if fn else 1
        version = Version(number, config, code_sha256, sha, time.time())
        new = Function(config.name, [*(fn.versions if fn else []), version])
        self._save(new)
        self.functions[config.name] = new
        return version, True

    def delete(self, name: str) -> Function:
        fn = self.get(name)
        os.unlink(os.path.join(self.functions_dir, f"{name}.json"))
        del self.functions[name]
        self._collect_code()
        return fn

    def _save(self, fn: Function) -> None:
        doc: dict[str, Any] = {"name": fn.name, "versions": [v.to_dict() for v in fn.versions]}
        path = os.path.join(self.functions_dir, f"{fn.name}.json")
        atomic_write(path, json.dumps(doc, indent=1, sort_keys=True).encode())

    def _collect_code(self) -> None:
        used = {v.code_sha256 for fn in self.functions.values() for v in fn.versions}
        for entry in os.listdir(self.code_dir):
            if entry not in used and not entry.startswith(".tmp-"):
                # Sandboxes that still run it hold their own (detached) mount of the tree.
                shutil.rmtree(os.path.join(self.code_dir, entry), ignore_errors=True)
