"""Resource bombs (SPEC §3, §11): each must hit a limit with a clear result, leave nothing
behind on the host, and leave the daemon and the function itself serving.

Limits under test: the cgroup's ``pids`` limit and RLIMIT_NPROC (fork bomb), the memory
cgroup (memory bomb), the size of the private /tmp and RLIMIT_FSIZE (disk fill), the
invocation timeout (CPU spin), RLIMIT_NOFILE (fd exhaustion).
"""

from __future__ import annotations

import errno
import os
import time

import pytest

from lambdad.client import Client, Invocation
from tests.conftest import wait_for
from tests.security.conftest import (
    assert_daemon_serves,
    attack,
    deploy,
    pidns_from_logs,
    processes_in_pidns,
)

pytestmark = pytest.mark.root

PIDS_MAX = 64  # the default pids limit of a sandbox (lambdad.functions.FunctionConfig)
GONE_WITHIN_S = 15.0


def host_process_count() -> int:
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())


def assert_contained(pidns: int, before: int) -> None:
    """Nothing of the sandbox is left on the host, and the host's process count is back to
    what it was (give or take what other tenants of this host start meanwhile: far fewer
    than a leaked bomb would leave)."""
    wait_for(lambda: not processes_in_pidns(pidns), timeout=GONE_WITHIN_S)
    wait_for(lambda: host_process_count() < before + PIDS_MAX // 2, timeout=GONE_WITHIN_S)


def assert_fresh_sandbox_works(c: Client, name: str) -> Invocation:
    """The next invocation of the bombed function gets a new sandbox, and it works."""
    inv = c.invoke(name, {"mode": "ok"})
    assert inv.error is None, inv.error
    assert inv.report is not None and inv.report.cold, "the bombed sandbox was reused"
    assert inv.result["ok"] and inv.result["pid"] == 1
    return inv


def test_fork_until_refused_is_bounded_by_the_pids_limit(client: Client) -> None:
    out = attack(client, "sec-forks", "bombs", {"mode": "forks", "max": 10_000})
    assert out["error"] is not None and out["error"]["errno"] == errno.EAGAIN, out
    # PID 1 itself counts against the limit too.
    assert PIDS_MAX // 2 <= out["forked"] < PIDS_MAX, out
    # The children were reaped; the warm sandbox is down to its PID 1.
    wait_for(lambda: len(processes_in_pidns(out["pidns"])) == 1, timeout=GONE_WITHIN_S)
    again = client.invoke("sec-forks", {"mode": "ok"})
    assert again.error is None and again.report is not None and not again.report.cold
    assert_daemon_serves(client)


def test_fork_bomb_is_contained(client: Client) -> None:
    before = host_process_count()
    deploy(client, "sec-forkbomb", "bombs", timeout_s=1)
    started = time.monotonic()
    inv = client.invoke("sec-forkbomb", {"mode": "forkbomb"})
    elapsed = time.monotonic() - started
    assert inv.function_error == "Unhandled"
    assert inv.error is not None and inv.error["errorType"] == "Sandbox.Timedout", inv.error
    assert inv.error["errorMessage"] == "Task timed out after 1.00 seconds"
    assert elapsed < 5, f"the bomb held the invocation for {elapsed:.1f} s"
    assert_contained(pidns_from_logs(client, "sec-forkbomb"), before)
    assert_fresh_sandbox_works(client, "sec-forkbomb")
    assert_daemon_serves(client)


def test_memory_bomb_is_killed_at_the_memory_limit(client: Client) -> None:
    before = host_process_count()
    deploy(client, "sec-memory", "bombs", memory_mb=128, timeout_s=20)
    inv = client.invoke("sec-memory", {"mode": "memory", "give_up_mb": 2048})
    assert inv.function_error == "Unhandled", f"the limit did not hold: {inv.result}"
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError", inv.error
    assert "signal: killed" in inv.error["errorMessage"], inv.error
    assert inv.report is not None
    # Max Memory Used comes from the cgroup's peak: right up to the limit, not beyond it.
    assert 64 <= inv.report.max_memory_used_mb <= 128 + 4, inv.report
    assert_contained(pidns_from_logs(client, "sec-memory"), before)
    assert_fresh_sandbox_works(client, "sec-memory")
    assert_daemon_serves(client)


@pytest.mark.parametrize("file_mb", [4, 1024], ids=["many-files", "one-file"])
def test_filling_tmp_stops_at_its_size(client: Client, file_mb: int) -> None:
    tmp_mb = 16
    out = attack(
        client, "sec-tmpfill", "bombs",
        {"mode": "tmpfill", "file_mb": file_mb, "give_up_mb": 1024}, tmp_mb=tmp_mb,
    )
    assert out["tmp_size_mb"] == tmp_mb
    assert out["error"] is not None, f"wrote {out['written_mb']} MB into a {tmp_mb} MB /tmp"
    assert out["error"]["errno"] in (errno.ENOSPC, errno.EFBIG), out["error"]
    assert tmp_mb - 2 <= out["written_mb"] <= tmp_mb, out
    # The sandbox survives a full disk (the handler cleaned up): the next one is warm.
    again = client.invoke("sec-tmpfill", {"mode": "ok"})
    assert again.error is None and again.report is not None and not again.report.cold
    assert_daemon_serves(client)


def test_cpu_spin_is_killed_at_the_timeout(client: Client) -> None:
    before = host_process_count()
    deploy(client, "sec-spin", "bombs", timeout_s=1)
    started = time.monotonic()
    inv = client.invoke("sec-spin", {"mode": "spin"})
    elapsed = time.monotonic() - started
    assert inv.function_error == "Unhandled"
    assert inv.error == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Task timed out after 1.00 seconds",
    }
    assert inv.report is not None and 1000 <= inv.report.duration_ms < 1500, inv.report
    assert elapsed < 3, f"the client waited {elapsed:.1f} s for a 1 s timeout"
    # Both spinners (PID 1 and its child, deaf to SIGTERM) are gone.
    assert_contained(pidns_from_logs(client, "sec-spin"), before)
    assert_fresh_sandbox_works(client, "sec-spin")
    assert_daemon_serves(client)


def test_fd_exhaustion_stops_at_the_nofile_limit(client: Client) -> None:
    out = attack(client, "sec-fds", "bombs", {"mode": "fds", "count": 100_000})
    assert out["emfile"], out
    assert 1000 <= out["opened"] < 1024 and out["highest_fd"] == 1023, out
    again = client.invoke("sec-fds", {"mode": "ok"})
    assert again.error is None and again.report is not None and not again.report.cold
    assert_daemon_serves(client)
