"""The escape battery (SPEC §3, §11): handlers that try to break each isolation row and must fail.

Each test deploys a real handler from ``handlers/`` that makes the forbidden attempt inside a
sandbox and returns the outcome; the test asserts that the attempt failed and that the daemon
still serves an ordinary function afterwards. A hole shows up as an assertion that lists the
attempts that worked.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from lambdad.client import Client, Invocation
from tests.conftest import DaemonProcess, children_of, wait_for
from tests.security.conftest import (
    CALL_TIMEOUT_S,
    assert_all_failed,
    assert_daemon_serves,
    attack,
    deploy,
)

pytestmark = pytest.mark.root

# What "it failed" may look like, per kind of attempt.
NOT_THERE = {errno.ENOENT, errno.EACCES, errno.EPERM}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}
REFUSED_CALL = {errno.EPERM, errno.EACCES, errno.ENOSYS}
UNREACHABLE = {errno.ECONNREFUSED, errno.ENOENT, errno.ENETUNREACH, errno.EHOSTUNREACH,
               errno.EADDRNOTAVAIL, errno.ETIMEDOUT}


# -- mount namespace: host secrets, read-only root ----------------------------------------------


def test_host_secrets_are_not_visible(
    client: Client, shared_daemon: DaemonProcess
) -> None:
    host_paths = [
        shared_daemon.state_dir,  # every deployed function's code lives here
        os.path.dirname(shared_daemon.socket),
        str(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),  # the checkout
        "/work",
        "/var/lib/lambdad",
    ]
    out = attack(client, "sec-secrets", "fs", {"mode": "secrets", "host_paths": host_paths})
    assert_all_failed(out["attempts"], NOT_THERE)
    # Exactly SPEC §3's root: the runtime's read-only directories (which of /lib32, /lib64...
    # exist depends on the host), /dev, /etc, /opt, /proc, /tmp, /var, and /mnt (SPEC §12: a
    # read-only tmpfs holding only the function's own file-system mounts) -- nothing else.
    assert {"dev", "etc", "opt", "proc", "tmp", "usr", "var"} <= set(out["root"])
    assert set(out["root"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "mnt",
                                "opt", "proc", "sbin", "tmp", "usr", "var"}, out["root"]
    assert_daemon_serves(client)


def test_root_usr_and_task_are_read_only(client: Client) -> None:
    out = attack(client, "sec-writes", "fs", {"mode": "writes"})
    assert out["control"]["ok"], f"/tmp must be writable: {out['control']}"
    assert_all_failed(out["attempts"], NOT_WRITABLE)
    assert_daemon_serves(client)


def test_another_sandboxs_tmp_is_private(client: Client) -> None:
    secret = os.urandom(16).hex()
    event = {"name": "secret.txt", "secret": secret}
    writer = attack(client, "sec-tmp-writer", "fs", {**event, "mode": "tmp_write"})
    assert "secret.txt" in writer["written"]
    reader = attack(client, "sec-tmp-reader", "fs", {**event, "mode": "tmp_read"})
    assert reader["listings"]["/tmp"] == [] and reader["listings"]["/dev/shm"] == []
    for path, listing in reader["listings"].items():
        assert "secret.txt" not in listing, f"{path}: {listing}"
    assert_all_failed(reader["attempts"], NOT_THERE)
    # The secret was really there all along: the writer's warm sandbox still has it.
    again = attack(client, "sec-tmp-writer", "fs", {**event, "mode": "tmp_read"})
    assert again["attempts"]["open /tmp/secret.txt"]["ok"]
    assert again["listings"]["/dev/shm"] == ["secret.txt"]
    assert_daemon_serves(client)


def test_ipc_and_hostname_are_private(client: Client) -> None:
    key = int.from_bytes(os.urandom(3), "big") + 1  # a SysV IPC key nobody else uses
    owner = attack(client, "sec-ipc-owner", "ipc", {"mode": "create", "key": key})
    assert all(o["ok"] for o in owner["lookup"].values()), owner  # control: they exist
    other = attack(client, "sec-ipc-other", "ipc", {"mode": "lookup", "key": key})
    assert_all_failed(other["lookup"], {errno.ENOENT})
    # Nor are they on the host.
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.shmget(key, 0, 0) == -1 and ctypes.get_errno() == errno.ENOENT
    assert libc.msgget(key, 0) == -1 and ctypes.get_errno() == errno.ENOENT
    assert owner["hostname"] == other["hostname"] == "lambdad" != socket.gethostname()
    assert_daemon_serves(client)


def test_only_the_runtimes_own_fds_are_open(client: Client) -> None:
    fds = attack(client, "sec-fds-open", "leaks", {"mode": "fds"})
    assert sorted(fds) == ["0", "1", "2", "3"], fds
    assert fds["0"] == "/dev/null"
    assert fds["1"].startswith("pipe:") and fds["2"] == fds["1"]  # the log pipe
    assert fds["3"].startswith("socket:")  # the channel to the daemon
    assert_daemon_serves(client)


# -- pid namespace -------------------------------------------------------------------------------


def test_host_processes_are_invisible_and_unsignalable(
    client: Client, shared_daemon: DaemonProcess
) -> None:
    assert shared_daemon.proc is not None
    daemon_pid = shared_daemon.proc.pid
    zygotes = children_of(daemon_pid)
    assert zygotes, "the daemon has no zygote"
    sandboxes = [pid for z in zygotes for pid in children_of(z)]  # the pool, other functions
    host_pids = [daemon_pid, *zygotes, *sandboxes[:4], os.getpid(), os.getppid()]
    assert 1 not in host_pids
    event = {"host_pids": host_pids, "host_pgids": [os.getpgid(daemon_pid)]}
    out = attack(client, "sec-procs", "procs", event)
    assert out["pid"] == 1 and out["ppid"] == 0
    assert out["visible"] == ["1"], f"processes visible inside: {out['visible']}"
    assert out["self_signal"]["ok"]
    assert_all_failed(out["attempts"], {errno.ESRCH, errno.ENOENT})
    # Every target is still alive on the host.
    for pid in host_pids:
        os.kill(pid, 0)
    assert shared_daemon.proc.poll() is None
    assert_daemon_serves(client)


# -- network namespace ---------------------------------------------------------------------------


def _invoke_in_thread(pool: ThreadPoolExecutor, d: DaemonProcess, name: str,
                      event: dict[str, Any]) -> Future[Invocation]:
    def run() -> Invocation:
        with d.client(timeout=CALL_TIMEOUT_S) as c:
            return c.invoke(name, event)

    return pool.submit(run)


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def test_sandboxes_cannot_reach_each_other(
    client: Client, shared_daemon: DaemonProcess, threads: ThreadPoolExecutor
) -> None:
    """One sandbox listens on an abstract Unix socket and on loopback TCP (v4 and v6) and
    blocks; meanwhile a sandbox of another function and a second sandbox of the *same*
    function try to connect to it."""
    token = os.urandom(8).hex()
    abstract = f"lambdad-sec-{token}"
    for name in ("sec-net-listener", "sec-net-other"):
        deploy(client, name, "net", timeout_s=20)
    _, cursor = client.logs("sec-net-listener")
    listening = _invoke_in_thread(
        threads, shared_daemon, "sec-net-listener",
        # Isolated sandboxes cannot signal each other "done" (that is the point), so the
        # listener holds a fixed window; the connectors' attempts are checked to fall in it.
        {"mode": "listen", "abstract": abstract, "token": token, "window_s": 4.0},
    )

    def ports() -> dict[str, int] | None:
        assert not listening.done() or listening.result().error is None, listening.result()
        text, _ = client.logs("sec-net-listener", cursor)
        for line in text.splitlines():
            if line.startswith("LISTENING ") and token in line:
                return dict(json.loads(line.split(" ", 1)[1])["ports"])
        return None

    found = wait_for(ports, timeout=15)
    assert isinstance(found, dict)
    tcp = [["127.0.0.1", found["tcp4"]]] + ([["::1", found["tcp6"]]] if "tcp6" in found else [])
    event = {"mode": "connect", "abstract": abstract, "tcp": tcp}
    connectors = [
        _invoke_in_thread(threads, shared_daemon, name, event)
        for name in ("sec-net-other", "sec-net-listener")  # the second one is a new sandbox
    ]
    results = [f.result(timeout=CALL_TIMEOUT_S) for f in connectors]
    listener = listening.result(timeout=CALL_TIMEOUT_S)
    assert listener.error is None, listener.error
    assert listener.result["self_ok"], "the listener could not reach itself: proves nothing"
    start, end = listener.result["window"]
    for inv in results:
        assert inv.error is None, inv.error
        assert inv.report is not None and inv.report.cold  # really another sandbox
        assert_all_failed(inv.result["attempts"], UNREACHABLE)
        t0, t1 = inv.result["window"]
        assert start <= t0 and t1 <= end, "the attempts missed the listening window"
        assert inv.result["interfaces"] == [[1, "lo"]]
    assert listener.result["accepted"] == []
    # Nor can the host reach into a sandbox's abstract socket.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, pytest.raises(
        ConnectionRefusedError
    ):
        s.connect("\0" + abstract)
    assert_daemon_serves(client)


def _host_address() -> str | None:
    """This host's primary non-loopback IPv4 address (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only a route lookup
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else str(address)


