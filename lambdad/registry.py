"""The function registry: every function, its versions and aliases, persisted under the state dir.

Layout::

    <state>/functions/<name>.json   {"name", "latest", "versions", "aliases", "last_number",
                                     "descriptions"}, written atomically
    <state>/code/<sha256>/           an extracted code tree, content-addressed, read-only

Lambda's model of versions (``docs/lambda-api.md`` has the whole mapping):

* ``$LATEST`` (:attr:`Function.latest`) is the mutable head: :meth:`Registry.set_latest`
  replaces it (``CreateFunction``, ``UpdateFunctionCode``, ``UpdateFunctionConfiguration``).
* :meth:`Registry.publish` (``PublishVersion``) freezes ``$LATEST`` as the next numbered
  version, 1, 2, ... (numbers are never reused, even after a version is deleted). Publishing
  when ``$LATEST`` is identical (same content address of code and configuration) to the newest
  published version returns that version instead of making a new one.
* A msgpack ``deploy`` is ``set_latest`` + ``publish`` (:meth:`Registry.add_version`), which
  is what every deploy did before versions were a Lambda concept here: each changed deploy is a
  new numbered version, an identical one is not.
* While ``$LATEST`` is unpublished (changed since the newest version) its :class:`Version` has
  ``number == 0``; once published, ``Function.latest`` *is* that numbered version.
* Aliases name a version (or ``$LATEST``), optionally with ``AdditionalVersionWeights``: one
  more published version and the share of invocations (0..1) it gets. :meth:`Registry.resolve`
  turns any qualifier (none, ``$LATEST``, a number, an alias) into a :class:`Target`.

Writes are temp file + fsync + rename + fsync of the directory, so a crash leaves either the
old or the new file, never a torn one. Everything is reloaded at start; files written before
aliases existed (``{"name", "versions"}``) load as they always did. Mutating methods are not
safe to call concurrently: the daemon serializes them (one lock, one worker thread at a time),
and that also keeps the code collector from removing a tree that a deploy just stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from lambdad import codebuild
from lambdad.codebuild import MAX_ENTRIES as MAX_ENTRIES
from lambdad.codebuild import MAX_UNZIPPED as MAX_UNZIPPED
from lambdad.codebuild import TASK_ROOT as TASK_ROOT
from lambdad.diskspace import Watermark
from lambdad.errors import (
    CodeStorageExceeded,
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lambdad.functions import FunctionConfig, Version, version_sha256

LATEST: Final = "$LATEST"
T = TypeVar("T")
# MAX_ENTRIES, MAX_UNZIPPED and TASK_ROOT are the build's (lambdad/codebuild.py), re-exported.
ALIAS_RE: Final = re.compile(r"^(?![0-9]+$)[A-Za-z0-9_-]{1,128}$")  # Lambda's alias names
VERSION_RE: Final = re.compile(r"^[0-9]{1,10}$")
DESCRIPTION_MAX: Final = 256


def load_records(directory: str, parse: Callable[[Any], T]) -> tuple[list[T], list[str]]:
    """Every ``*.json`` record of a directory of :func:`atomic_write` files, in name order,
    through ``parse`` (which raises ValueError, KeyError, TypeError or InvalidParameterValue
    for a bad one); and one line per record that could not be read, naming its path."""
    records: list[T] = []
    errors: list[str] = []
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".json"):
            continue
        path = os.path.join(directory, entry)
        try:
            with open(path, "rb") as f:
                records.append(parse(json.load(f)))
        except (OSError, ValueError, KeyError, TypeError, InvalidParameterValue) as exc:
            errors.append(f"{path}: {exc}")
    return records, errors


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


def revision_id_of(version: Version) -> str:
    """The RevisionId of a version (or of ``$LATEST`` as it is now): changes with each change."""
    digest = hashlib.sha256(f"{version.sha256}:{version.number}:{version.created!r}".encode())
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4))


@dataclass(frozen=True)
class Alias:
    """A name for a version, optionally sharing invocations with one more version."""

    name: str
    version: str  # "$LATEST" or a published version number
    weights: Mapping[str, float] = field(default_factory=dict)  # {additional version: 0..1}
    description: str = ""
    revision_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "weights": dict(self.weights),
            "description": self.description,
            "revision_id": self.revision_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alias:
        weights = {str(k): float(v) for k, v in dict(d.get("weights") or {}).items()}
        return cls(
            str(d["name"]),
            str(d["version"]),
            weights,
            str(d.get("description", "")),
            str(d.get("revision_id", "")),
        )


@dataclass(frozen=True)
class Target:
    """What a qualifier resolved to: the version to run and how to report it."""

    version: Version
    executed: str  # X-Amz-Executed-Version: "$LATEST" or the number that runs
    alias: str | None = None  # the alias the caller named, if any


@dataclass
class Function:
    name: str
    versions: list[Version] = field(default_factory=list)  # published, oldest first
    head: Version | None = None  # $LATEST; None means "the newest published version"
    aliases: dict[str, Alias] = field(default_factory=dict)
    last_number: int = 0  # the highest version number ever published (never reused)
    descriptions: dict[int, str] = field(default_factory=dict)  # PublishVersion's Description
    tags: dict[str, str] = field(default_factory=dict)  # TagResource (the function's, unversioned)
    # PutProvisionedConcurrencyConfig: qualifier (version number or alias) -> sandboxes kept
    # initialized for what it resolves to (an alias: its primary version).
    provisioned: dict[str, int] = field(default_factory=dict)

    @property
    def latest(self) -> Version:
        """``$LATEST``: a numbered version when it is identical to the newest one, else a
        ``number == 0`` snapshot."""
        return self.head if self.head is not None else self.versions[-1]

    def published(self, number: str) -> Version:
        for v in self.versions:
            if str(v.number) == number:
                return v
        raise ResourceNotFound(
            f"function {self.name!r} has no version {number!r}", name=self.name, qualifier=number
        )

    def alias(self, name: str) -> Alias:
        try:
            return self.aliases[name]
        except KeyError:
            raise ResourceNotFound(
                f"function {self.name!r} has no alias {name!r}", name=self.name, qualifier=name
            ) from None

    def resolve(self, qualifier: str | None, rand: Callable[[], float] = random.random) -> Target:
        """Turn a qualifier into the version to run.

        ``None``, ``""`` or ``$LATEST`` → ``$LATEST``; digits → that published version; else
        an alias, whose additional version (if any) is chosen with its weight: ``rand()``
        below the weight picks it.

        Raises:
            ResourceNotFound: no such version or alias.
        """
        if qualifier in (None, "", LATEST):
            return Target(self.latest, LATEST)
        assert qualifier is not None
        if VERSION_RE.fullmatch(qualifier):
            return Target(self.published(qualifier), qualifier)
        alias = self.alias(qualifier)
        chosen = alias.version
        for extra, weight in alias.weights.items():
            if rand() < weight:
                chosen = extra
        if chosen == LATEST:
            return Target(self.latest, LATEST, alias.name)
        return Target(self.published(chosen), chosen, alias.name)

    def live_keys(self) -> frozenset[str]:
        """The :attr:`Version.key` of ``$LATEST`` and of every published version: what warm
        sandboxes may be specialized for."""
        return frozenset(v.key for v in (self.latest, *self.versions))

    def version(self, qualifier: str | None) -> Version:
        """The version a qualifier (none, ``$LATEST``, number or alias) runs."""
        return self.resolve(qualifier).version

    def description(self, version: Version) -> str:
        """PublishVersion's Description of a published version ("" if none was given)."""
        return self.descriptions.get(version.number, "")

    def to_dict(self) -> dict[str, Any]:
        head = self.head
        return {
            "name": self.name,
            "versions": [v.to_dict() for v in self.versions],
            "latest": None if head is None else head.to_dict(),
            "aliases": {n: a.to_dict() for n, a in sorted(self.aliases.items())},
            "last_number": self.last_number,
            "descriptions": {str(k): v for k, v in sorted(self.descriptions.items())},
            "tags": dict(sorted(self.tags.items())),
            "provisioned": dict(sorted(self.provisioned.items())),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Function:
        versions = [Version.from_dict(v) for v in raw["versions"]]
        head = Version.from_dict(raw["latest"]) if raw.get("latest") else None
        if head is None and not versions:
            raise ValueError("no versions")
        last = max([v.number for v in versions], default=0)
        fn = cls(
            name=str(raw["name"]),
            versions=versions,
            head=head,
            aliases={str(n): Alias.from_dict(a) for n, a in dict(raw.get("aliases", {})).items()},
            last_number=max(int(raw.get("last_number", last)), last),
            descriptions={int(k): str(v) for k, v in dict(raw.get("descriptions", {})).items()},
            tags={str(k): str(v) for k, v in dict(raw.get("tags", {})).items()},
            provisioned={str(k): int(v) for k, v in dict(raw.get("provisioned", {})).items()},
        )
        numbers = {str(v.number) for v in versions}
        for alias in fn.aliases.values():
            for target in (alias.version, *alias.weights):
                if target != LATEST and target not in numbers:
                    raise ValueError(f"alias {alias.name!r} points at missing version {target}")
        return fn


class Registry:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.functions_dir = os.path.join(state_dir, "functions")
        self.code_dir = os.path.join(state_dir, "code")
        # <sha>: the bytes of the zip a code tree came from (Lambda's CodeSize)
        self.sizes_dir = os.path.join(state_dir, "code-sizes")
        for d in (self.functions_dir, self.code_dir, self.sizes_dir):
            os.makedirs(d, mode=0o755, exist_ok=True)
        os.chmod(self.code_dir, 0o755)  # sandboxes (other uids) traverse it
        self.functions: dict[str, Function] = {}
        self.load_errors: list[str] = []
        # How store_code builds: the caps and the disk watermark as configured now (the
        # daemon's, re-read on every deploy so that SIGHUP applies); None = in this process.
        self.build_policy: Callable[[], tuple[codebuild.BuildLimits, Watermark]] | None = None
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
                fn = Function.from_dict(raw)
                if f"{fn.name}.json" != entry:  # delete() and _save() find it by its name
                    raise ValueError(f"the file holds function {fn.name!r}")
                for v in (fn.latest, *fn.versions):
                    if not os.path.isdir(self.code_path(v)):
                        raise ValueError(f"code {v.code_sha256} is missing")
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

        Blocking: the daemon calls it in a worker thread. With :attr:`build_policy` set (the
        daemon sets it), the state directory's disk is checked against its watermark first and
        the build runs in a niced, rlimited child process (:mod:`lambdad.codebuild`), so it
        never grows the daemon; without (tests of the registry itself), in this process.

        Raises:
            InvalidParameterValue: (``field="code"``) not a zip, a damaged or encrypted member,
                an unsafe, duplicate or conflicting path, a symlink, over the size limits, or
                past a build cap (``deploy_build_*``).
            CodeStorageExceeded: the disk is below its free-space watermark.
        """
        if self.build_policy is None:
            sha = codebuild.build(self.code_dir, zip_bytes)
        else:
            limits, watermark = self.build_policy()
            short = watermark.shortfall(self.state_dir)
            if short is not None:
                raise CodeStorageExceeded(f"deploy refused: {short}")
            sha = codebuild.build_in_child(self.code_dir, zip_bytes, limits)
        # Lambda's CodeSize is the deployment package's: kept beside the tree (the first zip
        # that made it, when two zips unpack alike).
        # (A torn write after a crash reads as unknown: CodeSize then falls back to the tree's.)
        with contextlib.suppress(FileExistsError), open(self._zip_size_path(sha), "x") as f:
            f.write(str(len(zip_bytes)))
        return sha

    def _zip_size_path(self, code_sha256: str) -> str:
        return os.path.join(self.sizes_dir, code_sha256)

    def zip_size(self, code_sha256: str) -> int | None:
        """Bytes of the zip a code tree was deployed from (None for trees stored before this
        was recorded)."""
        try:
            with open(self._zip_size_path(code_sha256), "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def add_version(self, config: FunctionConfig, code_sha256: str) -> tuple[Version, bool]:
        """A msgpack deploy: :meth:`set_latest` then :meth:`publish`, one write.

        Returns (version, created); an identical redeploy returns the newest version.
        """
        fn = self._with_latest(self.functions.get(config.name), config, code_sha256)
        fn, version, created = self._published(fn, "")
        if fn is not self.functions.get(config.name):
            self._commit(fn)
        return version, created

    def set_latest(self, config: FunctionConfig, code_sha256: str) -> Version:
        """Make ``config`` + code the function's ``$LATEST`` (creating the function if new).

        No version is published. Returns ``$LATEST``; an identical update changes nothing.
        """
        old = self.functions.get(config.name)
        fn = self._with_latest(old, config, code_sha256)
        if fn is not old:
            self._commit(fn)
            self._collect_code()  # the replaced $LATEST may have been the last user of a tree
        return fn.latest

    def publish(
        self,
        name: str,
        *,
        description: str = "",
        code_sha256: str | None = None,
        revision_id: str | None = None,
    ) -> tuple[Version, bool]:
        """``PublishVersion``: freeze ``$LATEST`` as the next numbered version.

        Args:
            description: this version's description (``PublishVersion``'s ``Description``).
            code_sha256: publish only if ``$LATEST``'s code has this address.
            revision_id: publish only if ``$LATEST``'s RevisionId is this.

        Returns:
            (version, created): created is False when ``$LATEST`` is identical to the newest
            published version, which is then returned.

        Raises:
            ResourceNotFound, PreconditionFailed (revision), InvalidParameterValue (code hash or
            description).
        """
        fn = self.get(name)
        _check_description(description)
        if code_sha256 is not None and code_sha256 != fn.latest.code_sha256:
            raise InvalidParameterValue(
                f"CodeSha256 ({code_sha256}) is different from current CodeSha256 in $LATEST "
                f"({fn.latest.code_sha256}). Please try again with the CodeSha256 in $LATEST.",
                field="CodeSha256",
            )
        if revision_id is not None and revision_id != revision_id_of(fn.latest):
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                name=name,
            )
        fn, version, created = self._published(fn, description)
        if created:
            self._commit(fn)
        return version, created

    def delete_version(self, name: str, number: str) -> Version:
        """``DeleteFunction`` with a version ``Qualifier``.

        Raises:
            ResourceNotFound: no such version.
            InvalidParameterValue: ``$LATEST`` (delete the function instead) or an alias name.
            ResourceConflict: an alias points at it.
        """
        fn = self.get(name)
        if number == LATEST:
            raise InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function.",
                field="Qualifier",
            )
        if not VERSION_RE.fullmatch(number):
            raise InvalidParameterValue(
                f"Qualifier {number!r} is not a version number: delete aliases with DeleteAlias",
                field="Qualifier",
            )
        version = fn.published(number)
        users = sorted(a.name for a in fn.aliases.values() if number in (a.version, *a.weights))
        if users:
            raise ResourceConflict(
                f"Unable to delete version because the following aliases reference it: {users}",
                name=name,
            )
        head: Version | None = fn.latest
        if head is not None and head.number == version.number:
            # $LATEST stays what it was, but is no longer a published version.
            head = replace(head, number=0)
        new = replace(
            fn,
            versions=[v for v in fn.versions if v is not version],
            head=head,
            descriptions={k: v for k, v in fn.descriptions.items() if k != version.number},
        )
        self._commit(new)
        self._collect_code()
        return version

    # -- aliases -----------------------------------------------------------------------

    def create_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        description: str = "",
        weights: Mapping[str, float] | None = None,
    ) -> Alias:
        """``CreateAlias``. Raises ResourceConflict if it exists, ResourceNotFound for a
        missing function or version, InvalidParameterValue for a bad name or routing."""
        fn = self.get(name)
        if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
            raise InvalidParameterValue(
                f"alias name must match (?!^[0-9]+$)[A-Za-z0-9_-]{{1,128}}, got {alias!r}",
                field="Name",
            )
        if alias in fn.aliases:
            raise ResourceConflict(f"Alias already exists: {alias}", name=name)
        _check_description(description)
        new_alias = Alias(
            alias, version, _routing(fn, version, weights or {}), description, str(uuid.uuid4())
        )
        self._commit(replace(fn, aliases={**fn.aliases, alias: new_alias}))
        return new_alias

    def update_alias(
        self,
        name: str,
        alias: str,
        *,
        version: str | None = None,
        description: str | None = None,
        weights: Mapping[str, float] | None = None,
        revision_id: str | None = None,
    ) -> Alias:
        """``UpdateAlias``: ``None`` leaves a field as it is; ``weights={}`` removes routing.

        Raises ResourceNotFound, PreconditionFailed (revision), InvalidParameterValue.
        """
        fn = self.get(name)
        old = fn.alias(alias)
        if revision_id is not None and revision_id != old.revision_id:
            raise PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                name=name,
            )
        target = old.version if version is None else version
        if description is not None:
            _check_description(description)
        new_weights = _routing(fn, target, old.weights if weights is None else weights)
        new_alias = Alias(
            alias,
            target,
            new_weights,
            old.description if description is None else description,
            str(uuid.uuid4()),
        )
        self._commit(replace(fn, aliases={**fn.aliases, alias: new_alias}))
        return new_alias

    def delete_alias(self, name: str, alias: str) -> Alias:
        fn = self.get(name)
        old = fn.alias(alias)
        self._commit(replace(fn, aliases={k: v for k, v in fn.aliases.items() if k != alias}))
        return old

    def set_tags(self, name: str, tags: Mapping[str, str]) -> Function:
        """Replace the function's tags (TagResource / UntagResource compute the new set)."""
        fn = replace(self.get(name), tags=dict(tags))
        self._commit(fn)
        return fn

    def set_provisioned(self, name: str, qualifier: str, count: int | None) -> Function:
        """Set (``count``) or remove (None) a provisioned-concurrency record."""
        old = self.get(name)
        provisioned = {k: v for k, v in old.provisioned.items() if k != qualifier}
        if count is not None:
            provisioned[qualifier] = count
        fn = replace(old, provisioned=provisioned)
        self._commit(fn)
        return fn

    def resolve(
        self, name: str, qualifier: str | None, rand: Callable[[], float] = random.random
    ) -> Target:
        """:meth:`Function.resolve` of function ``name``."""
        return self.get(name).resolve(qualifier, rand)

    # -- internals ---------------------------------------------------------------------

    def _with_latest(
        self, fn: Function | None, config: FunctionConfig, code_sha256: str
    ) -> Function:
        """``fn`` with $LATEST set (the same object if nothing changes)."""
        sha = version_sha256(config, code_sha256)
        if fn is None:
            return Function(config.name, head=Version(0, config, code_sha256, sha, time.time()))
        if fn.latest.sha256 == sha:
            return fn
        now = time.time()
        if fn.versions and fn.versions[-1].sha256 == sha:
            # Back to exactly the newest version: $LATEST is that version again.
            return replace(fn, head=replace(fn.versions[-1], created=now))
        return replace(fn, head=Version(0, config, code_sha256, sha, now))

    def _published(self, fn: Function, description: str) -> tuple[Function, Version, bool]:
        head = fn.latest
        if fn.versions and head.number == fn.versions[-1].number:
            return fn, fn.versions[-1], False
        number = fn.last_number + 1
        version = replace(head, number=number, created=time.time())
        descriptions = (
            {**fn.descriptions, number: description} if description else (fn.descriptions)
        )
        new = replace(
            fn,
            versions=[*fn.versions, version],
            head=None,
            last_number=number,
            descriptions=descriptions,
        )
        return new, version, True

    def _commit(self, fn: Function) -> None:
        self._save(fn)
        self.functions[fn.name] = fn

    def delete(self, name: str) -> Function:
        fn = self.get(name)
        os.unlink(os.path.join(self.functions_dir, f"{name}.json"))
        del self.functions[name]
        self._collect_code()
        return fn

    def _save(self, fn: Function) -> None:
        doc: dict[str, Any] = fn.to_dict()
        path = os.path.join(self.functions_dir, f"{fn.name}.json")
        atomic_write(path, json.dumps(doc, indent=1, sort_keys=True).encode())

    def _collect_code(self) -> None:
        used = {v.code_sha256 for fn in self.functions.values() for v in (fn.latest, *fn.versions)}
        for entry in os.listdir(self.sizes_dir):
            if entry not in used:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.sizes_dir, entry))
        for entry in os.listdir(self.code_dir):
            if entry not in used and not entry.startswith(".tmp-"):
                # Sandboxes that still run it hold their own (detached) mount of the tree.
                shutil.rmtree(os.path.join(self.code_dir, entry), ignore_errors=True)


