"""Host-wide kernel counters: no sandbox can exhaust one for the host or another sandbox
(issue 12, point 3). Each test takes all a sandbox can get of one counter, keeps it (the
sandbox stays warm), and shows the host and another function unharmed meanwhile. The table in
docs/security.md ("Shared host resources") says how each counter is denied or budgeted.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import tempfile

import pytest

from lambdad.client import Client
from sandbox.rlimits import MAX_NPROC
from tests.security.conftest import assert_daemon_serves, attack

pytestmark = pytest.mark.root

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
LOCKS = 20_000


def _nr(name: str) -> int:
    import pyseccomp

    number = int(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name))
    assert number >= 0, name
    return number


def _read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read().split()[0])


def test_linux_aio_is_absent_so_aio_max_nr_cannot_be_taken(client: Client) -> None:
    before = _read_int("/proc/sys/fs/aio-nr")
    out = attack(client, "sec-aio", "counters", {"mode": "aio", "nr": _nr("io_setup")})
    assert out["ok"] is False and out["errno"] == errno.ENOSYS, out  # "kernel without AIO"
    assert _read_int("/proc/sys/fs/aio-nr") <= before
    # The host's own io_setup works.
    ctx = ctypes.c_ulong(0)
    assert _libc.syscall(_nr("io_setup"), 128, ctypes.byref(ctx)) == 0, ctypes.get_errno()
    assert _libc.syscall(_nr("io_destroy"), ctx) == 0
    assert_daemon_serves(client)


def test_a_sandbox_holds_at_most_max_nproc_tasks_whatever_pids_max_says(client: Client) -> None:
    pid_max = _read_int("/proc/sys/kernel/pid_max")
    out = attack(client, "sec-pids", "counters", {"mode": "threads", "max": 8192},
                 pids_max=1024, memory_mb=512, timeout_s=60)
    # Refused at the per-sandbox cap (the runtime's own tasks count too), not by memory.
    assert out["error"] is not None, out
    assert MAX_NPROC - 16 <= out["threads"] < MAX_NPROC, out
    assert pid_max // 32 >= MAX_NPROC, "the cap is not a small share of this host's pid_max"
    assert_daemon_serves(client)


def test_inotify_instances_and_watches_are_the_sandboxs_own(client: Client) -> None:
    limit = _read_int("/proc/sys/fs/inotify/max_user_instances")
    out = attack(client, "sec-inotify", "counters", {"mode": "inotify", "max_watches": 200_000},
                 memory_mb=512, timeout_s=120)
    assert out["error"] == "EMFILE" and out["instances"] <= limit, out
    # Watches stop at the uid's limit, or sooner at the sandbox's memory or /tmp inode limit.
    assert out["watch_error"] in ("ENOSPC", "ENOMEM"), out
    # Meanwhile (the sandbox holds all of it, warm): another function and the host are unharmed.
    other = attack(client, "sec-inotify-other", "counters", {"mode": "inotify_one"})
    assert other == {"ok": True}, other
    fd = _libc.inotify_init1(os.O_CLOEXEC)
    assert fd >= 0, ctypes.get_errno()
    try:
        assert _libc.inotify_add_watch(fd, b"/tmp", 0x100) >= 0, ctypes.get_errno()
    finally:
        os.close(fd)
    assert_daemon_serves(client)


def _key_users() -> set[int]:
    with open("/proc/key-users") as f:
        return {int(line.split(":")[0]) for line in f if line.strip()}


def test_keyrings_are_denied(client: Client) -> None:
    out = attack(client, "sec-keys", "counters", {"mode": "keys", "count": 300,
                                                  "nr": _nr("add_key")})
    assert out["outcomes"] == ["EPERM"], out
    assert out["uid"] not in _key_users(), "the sandbox's uid holds keys on the host"
    assert_daemon_serves(client)


class _MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long),
                ("pad", ctypes.c_long * 4)]


def test_posix_message_queues_are_per_sandbox(client: Client) -> None:
    queues_max = _read_int("/proc/sys/fs/mqueue/queues_max")
    out = attack(client, "sec-mqueue", "counters", {"mode": "mqueues"})
    assert out["bytes"]["error"] == "EMFILE" and out["bytes"]["queues"] <= 10, out  # 800 KB
    assert out["count"]["error"] == "ENOSPC", out  # the namespace's queues_max
    assert out["bytes"]["queues"] + out["count"]["queues"] == queues_max, out
    other = attack(client, "sec-mqueue-other", "counters", {"mode": "mqueue_one"})
    assert other == {"ok": True}, other
    name = f"/lambdad-host-{os.getpid()}".encode()
    attr = _MqAttr(0, 10, 8192, 0)
    fd = _libc.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr))
    assert fd >= 0, ctypes.get_errno()
    os.close(fd)
    _libc.mq_unlink(name)
    assert_daemon_serves(client)


def test_file_locks_cost_only_the_sandboxs_memory(client: Client) -> None:
    out = attack(client, "sec-locks", "counters", {"mode": "locks", "max": LOCKS},
                 timeout_s=60)
    # No host-wide lock limit exists: every lock is a kernel object charged to the sandbox's
    # memory cgroup, so the only way to stop it is its memory limit.
    assert out["locks"] == LOCKS or out["error"] in ("ENOLCK", "ENOMEM"), out
    other = attack(client, "sec-locks-other", "counters", {"mode": "locks", "max": 100})
    assert other == {"locks": 100, "error": None}, other
    with tempfile.TemporaryFile() as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    assert_daemon_serves(client)