def test_host_loopback_and_daemon_socket_are_unreachable(
    client: Client, shared_daemon: DaemonProcess
) -> None:
    listeners: list[socket.socket] = []
    tcp: list[list[Any]] = []
    try:
        for address in ("127.0.0.1", _host_address()):
            if address is None:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((address, 0))
            s.listen(8)
            s.setblocking(False)
            listeners.append(s)
            tcp.append([address, s.getsockname()[1]])
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        listeners.append(udp)
        abstract = f"lambdad-sec-host-{os.urandom(8).hex()}"
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind("\0" + abstract)
        unix.listen(8)
        unix.setblocking(False)
        listeners.append(unix)
        event = {
            "mode": "connect",
            "abstract": abstract,
            "tcp": tcp,
            "udp": [["127.0.0.1", udp.getsockname()[1]]],
            "unix_paths": [shared_daemon.socket, "/run/lambdad/lambdad.sock"],
        }
        out = attack(client, "sec-host-net", "net", event)
        assert_all_failed(out["attempts"], UNREACHABLE)
        assert out["interfaces"] == [[1, "lo"]]
        # Nothing arrived on the host side either.
        for s in listeners:
            with pytest.raises(BlockingIOError):
                if s.type == socket.SOCK_DGRAM:
                    s.recvfrom(64)
                else:
                    s.accept()
    finally:
        for s in listeners:
            s.close()
    assert_daemon_serves(client)


