"""cgroup2's favordynmods: what the remount passes (pure logic, the mount call captured), and
the real thing on this host as root: the daemon turns it on and keeps the mount's flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sandbox import _libc, cgroups
from tests.conftest import make_daemon

SYSTEMD_V2 = (
    "25 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)
HYBRID = (
    "31 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "32 25 0:27 / /sys/fs/cgroup/un\\040ified rw,nosuid,relatime - cgroup2 cgroup2 rw\n"
)


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(_libc, "mount", lambda *args: calls.append(args))
    return calls


def test_the_remount_keeps_the_super_options_and_the_mount_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _capture(monkeypatch)
    (tmp_path / "mountinfo").write_text(SYSTEMD_V2)
    assert "remounted" in cgroups.favor_dynmods(str(tmp_path / "mountinfo"))
    flags = _libc.MS_REMOUNT | _libc.MS_NOSUID | _libc.MS_NODEV | _libc.MS_NOEXEC | 1 << 21
    assert calls == [
        (None, "/sys/fs/cgroup", None, flags, "nsdelegate,memory_recursiveprot,favordynmods")
    ]


def test_a_hybrid_hosts_cgroup2_is_used_and_a_set_option_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _capture(monkeypatch)
    (tmp_path / "mountinfo").write_text(HYBRID)
    cgroups.favor_dynmods(str(tmp_path / "mountinfo"))
    assert calls == [
        (None, "/sys/fs/cgroup/un ified", None, _libc.MS_REMOUNT | 2 | 1 << 21, "favordynmods")
    ]
    (tmp_path / "mountinfo").write_text(HYBRID.replace("cgroup2 rw", "cgroup2 rw,favordynmods"))
    assert "already" in cgroups.favor_dynmods(str(tmp_path / "mountinfo"))
    (tmp_path / "mountinfo").write_text(HYBRID.splitlines()[0] + "\n")
    assert "no cgroup2" in cgroups.favor_dynmods(str(tmp_path / "mountinfo"))
    assert len(calls) == 1


def _cgroup2() -> tuple[str, str, str] | None:
    """(mount point, mount options, super options) of this host's first cgroup2 mount."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        dash = fields.index("-", 6)
        if fields[dash + 1] == "cgroup2":
            return fields[4], fields[5], fields[dash + 3]
    return None


@pytest.mark.skipif(os.geteuid() != 0 or _cgroup2() is None, reason="needs root and cgroup2")
def test_the_daemon_turns_it_on_and_keeps_the_mounts_flags(tmp_path: Path) -> None:
    found = _cgroup2()
    assert found is not None
    target, mount_options, super_options = found
    kept = [o for o in super_options.split(",") if o not in ("rw", "ro", "favordynmods")]
    # off, as on a fresh host
    _libc.mount(None, target, None, cgroups.remount_flags(mount_options), ",".join(kept))
    assert "favordynmods" not in (_cgroup2() or ("", "", ""))[2]

    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    off = make_daemon(
        str(tmp_path / "off"), "[daemon]\npool_size = 0\ncgroup_favordynmods = false\n"
    )
    off.start()
    off.stop()
    assert "favordynmods" not in (_cgroup2() or ("", "", ""))[2]

    on = make_daemon(str(tmp_path / "on"), "[daemon]\npool_size = 0\n")
    on.start()
    try:
        after = _cgroup2()
        assert after is not None and after[0] == target
        assert "favordynmods" in after[2].split(",")
        assert after[1] == mount_options  # nosuid, nodev, ... as they were
        assert [o for o in after[2].split(",") if o not in ("rw", "favordynmods")] == kept
    finally:
        on.stop()
