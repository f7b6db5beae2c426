"""Layers: named, numbered, immutable bundles of shared dependencies, persisted under the state dir.

Layout::

    <state>/layers.json            every layer: its versions, its highest number; atomic
    <state>/layers/<tree sha256>/  an extracted layer tree, content-addressed, read-only,
                                   shared by every version (of any layer) with the same files

Lambda's model, as ``PublishLayerVersion`` and friends define it:

* :meth:`LayerStore.publish` makes version N+1 of a layer from a zip (1 for a new name).
  Numbers are never reused, even after every version of a layer was deleted.
* A version records what Lambda shows — ``Description``, ``LicenseInfo``,
  ``CompatibleRuntimes``, ``CompatibleArchitectures``, ``CodeSha256`` (base64 SHA-256 of the
  zip), ``CodeSize`` (zip bytes), ``CreatedDate`` — plus the unzipped size (for the 250 MB
  function + layers limit) and the tree's content address (for the mount at ``/opt``, issue 14).
* :meth:`LayerStore.delete` removes a version from every listing and lookup at once, but, as
  on Lambda, a function that references it keeps working: while ``in_use()`` names it, it is
  *retained* (its tree stays, :meth:`LayerStore.resolve` still finds it). :meth:`collect` drops
  retained versions nothing references any more, and trees no version uses.

ARNs name the caller's region: ``arn:aws:lambda:<region>:<account>:layer:NAME:N``.

The store is blocking (disk) and not safe to call concurrently; :class:`Layers` is the async
face the service gives the fronts: one lock, the disk work on a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import compileall
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from lambdad.codebuild import (
    MAX_ENTRIES,
    MAX_UNZIPPED,
    _code_files,
    _executable,
    _read_member,
    write_files,
)
from lambdad.errors import InvalidParameterValue, ResourceNotFound
from lambdad.registry import atomic_write

ACCOUNT_ID: Final = "000000000000"  # the one account every ARN names
DEFAULT_REGION: Final = "us-east-1"  # for ARNs shown where no request names a region (CLI)
LAYER_ROOT: Final = "/opt"  # where a layer appears inside a sandbox
LAYER_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,140}$")
LAYER_ARN_RE: Final = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:([A-Za-z0-9_-]{1,140})$"
)
LAYER_VERSION_ARN_RE: Final = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:([A-Za-z0-9_-]{1,140}):([0-9]{1,10})$"
)
DESCRIPTION_MAX: Final = 256
LICENSE_MAX: Final = 512
MAX_RUNTIMES: Final = 15
MAX_ARCHITECTURES: Final = 2
ARCHITECTURES: Final = ("x86_64", "arm64")
# The Runtime enum of botocore's Lambda model (the values CompatibleRuntimes may hold).
RUNTIMES: Final = frozenset(
    {
        "nodejs", "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs8.10", "nodejs10.x",
        "nodejs12.x", "nodejs14.x", "nodejs16.x", "nodejs18.x", "nodejs20.x", "nodejs22.x",
        "nodejs24.x", "nodejs26.x",
        "java8", "java8.al2", "java8.al2023", "java11", "java11.al2023", "java17",
        "java17.al2023", "java21", "java25",
        "python2.7", "python3.6", "python3.7", "python3.8", "python3.9", "python3.10",
        "python3.11", "python3.12", "python3.13", "python3.14", "python3.15",
        "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6",
        "dotnet8", "dotnet10",
        "go1.x", "ruby2.5", "ruby2.7", "ruby3.2", "ruby3.3", "ruby3.4", "ruby4.0",
        "provided", "provided.al2", "provided.al2023", "custom",
        "python3",  # and lambdad's own name
    }
)  # fmt: skip


def layer_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:layer:{name}"


def parse_layer_name(value: str) -> str:
    """A LayerName as Lambda accepts it (a name or a layer ARN) → the name.

    Raises:
        InvalidParameterValue: naming the value.
    """
    if LAYER_NAME_RE.fullmatch(value):
        return value
    m = LAYER_ARN_RE.fullmatch(value)
    if m is None:
        raise InvalidParameterValue(
            f"LayerName must be a name ([A-Za-z0-9_-]{{1,140}}) or a layer ARN; got {value!r}",
            field="LayerName",
        )
    return m.group(1)


def parse_layer_version_arn(value: str) -> tuple[str, int]:
    """``arn:aws:lambda:REGION:ACCOUNT:layer:NAME:N`` → (name, N). Raises InvalidParameterValue."""
    m = LAYER_VERSION_ARN_RE.fullmatch(value)
    if m is None:
        raise InvalidParameterValue(
            f"Arn must be a layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:N); "
            f"got {value!r}",
            field="Arn",
        )
    return m.group(1), int(m.group(2))


def created_date(at: float) -> str:
    """Lambda's CreatedDate format: ``2018-11-14T23:03:52.026+0000``."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{whole}.{int(at * 1000) % 1000:03d}+0000"