# -- seccomp: the forbidden system calls ---------------------------------------------------------

SYSCALLS = [
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "open_tree",
    "unshare(CLONE_NEWUSER)", "unshare(CLONE_NEWNS)", "unshare(CLONE_NEWNET)",
    "clone(CLONE_NEWUSER)", "setns",
    "ptrace(PTRACE_ATTACH)", "ptrace(PTRACE_SEIZE)", "process_vm_readv", "kcmp",
    "bpf", "perf_event_open", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "userfaultfd", "io_uring_setup", "syslog", "iopl", "personality",
    "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at",
    "mknodat(/dev/sda)", "mknodat(/dev/mem)",
    "settimeofday", "clock_settime", "reboot", "swapon", "acct", "sethostname",
    "socket(AF_VSOCK)",
]


def _syscall_number(call: str) -> int | None:
    """The native number of the call's system call, resolved on the host with libseccomp."""
    import pyseccomp

    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, call.split("(")[0])
    return int(number) if number >= 0 else None


@pytest.mark.parametrize("call", SYSCALLS)
def test_forbidden_syscall_fails(client: Client, call: str) -> None:
    nr = _syscall_number(call)
    if nr is None:
        pytest.skip(f"{call} does not exist on this architecture")
    out = attack(client, "sec-syscalls", "syscalls", {"call": call, "nr": nr})
    assert_all_failed({call: out}, REFUSED_CALL)
    assert_daemon_serves(client)


# -- credentials and capabilities ----------------------------------------------------------------


