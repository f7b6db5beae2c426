"""``memory_merge`` (opt-in): the daemon starts ksmd and its sandboxes' memory is mergeable;
ksmd then really merges their pages. Without it, no sandbox is ever mergeable. Real daemons,
read from the host as root (/proc/PID/ksm_stat, Linux 6.1+)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, running_daemon, uid_of, wait_for, write_function

KSM = Path("/sys/kernel/mm/ksm")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (KSM / "run").exists(), reason="needs root and KSM"
)
SANDBOX_UID_MIN = 200_000
HANDLER = "def handler(event, context):\n    return 'merged'\n"


@pytest.fixture
def ksm_restored() -> Iterator[None]:
    """The host's ksmd as it was: the daemon leaves it running on purpose."""
    before = (KSM / "run").read_text().strip()
    yield
    if before != "1":
        (KSM / "run").write_text("2")  # stop and unmerge every page
    (KSM / "run").write_text(before)


def _specialized(daemon: DaemonProcess) -> list[int]:
    return [p for p in daemon.sandbox_pids() if uid_of(p) >= SANDBOX_UID_MIN]


def _ksm_stat(pid: int) -> dict[str, str]:
    path = Path(f"/proc/{pid}/ksm_stat")
    if not path.exists():
        pytest.skip("no /proc/PID/ksm_stat on this kernel")
    # "ksm_merging_pages 12" and "ksm_merge_any: yes": both forms in one file.
    return dict(line.replace(":", "").split(None, 1) for line in path.read_text().splitlines())


def _warm_sandboxes(daemon: DaemonProcess, tmp_path: Path, n: int) -> list[int]:
    """n initialized sandboxes of one function (min_warm: the daemon keeps them warm)."""
    code = write_function(tmp_path / "merge", HANDLER)
    with daemon.client() as c:
        c.deploy("merge", code, min_warm=n)
        assert c.invoke("merge", {}).error is None
    return wait_for(lambda: _specialized(daemon) if len(_specialized(daemon)) >= n else None)


def test_with_memory_merge_ksmd_merges_the_sandboxes_pages(
    tmp_path: Path, ksm_restored: None
) -> None:
    config = "[daemon]\npool_size = 2\nmemory_merge = true\n"
    for daemon in running_daemon(config):
        assert (KSM / "run").read_text().strip() == "1"
        sandboxes = _warm_sandboxes(daemon, tmp_path, 3)
        for pid in sandboxes:
            assert "yes" in _ksm_stat(pid).get("ksm_merge_any", "")
        # Idle sandboxes of one function hold identical copies of the interpreter's pages.
        wait_for(
            lambda s=sandboxes: sum(int(_ksm_stat(p)["ksm_merging_pages"]) for p in s) > 100,
            timeout=60,
            interval=0.2,
        )


def test_without_it_no_sandbox_is_mergeable(daemon: DaemonProcess, tmp_path: Path) -> None:
    for pid in _warm_sandboxes(daemon, tmp_path, 2):
        stat = _ksm_stat(pid)
        assert "no" in stat.get("ksm_merge_any", "no")
        assert stat.get("ksm_merging_pages", "0") == "0"