@dataclass(frozen=True)
class LayerVersion:
    """One immutable version of a layer."""

    name: str
    number: int
    tree: str  # content address of the extracted tree (its directory under <state>/layers)
    code_sha256: str  # base64 SHA-256 of the zip, as Lambda's CodeSha256
    code_size: int  # bytes of the zip
    unzipped_size: int  # bytes of the files it holds
    created: float  # unix time
    description: str = ""
    license_info: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    deleted: bool = False  # deleted but retained: a function still references it

    def arn(self, region: str) -> str:
        return f"{layer_arn(region, self.name)}:{self.number}"

    def matches(self, runtime: str | None, architecture: str | None) -> bool:
        """The ListLayers / ListLayerVersions filters."""
        if runtime is not None and runtime not in self.compatible_runtimes:
            return False
        return architecture is None or architecture in self.compatible_architectures

    def to_wire(self, region: str = DEFAULT_REGION) -> dict[str, Any]:
        """What the socket's layer ops answer (and the CLI prints)."""
        return {
            "name": self.name,
            "version": self.number,
            "arn": self.arn(region),
            "description": self.description,
            "license_info": self.license_info,
            "compatible_runtimes": list(self.compatible_runtimes),
            "compatible_architectures": list(self.compatible_architectures),
            "code_sha256": self.code_sha256,
            "code_size": self.code_size,
            "unzipped_size": self.unzipped_size,
            "created": created_date(self.created),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "number": self.number,
            "tree": self.tree,
            "code_sha256": self.code_sha256,
            "code_size": self.code_size,
            "unzipped_size": self.unzipped_size,
            "created": self.created,
            "description": self.description,
            "license_info": self.license_info,
            "compatible_runtimes": list(self.compatible_runtimes),
            "compatible_architectures": list(self.compatible_architectures),
            "deleted": self.deleted,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerVersion:
        return cls(
            name=str(d["name"]),
            number=int(d["number"]),
            tree=str(d["tree"]),
            code_sha256=str(d["code_sha256"]),
            code_size=int(d["code_size"]),
            unzipped_size=int(d["unzipped_size"]),
            created=float(d["created"]),
            description=str(d.get("description", "")),
            license_info=str(d.get("license_info", "")),
            compatible_runtimes=tuple(str(r) for r in d.get("compatible_runtimes", ())),
            compatible_architectures=tuple(
                str(a) for a in d.get("compatible_architectures", ())
            ),
            deleted=bool(d.get("deleted", False)),
        )


@dataclass
class Layer:
    name: str
    last_number: int = 0  # the highest version number ever published (never reused)
    versions: list[LayerVersion] = field(default_factory=list)  # oldest first, retained too

    def live(self) -> list[LayerVersion]:
        """The versions listings and lookups see (not deleted), oldest first."""
        return [v for v in self.versions if not v.deleted]


@dataclass(frozen=True)
class PublishRequest:
    """What PublishLayerVersion / ``lambdad layer publish`` asks for, validated."""

    name: str
    zip_bytes: bytes
    description: str = ""
    license_info: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()

    @classmethod
    def make(
        cls,
        name: object,
        zip_bytes: object,
        *,
        description: object = "",
        license_info: object = "",
        compatible_runtimes: object = (),
        compatible_architectures: object = (),
    ) -> PublishRequest:
        """Validate every field, naming the first bad one (InvalidParameterValue)."""
        if not isinstance(name, str) or not LAYER_NAME_RE.fullmatch(name):
            raise InvalidParameterValue(
                f"LayerName must match [A-Za-z0-9_-]{{1,140}}, got {name!r}", field="LayerName"
            )
        if not isinstance(zip_bytes, bytes) or not zip_bytes:
            raise InvalidParameterValue("Content must be the bytes of a zip file", field="Content")
        for label, value, limit in (
            ("Description", description, DESCRIPTION_MAX),
            ("LicenseInfo", license_info, LICENSE_MAX),
        ):
            if not isinstance(value, str) or len(value) > limit:
                raise InvalidParameterValue(
                    f"{label} must be a string of at most {limit} characters", field=label
                )
        runtimes = _names(
            "CompatibleRuntimes", compatible_runtimes, RUNTIMES, MAX_RUNTIMES
        )
        architectures = _names(
            "CompatibleArchitectures", compatible_architectures, ARCHITECTURES, MAX_ARCHITECTURES
        )
        return cls(
            str(name), zip_bytes, str(description), str(license_info), runtimes, architectures
        )


def _names(label: str, value: object, allowed: Iterable[str], limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidParameterValue(f"{label} must be a list of strings", field=label)
    allowed = set(allowed)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in allowed:
            raise InvalidParameterValue(
                f"{label}: {item!r} is not one of {', '.join(sorted(allowed))}", field=label
            )
        if item not in out:
            out.append(item)
    if len(out) > limit:
        raise InvalidParameterValue(f"{label} has more than {limit} members", field=label)
    return tuple(out)


InUse = Callable[[], set[tuple[str, int]]]


class LayerStore:
    """Every layer and its versions; trees on disk, metadata in one atomic file.

    Args:
        state_dir: the daemon's state directory.
        in_use: the (layer name, version number) pairs that functions reference now: a deleted
            version among them is retained until they no longer do.
        clock: unix time, for CreatedDate.
    """

    def __init__(
        self,
        state_dir: str,
        in_use: InUse = set,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tree_dir = os.path.join(state_dir, "layers")
        self.index_path = os.path.join(state_dir, "layers.json")
        self.in_use = in_use
        self.clock = clock
        os.makedirs(self.tree_dir, mode=0o755, exist_ok=True)
        os.chmod(self.tree_dir, 0o755)  # sandboxes (other uids) traverse it
        self.layers: dict[str, Layer] = {}
        self.load_errors: list[str] = []
        self._load()

    def _load(self) -> None:
        for entry in os.listdir(self.tree_dir):
            if entry.startswith(".tmp-"):  # an extraction a crash interrupted
                shutil.rmtree(os.path.join(self.tree_dir, entry), ignore_errors=True)
        if not os.path.exists(self.index_path):
            return
        try:
            with open(self.index_path, "rb") as f:
                raw = json.load(f)
            entries = raw["layers"]
            if not isinstance(entries, dict):
                raise ValueError("'layers' is not an object")
        except Exception as exc:
            # Keep the damaged file for a human; start with no layers rather than not at all.
            self.load_errors.append(f"{self.index_path}: {exc}")
            with contextlib.suppress(OSError):
                os.replace(self.index_path, self.index_path + ".damaged")
            return
        for name, doc in entries.items():
            try:
                layer = Layer(str(name), int(doc["last_number"]))
                for item in doc["versions"]:
                    version = LayerVersion.from_dict(item)
                    if not os.path.isdir(self.tree_path(version)):
                        raise ValueError(f"version {version.number}: tree {version.tree} missing")
                    layer.versions.append(version)
            except Exception as exc:  # one bad layer must not hide the others
                self.load_errors.append(f"{self.index_path}: layer {name!r}: {exc}")
                continue
            self.layers[layer.name] = layer

    # -- reading ------------------------------------------------------------------------

    def tree_path(self, version: LayerVersion) -> str:
        return os.path.join(self.tree_dir, version.tree)

    def get(self, name: str, number: int) -> LayerVersion:
        """A live version. Raises ResourceNotFound."""
        layer = self.layers.get(name)
        for version in layer.live() if layer is not None else ():
            if version.number == number:
                return version
        raise ResourceNotFound(
            f"Layer version {name}:{number} does not exist", name=name, version=number
        )

    def resolve(self, name: str, number: int) -> LayerVersion:
        """A version a function may use: live, or deleted and retained. Raises ResourceNotFound."""
        layer = self.layers.get(name)
        for version in layer.versions if layer is not None else ():
            if version.number == number:
                return version
        raise ResourceNotFound(
            f"Layer version {name}:{number} does not exist", name=name, version=number
        )

    def list_layers(
        self, runtime: str | None = None, architecture: str | None = None
    ) -> list[LayerVersion]:
        """The newest matching live version of each layer that has one, by layer name."""
        out = []
        for name in sorted(self.layers):
            matching = [v for v in self.layers[name].live() if v.matches(runtime, architecture)]
            if matching:
                out.append(matching[-1])
        return out

    def list_versions(
        self, name: str, runtime: str | None = None, architecture: str | None = None
    ) -> list[LayerVersion]:
        """A layer's live versions, newest first (an unknown layer has none, as on Lambda)."""
        layer = self.layers.get(name)
        if layer is None:
            return []
        return [v for v in reversed(layer.live()) if v.matches(runtime, architecture)]

    # -- writing (blocking: the daemon runs these on a worker thread) ------------------

    def publish(self, request: PublishRequest) -> LayerVersion:
        """Store the zip's tree (shared if already there) and record version N+1.

        Raises:
            InvalidParameterValue: (``field="Content"``) not a zip, unsafe or damaged entries,
                over the size limits.
        """
        tree, unzipped = self._store_tree(request.zip_bytes)
        layer = self.layers.get(request.name) or Layer(request.name)
        version = LayerVersion(
            name=request.name,
            number=layer.last_number + 1,
            tree=tree,
            code_sha256=base64.b64encode(hashlib.sha256(request.zip_bytes).digest()).decode(),
            code_size=len(request.zip_bytes),
            unzipped_size=unzipped,
            created=self.clock(),
            description=request.description,
            license_info=request.license_info,
            compatible_runtimes=request.compatible_runtimes,
            compatible_architectures=request.compatible_architectures,
        )
        updated = Layer(layer.name, version.number, [*layer.versions, version])
        self._commit({**self.layers, layer.name: updated})
        return version

    def delete(self, name: str, number: int) -> LayerVersion | None:
        """Delete a live version (None if there is none: Lambda's delete is idempotent).

        A version some function references is retained (marked deleted) until :meth:`collect`
        finds it unreferenced; otherwise it is forgotten and its tree removed if unshared.
        """
        layer = self.layers.get(name)
        target = next((v for v in layer.live() if v.number == number), None) if layer else None
        if layer is None or target is None:
            return None
        referenced = (name, number) in self.in_use()
        versions = [
            replace(v, deleted=True) if v is target else v
            for v in layer.versions
            if v is not target or referenced
        ]
        self._commit({**self.layers, name: Layer(name, layer.last_number, versions)})
        self._collect_trees()
        return target

    def collect(self) -> list[LayerVersion]:
        """Forget retained (deleted) versions no function references any more; remove trees
        no version uses. Returns the versions forgotten."""
        used = self.in_use()
        dropped = [
            v
            for layer in self.layers.values()
            for v in layer.versions
            if v.deleted and (v.name, v.number) not in used
        ]
        if dropped:
            gone = {(v.name, v.number) for v in dropped}
            self._commit(
                {
                    name: Layer(
                        name,
                        layer.last_number,
                        [v for v in layer.versions if (v.name, v.number) not in gone],
                    )
                    for name, layer in self.layers.items()
                }
            )
        self._collect_trees()
        return dropped

    def _commit(self, layers: dict[str, Layer]) -> None:
        # A layer whose versions are all gone keeps its entry: its numbers are never reused.
        doc = {
            "layers": {
                name: {
                    "last_number": layer.last_number,
                    "versions": [v.to_dict() for v in layer.versions],
                }
                for name, layer in sorted(layers.items())
            }
        }
        atomic_write(self.index_path, json.dumps(doc, indent=1, sort_keys=True).encode())
        self.layers = layers

    def _collect_trees(self) -> None:
        used = {v.tree for layer in self.layers.values() for v in layer.versions}
        for entry in os.listdir(self.tree_dir):
            if entry not in used and not entry.startswith(".tmp-"):
                # Sandboxes that mounted it hold their own (detached) mount of the tree.
                shutil.rmtree(os.path.join(self.tree_dir, entry), ignore_errors=True)

    def _store_tree(self, zip_bytes: bytes) -> tuple[str, int]:
        """Extract a zip into the content-addressed tree store: (its address, unzipped bytes).

        The same checks as a function's code (no absolute or ``..`` paths, symlinks,
        encrypted, duplicate or conflicting entries; 250 MB and 20,000 files at most).
        """
        try:
            archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
            infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
            raise InvalidParameterValue(
                f"Content is not a valid zip file: {exc}", field="Content"
            ) from exc
        if len(infos) > MAX_ENTRIES:
            raise InvalidParameterValue(
                f"layer has more than {MAX_ENTRIES} files", field="Content"
            )
        unzipped = sum(i.file_size for i in infos if not i.is_dir())
        if unzipped > MAX_UNZIPPED:
            raise InvalidParameterValue(
                f"layer is larger than {MAX_UNZIPPED // 2**20} MB unzipped", field="Content"
            )
        try:
            files = _code_files(infos)
        except InvalidParameterValue as exc:
            raise InvalidParameterValue(exc.message, field="Content") from None
        digest = hashlib.sha256()
        for name, info in files:
            data = _read_member(archive, info)
            digest.update(f"{name}\0{int(_executable(info))}\0{len(data)}\0".encode())
            digest.update(data)
        tree = digest.hexdigest()
        final = os.path.join(self.tree_dir, tree)
        if os.path.isdir(final):
            return tree, unzipped
        tmp = tempfile.mkdtemp(dir=self.tree_dir, prefix=".tmp-")
        try:
            write_files(archive, files, tmp)
            # /opt is read-only in the sandbox: byte-compile now, naming the paths it sees.
            compileall.compile_dir(tmp, ddir=LAYER_ROOT, quiet=2, workers=1)
            for dirpath, _dirs, filenames in os.walk(tmp):
                os.chmod(dirpath, 0o755)
                for name in filenames:
                    if name.endswith(".pyc"):
                        os.chmod(os.path.join(dirpath, name), 0o644)
            try:
                os.rename(tmp, final)
            except OSError:
                if not os.path.isdir(final):  # else a concurrent publish of the same tree won
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tree, unzipped


class Layers:
    """The async face of a :class:`LayerStore`: what the fronts call (through the service).

    Writes are serialized by one lock and run on a worker thread; reads are in memory.
    """

    def __init__(self, store: LayerStore) -> None:
        self.store = store
        self._lock = asyncio.Lock()

    async def publish(self, request: PublishRequest) -> LayerVersion:
        async with self._lock:
            return await asyncio.to_thread(self.store.publish, request)

    async def delete(self, name: str, number: int) -> LayerVersion | None:
        async with self._lock:
            return await asyncio.to_thread(self.store.delete, name, number)

    async def collect(self) -> list[LayerVersion]:
        async with self._lock:
            return await asyncio.to_thread(self.store.collect)

    def get(self, name: str, number: int) -> LayerVersion:
        return self.store.get(name, number)

    def list_layers(
        self, runtime: str | None = None, architecture: str | None = None
    ) -> list[LayerVersion]:
        return self.store.list_layers(runtime, architecture)

    def list_versions(
        self, name: str, runtime: str | None = None, architecture: str | None = None
    ) -> list[LayerVersion]:
        return self.store.list_versions(name, runtime, architecture)