def _file_capability_binaries() -> list[str]:
    """Host binaries under /usr with file capabilities (``getcap -r``), if getcap exists."""
    getcap = shutil.which("getcap") or "/usr/sbin/getcap"
    try:
        listing = subprocess.run([getcap, "-r", "/usr"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in listing.splitlines() if line.startswith("/usr/")]


def test_no_root_no_capabilities_no_setuid(client: Client) -> None:
    file_caps = _file_capability_binaries()
    out = attack(client, "sec-privs", "privs", {"file_caps": file_caps})
    status = out["status"]
    uid, euid, gid, egid, groups = out["ids"]
    assert uid == euid and uid >= 100_000, "not an unprivileged, sandbox-only uid"
    assert gid == egid and gid != 0 and groups == []
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, f"{cap} = {status[cap]}"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # a filter
    assert_all_failed(out["attempts"], {errno.EPERM, errno.EINVAL})
    assert "nosuid" in out["usr_mount_options"].split(",")
    # Setuid-root binaries are there (bound read-only from the host), but running one gives
    # nothing: credentials at its exit are the sandbox user's, real, effective and saved.
    binaries = out["setuid_binaries"]
    if os.path.exists("/usr/bin/su"):
        assert "/usr/bin/su" in binaries
    # Likewise binaries with file capabilities: they run with none.
    assert sorted(out["file_capability_binaries"]) == sorted(file_caps)
    for path, outcome in {**binaries, **out["file_capability_binaries"]}.items():
        if "ok" in outcome:  # could not even be executed
            assert not outcome["ok"], f"{path}: {outcome}"
        else:
            assert outcome == {"uids": [uid] * 4, "CapPrm": 0, "CapEff": 0}, f"{path}: {outcome}"
    code, stdout, stderr = out["unshare -r"]
    assert code != 0 and stdout.strip() != "0", f"unshare -r worked: {stdout!r} {stderr!r}"
    assert_daemon_serves(client)


# -- /proc/sys, cgroups, devices -----------------------------------------------------------------


def test_proc_sys_is_read_only(client: Client) -> None:
    out = attack(client, "sec-proc", "fs", {"mode": "proc_sys"})
    assert_all_failed(out["attempts"])
    assert_daemon_serves(client)


def test_cgroups_are_out_of_reach(client: Client) -> None:
    out = attack(client, "sec-cgroup", "fs", {"mode": "cgroups"})
    assert_all_failed(out["attempts"], NOT_WRITABLE)
    assert not {"cgroup", "cgroup2", "sysfs"} & set(out["fstypes"]), out["fstypes"]
    # A cgroup namespace rooted at the sandbox's own cgroup: it cannot even name its parent.
    assert all(line.endswith(":/") for line in out["proc_self_cgroup"]), out["proc_self_cgroup"]
    assert_daemon_serves(client)


def _host_block_devices() -> list[str]:
    try:
        return sorted(f"/dev/{name}" for name in os.listdir("/sys/class/block"))
    except OSError:
        return []


def test_no_device_but_the_harmless_ones(client: Client) -> None:
    event = {"mode": "devices", "host_devices": _host_block_devices()}
    out = attack(client, "sec-dev", "fs", event)
    assert out["control"], "/dev/null and /dev/urandom must work"
    assert_all_failed(out["attempts"], {errno.ENOENT})
    assert out["dev"] == ["fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout",
                          "urandom", "zero"]
    assert_daemon_serves(client)


# -- what the host hands to every sandbox: the daemon's environment -----------------------------

CANARY_PREFIX = "lambdad-canary-"
CANARY = CANARY_PREFIX + uuid.uuid4().hex


@pytest.fixture(scope="module", autouse=True)
def daemon_environment_canary() -> Iterator[None]:
    """Put a canary into the environment the module's daemon inherits (autouse: it is set
    before ``shared_daemon`` starts)."""
    os.environ["LAMBDAD_TEST_CANARY"] = CANARY
    try:
        yield
    finally:
        os.environ.pop("LAMBDAD_TEST_CANARY", None)


def test_daemon_environment_is_not_visible(
    client: Client, shared_daemon: DaemonProcess
) -> None:
    assert shared_daemon.proc is not None
    with open(f"/proc/{shared_daemon.proc.pid}/environ", "rb") as f:
        assert CANARY.encode() in f.read(), "the canary must be in the daemon's environment"
    event = {
        "mode": "environment",
        "prefix": CANARY_PREFIX,
        "length": len(CANARY),
        "sha256": hashlib.sha256(CANARY.encode()).hexdigest(),
    }
    out = attack(client, "sec-environ", "leaks", event)
    assert out == {
        "/proc/self/environ": False,
        "/proc/self/cmdline": False,
        "os.environ": False,
        "memory": [],
    }, "the daemon's environment is readable inside a sandbox"
    assert_daemon_serves(client)


# -- the daemon itself after all of the above ----------------------------------------------------


def test_daemon_is_healthy_after_the_battery(
    client: Client, shared_daemon: DaemonProcess
) -> None:
    assert shared_daemon.proc is not None and shared_daemon.proc.poll() is None
    errors: list[BaseException] = []

    def check() -> None:
        try:
            with shared_daemon.client(timeout=CALL_TIMEOUT_S) as c:
                assert_daemon_serves(c)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=check) for _ in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(CALL_TIMEOUT_S)
    assert not errors, errors
