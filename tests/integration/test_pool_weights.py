"""A pool refill never takes a core from a sandbox a caller needs: its cgroup starts at the
lowest CPU weight and gets its function's weight once it is specialized
(``sandbox.defaults.POOL_REFILL_LIMITS``). Read from the host, as root, in the sandboxes' own
cgroups of a real daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.cgroups import CgroupLimits
from sandbox.defaults import POOL_LIMITS, POOL_REFILL_LIMITS
from tests.conftest import DaemonProcess, uid_of, wait_for, write_function

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-sandbox cgroups need root")

SANDBOX_UID_MIN = 200_000  # a specialized sandbox's uid (sandbox.zygote.UID_BASE)
HANDLER = "def handler(event, context):\n    return 'ok'\n"


def _weight(pid: int) -> tuple[int, int]:
    """(cgroup version, the CPU weight file's value) of the process's own cgroup."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy != "0" and "cpu" in controllers.split(","):
            for mount in (controllers, "cpu"):
                shares = Path(f"/sys/fs/cgroup/{mount}{path}/cpu.shares")
                if shares.exists():
                    return 1, int(shares.read_text())
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                weight = Path(f"{mount}{line[3:]}/cpu.weight")
                if weight.exists():
                    return 2, int(weight.read_text())
    pytest.skip("no cpu controller for the sandboxes' cgroups on this host")


def _expected(version: int, limits: CgroupLimits) -> int:
    return limits.v1_cpu_shares() if version == 1 else limits.v2_cpu_weight()


def _in_own_cgroup(pid: int) -> bool:
    """Past its first set-up step (a forked sandbox starts in the zygote's cgroup)."""
    paths = [line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().split()]
    return any(path.startswith("/lambdad") for path in paths)


def _pooled(daemon: DaemonProcess) -> list[int]:
    """The generic sandboxes (still uid 0) that have joined their own cgroup."""
    return [p for p in daemon.sandbox_pids() if uid_of(p) == 0 and _in_own_cgroup(p)]


def test_a_refill_runs_at_the_lowest_weight_and_its_function_gets_its_own(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    pooled = wait_for(lambda: _pooled(daemon) if len(_pooled(daemon)) >= 2 else None)
    version, weight = _weight(pooled[0])
    assert weight == _expected(version, POOL_REFILL_LIMITS)
    assert weight < _expected(version, POOL_LIMITS)

    code = write_function(tmp_path / "weights", HANDLER)
    with daemon.client() as c:
        c.deploy("weights-128", code)  # the pool's own limits: only the weight is written
        c.deploy("weights-512", code, memory_mb=512)  # every limit is written
        for name in ("weights-128", "weights-512"):
            inv = c.invoke(name, {})
            assert inv.error is None and inv.report is not None
            assert inv.report.source == "pool"  # a refill that was ready
    specialized = sorted(
        _weight(p)[1] for p in daemon.sandbox_pids() if uid_of(p) >= SANDBOX_UID_MIN
    )
    assert specialized == [
        _expected(version, CgroupLimits(memory_mb=128)),
        _expected(version, CgroupLimits(memory_mb=512)),
    ]
    # The refills that replaced them are back at the lowest weight.
    refills = wait_for(lambda: [p for p in _pooled(daemon) if p not in pooled] or None)
    assert {_weight(p)[1] for p in refills} == {_expected(version, POOL_REFILL_LIMITS)}
