"""Resource limits: a second line of defence behind the cgroup (child half)."""

from __future__ import annotations

import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class Rlimits:
    nofile: int = 1024  # open files (Lambda: 1024)
    fsize_bytes: int = 512 * 1024 * 1024  # largest file the handler may write (= tmp size)
    nproc: int = 64  # processes of the sandbox uid (uids are per sandbox, so this is per sandbox)
    core: int = 0  # never dump core


def apply(limits: Rlimits) -> None:
    """Set hard and soft limits; hard limits cannot be raised again without privilege."""
    for what, value in (
        (resource.RLIMIT_NOFILE, limits.nofile),
        (resource.RLIMIT_FSIZE, limits.fsize_bytes),
        (resource.RLIMIT_NPROC, limits.nproc),
        (resource.RLIMIT_CORE, limits.core),
    ):
        try:
            resource.setrlimit(what, (value, value))
        except (ValueError, OSError) as exc:
            raise OSError(f"setrlimit({what}, {value}): {exc}") from exc