def _check_description(description: object) -> None:
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        raise InvalidParameterValue(
            f"Description must be a string of at most {DESCRIPTION_MAX} characters",
            field="Description",
        )


def _routing(fn: Function, version: str, weights: Mapping[str, float]) -> dict[str, float]:
    """Validate an alias's target and AdditionalVersionWeights; return the weights to keep."""
    if not isinstance(version, str) or not (version == LATEST or VERSION_RE.fullmatch(version)):
        raise InvalidParameterValue(
            f"FunctionVersion must be $LATEST or a version number, got {version!r}",
            field="FunctionVersion",
        )
    if version != LATEST:
        fn.published(version)  # raises ResourceNotFound
    if not isinstance(weights, Mapping):
        raise InvalidParameterValue(
            "AdditionalVersionWeights must map a version to a weight",
            field="AdditionalVersionWeights",
        )
    if len(weights) > 1:
        raise InvalidParameterValue(
            "AdditionalVersionWeights may name one additional version only",
            field="AdditionalVersionWeights",
        )
    out: dict[str, float] = {}
    for extra, weight in weights.items():
        if version == LATEST:
            raise InvalidParameterValue(
                "$LATEST is not supported for an alias pointing to more than 1 version",
                field="AdditionalVersionWeights",
            )
        if not isinstance(extra, str) or not VERSION_RE.fullmatch(extra):
            raise InvalidParameterValue(
                f"additional version must be a published version number, got {extra!r}",
                field="AdditionalVersionWeights",
            )
        if extra == version:
            raise InvalidParameterValue(
                f"Invalid function version {extra}. Function version {extra} is already "
                "included in routing configuration.",
                field="AdditionalVersionWeights",
            )
        fn.published(extra)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not (0.0 <= weight <= 1.0)
        ):
            raise InvalidParameterValue(
                f"weight of version {extra} must be a number from 0.0 to 1.0, got {weight!r}",
                field="AdditionalVersionWeights",
            )
        out[extra] = float(weight)
    return out
