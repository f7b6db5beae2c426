"""No inode is shared between a sandbox and the host, or between two sandboxes (issue 12,
point 2): locks and inotify watches taken inside a sandbox never meet anyone else's.

A read-only bind mount shares the host's inodes: an exclusive ``flock`` on ``/usr/bin/env``
inside a sandbox made the host's ``flock -n`` fail, and an inotify watch on ``/var/task`` saw
another function with the same code (one content-addressed directory on the host) run its
Init. Each sandbox now sees overlays of its own (``sandbox/mounts.py``).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import lambdad
from lambdad.client import Client
from sandbox.runtimes import python as python_runtime
from tests.conftest import DaemonProcess, wait_for
from tests.security.conftest import CALL_TIMEOUT_S, assert_daemon_serves, attack, deploy

pytestmark = pytest.mark.root


def _inside(host_path: str) -> str:
    """Where a host path of the runtime appears inside a sandbox."""
    for prefix, inside in python_runtime.sandbox_layout().path_map.items():
        if host_path.startswith(prefix + "/"):
            return inside + host_path[len(prefix) :]
    raise AssertionError(f"{host_path} is not under the runtime's directories")


def _lock_nb(path: str) -> str:
    """Try the exclusive lock the host would take; "ok", or the errno's name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "ok"
    except BlockingIOError:
        return "EAGAIN"
    finally:
        os.close(fd)


def test_locks_and_watches_do_not_cross_the_sandbox(
    client: Client, shared_daemon: DaemonProcess
) -> None:
    # A file of the runtime's own directories (the interpreter's library, under /var/lang):
    # lambdad's own code is not visible inside at all any more.
    stdlib_file = os.path.realpath(os.__file__)
    # sandbox path -> the host files that were the same inode before the fix
    pairs = {
        "/usr/bin/env": ["/usr/bin/env"],
        "/dev/null": ["/dev/null"],
        "/etc/ld.so.cache": ["/etc/ld.so.cache"],
        _inside(stdlib_file): [stdlib_file],
    }
    deploy(client, "sec-inode-holder", "inodes", timeout_s=30)
    deploy(client, "sec-inode-twin", "inodes", timeout_s=10)  # the same code: one host dir
    code_files = glob.glob(f"{shared_daemon.state_dir}/code/*/inodes.py")
    assert code_files, "the deployed code is not where the test expects it"
    pairs["/var/task/inodes.py"] = code_files
    token = os.urandom(8).hex()
    event = {
        "mode": "hold",
        "token": token,
        "window_s": 6.0,
        "lock": sorted(pairs),
        "watch": ["/usr/bin", "/var/task", "/var/task/__pycache__",
                  os.path.dirname(_inside(stdlib_file)), *sorted(pairs)],
        "control_open": "/var/task/common.py",
    }
    _, cursor = client.logs("sec-inode-holder")
    with ThreadPoolExecutor(max_workers=1) as pool:
        def hold() -> object:
            with shared_daemon.client(timeout=CALL_TIMEOUT_S) as c:
                return c.invoke("sec-inode-holder", event)

        holding = pool.submit(hold)

        def started() -> bool:
            assert not holding.done(), holding.result()
            text, _ = client.logs("sec-inode-holder", cursor)
            return f"HOLDING {token}" in text

        wait_for(started, timeout=30)
        t0 = time.monotonic()
        # The host locks its own files: nothing a sandbox holds may get in the way.
        host_locks = {p: _lock_nb(p) for paths in pairs.values() for p in paths}
        # The host uses them (as any python program importing os would) ...
        for paths in pairs.values():
            for p in paths:
                with open(p, "rb") as f:
                    f.read(1)
        # ... and another function with the same code starts cold, running its Init (imports
        # from /var/task) and opening the same files inside its own sandbox.
        twin = client.invoke("sec-inode-twin", {"mode": "stat", "paths": sorted(pairs)})
        t1 = time.monotonic()
        inv = holding.result(timeout=CALL_TIMEOUT_S)
    assert inv.error is None, inv.error
    out = inv.result
    start, end = out["window"]
    assert start <= t0 and t1 <= end, "the host's attempts missed the holding window"
    assert twin.error is None, twin.error
    assert twin.report is not None and twin.report.cold

    assert all(o["ok"] for o in out["locks"].values()), out["locks"]
    assert set(out["lock_control"].values()) == {"EAGAIN"}, out["lock_control"]
    assert set(host_locks.values()) == {"ok"}, f"a sandbox's flock blocks the host: {host_locks}"
    assert out["events"] == [], "a sandbox saw others use its files:\n" + json.dumps(
        out["events"][:20], indent=1
    )
    assert any(e["watch"] == "/var/task" and e["name"] == "common.py"
               for e in out["control_events"]), f"the watches saw nothing: {out}"
    # No inode in common: not with the host, not between the two sandboxes.
    for path, (dev, _ino) in out["stats"].items():
        if path in pairs:
            assert dev not in {os.stat(p).st_dev for p in pairs[path]}, path
            assert twin.result["stats"][path][0] != dev, f"{path}: one inode in two sandboxes"
    assert_daemon_serves(client)


def test_mountinfo_and_proc_reveal_nothing_of_the_host(
    client: Client, shared_daemon: DaemonProcess
) -> None:
    """Issue 12, point 10: no host path in the mount table, no boot arguments, and /proc's
    host-describing files masked as Docker masks them."""
    with open("/proc/cmdline", "rb") as f:
        assert f.read().strip(), "this host has no boot arguments: the test proves nothing"
    with open("/proc/self/mountinfo") as f:
        root_source = next(line.split(" - ")[1].split()[1] for line in f
                           if line.split()[4] == "/")
    secrets = sorted({
        shared_daemon.state_dir,
        os.path.dirname(shared_daemon.socket),
        *python_runtime.sandbox_layout().path_map,
        os.path.dirname(os.path.dirname(os.path.realpath(lambdad.__file__))),
        root_source,
    } - {"/", "/usr", ""})
    out = attack(client, "sec-hostinfo", "hostinfo", {"secrets": secrets})
    assert out["leaks"] == {}, f"host paths visible inside: {out['leaks']}"
    assert set(out["fstypes"]) <= {"tmpfs", "overlay", "proc"}, out["fstypes"]
    for name, content in out["masked_files"].items():
        assert content in ("", None), f"/proc/{name} is not masked: {content!r}"
    assert "cmdline" in out["masked_files"] and out["masked_files"]["cmdline"] == ""
    for name, listing in out["masked_dirs"].items():
        assert listing in ([], None), f"/proc/{name} is not masked: {listing}"
    assert out["sys"] is False, "/sys is visible"
    assert_daemon_serves(client)
