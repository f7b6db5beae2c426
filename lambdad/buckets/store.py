"""Bucket records: a name and the directory that holds its objects, persisted.

One JSON file per bucket under ``STATE/buckets/records/``, written atomically
(:func:`lambdad.registry.atomic_write`) and read back at start; a damaged one is reported and
skipped. A bucket made without ``--path`` is *managed*: its directory is
``STATE/buckets/data/NAME``, created with it and removed with it (only when empty, as S3
refuses to delete a bucket that is not). A bucket made with ``--path DIR`` names a directory
that exists; removing the bucket never touches it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from lambdad.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from lambdad.registry import atomic_write, load_records

# S3's bucket naming rules (3-63 characters; lowercase letters, digits, dots, hyphens;
# starting and ending with a letter or a digit; no "..").
NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    path: str  # the directory (absolute, symlinks resolved)
    managed: bool  # its directory is the daemon's (STATE/buckets/data/NAME)
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "managed": self.managed,
                "created": self.created}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Bucket:
        return cls(str(d["name"]), str(d["path"]), bool(d["managed"]), float(d["created"]))


def check_name(name: Any) -> str:
    """Raises InvalidParameterValue unless ``name`` follows S3's bucket naming rules."""
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None or ".." in name:
        raise InvalidParameterValue(
            "a bucket name is 3-63 lowercase letters, digits, dots and hyphens, starting and "
            f"ending with a letter or digit (S3's rules), got {name!r}",
            field="name",
        )
    return name


def check_path(path: Any) -> str:
    """An existing directory given as ``--path``: absolute, resolved. Raises
    InvalidParameterValue naming what is wrong."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidParameterValue(f"path must be an absolute directory, got {path!r}",
                                    field="path")  # fmt: skip
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        what = "does not exist" if not os.path.exists(real) else "is not a directory"
        raise InvalidParameterValue(f"bucket path {path!r} {what}", field="path")
    if real == "/":
        raise InvalidParameterValue("a bucket cannot be the root directory", field="path")
    return real


def _checked_bucket(doc: Any) -> Bucket:
    bucket = Bucket.from_dict(doc)
    check_name(bucket.name)
    return bucket


class BucketStore:
    """Every bucket, by name; written through on every change."""

    def __init__(self, state_dir: str) -> None:
        root = os.path.join(state_dir, "buckets")
        self.directory = os.path.join(root, "records")
        self.data = os.path.join(root, "data")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.makedirs(self.data, mode=0o755, exist_ok=True)
        buckets, self.load_errors = load_records(self.directory, _checked_bucket)
        self.buckets: dict[str, Bucket] = {b.name: b for b in buckets}

    def __iter__(self) -> Iterator[Bucket]:
        return iter(sorted(self.buckets.values(), key=lambda b: b.name))

    def get(self, name: str) -> Bucket:
        bucket = self.buckets.get(name)
        if bucket is None:
            raise ResourceNotFound(f"no bucket named {name!r}", bucket=name)
        return bucket

    def create(self, name: Any, path: Any = None) -> Bucket:
        """Raises InvalidParameterValue (name, path), ResourceConflict (the name, or the
        directory, is another bucket's)."""
        check_name(name)
        if name in self.buckets:
            raise ResourceConflict(f"a bucket named {name!r} exists", bucket=name)
        if path is None:
            real = os.path.realpath(os.path.join(self.data, name))
            os.makedirs(real, mode=0o755, exist_ok=True)
            managed = True
        else:
            real, managed = check_path(path), False
        for other in self.buckets.values():
            if (
                real == other.path
                or real.startswith(other.path + "/")
                or other.path.startswith(real + "/")
            ):
                raise ResourceConflict(
                    f"{real!r} overlaps bucket {other.name!r} ({other.path})", bucket=other.name
                )
        bucket = Bucket(name, real, managed, time.time())
        data = json.dumps(bucket.to_dict(), indent=1, sort_keys=True).encode()
        atomic_write(os.path.join(self.directory, name + ".json"), data)
        self.buckets[name] = bucket
        return bucket

    def remove(self, name: str) -> Bucket:
        """Raises ResourceNotFound, ResourceConflict (a managed bucket that holds objects)."""
        bucket = self.get(name)
        if bucket.managed and os.path.isdir(bucket.path) and os.listdir(bucket.path):
            raise ResourceConflict(
                f"bucket {name!r} is not empty ({bucket.path}); remove its objects first "
                "(BucketNotEmpty)",
                bucket=name,
            )
        os.unlink(os.path.join(self.directory, name + ".json"))
        del self.buckets[name]
        if bucket.managed:
            try:
                os.rmdir(bucket.path)
            except OSError:
                pass  # already gone, or written to since the check: the files stay
        return bucket


__all__ = ["Bucket", "BucketStore", "check_name", "check_path"]
