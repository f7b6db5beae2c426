"""Resource bombs (SPEC §3, §11): each must hit a limit with a clear result, leave nothing
behind on the host, and leave the daemon and the function itself serving.

Limits under test: the cgroup's ``pids`` limit and RLIMIT_NPROC (fork bomb), the memory
cgroup (memory bomb, data parked in socket buffers), the size of the private /tmp and
RLIMIT_FSIZE (disk fill), the invocation timeout (CPU spin), RLIMIT_NOFILE (fd exhaustion),
and the daemon's own robustness against what a sandbox writes to its channel.
"""

from __future__ import annotations

import errno
import os
import time

import pytest

from lambdad.client import Client, Invocation
from lambdad.errors import LambdadError
from tests.conftest import DaemonProcess, wait_for
from tests.security.conftest import (
    CALL_TIMEOUT_S,
    assert_daemon_serves,
    attack,
    boot_ticks,
    deploy,
    pidns_from_logs,
    processes_in_pidns,
)

pytestmark = pytest.mark.root

PIDS_MAX = 64  # the default pids limit of a sandbox (lambdad.functions.FunctionConfig)
GONE_WITHIN_S = 15.0


def host_process_count() -> int:
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())


def assert_contained(pidns: int, before: int, killed_by: int) -> None:
    """Nothing of the sandbox (pid namespace ``pidns``, killed by boot tick ``killed_by``) is
    left on the host, and the host's process count is back to what it was (give or take what
    other tenants of this host start meanwhile: far fewer than a leaked bomb would leave)."""
    wait_for(lambda: not processes_in_pidns(pidns, killed_by), timeout=GONE_WITHIN_S)
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
    # (This sandbox is alive, so its namespace's inode number cannot have been reused.)
    wait_for(lambda: len(processes_in_pidns(out["pidns"])) == 1, timeout=GONE_WITHIN_S)
    again = client.invoke("sec-forks", {"mode": "ok"})
    assert again.error is None and again.report is not None and not again.report.cold
    assert_daemon_serves(client)


def test_fork_bomb_is_contained(client: Client) -> None:
    before = host_process_count()
    deploy(client, "sec-forkbomb", "bombs", timeout_s=1)
    started = time.monotonic()
    inv = client.invoke("sec-forkbomb", {"mode": "forkbomb"})
    elapsed, killed_by = time.monotonic() - started, boot_ticks()
    assert inv.function_error == "Unhandled"
    assert inv.error is not None and inv.error["errorType"] == "Sandbox.Timedout", inv.error
    assert inv.error["errorMessage"] == "Task timed out after 1.00 seconds"
    assert elapsed < 5, f"the bomb held the invocation for {elapsed:.1f} s"
    assert_contained(pidns_from_logs(client, "sec-forkbomb"), before, killed_by)
    assert_fresh_sandbox_works(client, "sec-forkbomb")
    assert_daemon_serves(client)


def test_memory_bomb_is_killed_at_the_memory_limit(client: Client) -> None:
    before = host_process_count()
    deploy(client, "sec-memory", "bombs", memory_mb=128, timeout_s=20)
    inv = client.invoke("sec-memory", {"mode": "memory", "give_up_mb": 2048})
    killed_by = boot_ticks()
    assert inv.function_error == "Unhandled", f"the limit did not hold: {inv.result}"
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError", inv.error
    assert "signal: killed" in inv.error["errorMessage"], inv.error
    assert inv.report is not None
    # Max Memory Used comes from the cgroup's peak: right up to the limit, not beyond it.
    assert 64 <= inv.report.max_memory_used_mb <= 128 + 4, inv.report
    assert_contained(pidns_from_logs(client, "sec-memory"), before, killed_by)
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
    elapsed, killed_by = time.monotonic() - started, boot_ticks()
    assert inv.function_error == "Unhandled"
    assert inv.error == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "Task timed out after 1.00 seconds",
    }
    assert inv.report is not None and 1000 <= inv.report.duration_ms < 1500, inv.report
    assert elapsed < 5, f"the client waited {elapsed:.1f} s for a 1 s timeout"
    # Both spinners (PID 1 and its child, deaf to SIGTERM) are gone.
    assert_contained(pidns_from_logs(client, "sec-spin"), before, killed_by)
    assert_fresh_sandbox_works(client, "sec-spin")
    assert_daemon_serves(client)


