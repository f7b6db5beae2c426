"""Free-disk watermarks: below them the daemon refuses new work instead of filling the disk.

What grows the state directory on request is deploys (code trees) and async events (payloads
in SQLite). Both are refused while the file system that holds the state directory has less
free space than ``disk_min_free_mb`` or than ``disk_min_free_percent`` of its size — whichever
is larger — so the invocations already accepted, the log lines and the records still have
room. One ``statvfs`` per check (about a microsecond): no cache to go stale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Watermark:
    """``DaemonConfig.disk_min_free_mb`` and ``disk_min_free_percent``."""

    min_free_mb: int
    min_free_percent: float

    def shortfall(self, path: str) -> str | None:
        """Why ``path``'s file system is below the watermark, or None if it is not."""
        st = os.statvfs(path)
        free = st.f_bavail * st.f_frsize  # what an unprivileged writer may still use
        size = st.f_blocks * st.f_frsize
        need = max(self.min_free_mb * 2**20, int(size * self.min_free_percent / 100))
        if free >= need:
            return None
        return (
            f"the file system of {path} has {free // 2**20} MB free, under the "
            f"{need // 2**20} MB the daemon keeps free (disk_min_free_mb = {self.min_free_mb}, "
            f"disk_min_free_percent = {self.min_free_percent:g})"
        )