def test_fd_exhaustion_stops_at_the_nofile_limit(client: Client) -> None:
    out = attack(client, "sec-fds", "bombs", {"mode": "fds", "count": 100_000})
    assert out["emfile"], out
    assert 1000 <= out["opened"] < 1024 and out["highest_fd"] == 1023, out
    again = client.invoke("sec-fds", {"mode": "ok"})
    assert again.error is None and again.report is not None and not again.report.cold
    assert_daemon_serves(client)


# -- the sandbox's channel to the daemon -------------------------------------------------------
# The handler shares a process with the runtime, so it can write anything to the runtime's
# socket to the daemon (fd 3). Whatever arrives there is hostile input to the daemon.


@pytest.mark.parametrize("mode", ["garbage", "deep"])
def test_garbage_on_the_channel_costs_only_that_sandbox(client: Client, mode: str) -> None:
    deploy(client, f"sec-chan-{mode}", "channel", timeout_s=10)
    started = time.monotonic()
    inv = client.invoke(f"sec-chan-{mode}", {"mode": mode, "linger_s": 5.0})
    elapsed = time.monotonic() - started
    assert inv.function_error == "Unhandled"
    assert inv.error is not None and inv.error["errorType"] == "Runtime.ExitError", inv.error
    assert elapsed < 2.5, "the daemon waited for the handler instead of dropping the sandbox"
    assert_daemon_serves(client)


def daemon_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(li for li in f if li.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_a_flooded_channel_does_not_grow_the_daemon(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    with daemon.client(timeout=CALL_TIMEOUT_S) as c:
        deploy(c, "sec-chan-flood", "channel", timeout_s=10)
        assert_daemon_serves(c)
        before = daemon_rss_mb(daemon.proc.pid)
        flood_s = 0.8  # shorter than the idle time before a sandbox is frozen (1 s)
        deadline = time.monotonic() + flood_s
        c.invoke("sec-chan-flood", {"mode": "flood", "seconds": flood_s})
        # The flood's end is fixed in advance (CLOCK_MONOTONIC is host-wide): wait for it.
        wait_for(lambda: time.monotonic() > deadline + 0.2, timeout=10)
        grown = daemon_rss_mb(daemon.proc.pid) - before
        assert_daemon_serves(c)
    assert grown < 64, f"the daemon grew by {grown:.0f} MB while one sandbox flooded it"


def test_a_malformed_result_is_an_error_not_a_leaked_sandbox(daemon: DaemonProcess) -> None:
    with daemon.client(timeout=CALL_TIMEOUT_S) as c:
        budget_mb = int(c.stats()["memory_budget_mb"])
        # Attackers whose memory sizes add up to all of the budget but 64 MB, should their
        # sandboxes stay charged to it: 10 GB ones, then one for the rest.
        sizes = [10240] * (budget_mb // 10240)
        if budget_mb % 10240 >= 128:
            sizes.append(budget_mb % 10240 - 64)
        failures: list[str] = []
        for size in sizes:
            name = f"sec-chan-malformed-{size}"
            deploy(c, name, "channel", memory_mb=size, timeout_s=10)
            try:
                inv = c.invoke(name, {"mode": "malformed_result"})
            except LambdadError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if inv.function_error != "Unhandled" or inv.error is None:
                failures.append(f"not an Unhandled error: {inv.error} {inv.result}")
        # Every other function must still get a sandbox (128 MB of the budget).
        assert_daemon_serves(c)
    assert not failures, failures


def test_socket_buffers_count_against_the_memory_limit(client: Client) -> None:
    memory_mb = 128
    deploy(client, "sec-sockets", "bombs", memory_mb=memory_mb, timeout_s=20)
    # Twice the limit proves the point; more would only press on the rest of the host.
    inv = client.invoke(
        "sec-sockets", {"mode": "sockets", "max_pairs": 480, "give_up_mb": 2 * memory_mb}
    )
    if inv.error is None:  # it returned: how much did it manage to park?
        out = inv.result
        # TCP may not refuse some of what is already in flight when the limit is reached: it
        # charges those bytes anyway (forced, __GFP_NOFAIL), so the counter can end a little
        # over its limit. Measured: up to 129.6 MB payload parked at 128 MB, with or without
        # the issue-12 changes; the hole this guards against parked gigabytes.
        assert out["parked_mb"] <= memory_mb * 1.05, (
            f"{out['parked_mb']:.0f} MB parked in socket buffers by a {memory_mb} MB sandbox "
            f"({out['pairs']} connections; host TCP memory {out['tcp_mem_pages']} pages)"
        )
    else:  # or the memory cgroup killed it: contained as well
        assert inv.error["errorType"] == "Runtime.ExitError", inv.error
    assert_daemon_serves(client)
