"""Black-box tests of sandbox.seccomp: load the filter in a forked child and try the forbidden.

The filter is never loaded in the pytest process itself (it is irrevocable): every test that
loads it forks, loads it there, and reports back over a pipe. Syscall numbers are hard-coded
for x86_64, independently of libseccomp, so a wrong name resolution would show up here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import mmap
import os
import platform
import resource
import select
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox import _libc, seccomp

IS_ROOT = os.geteuid() == 0
IS_X86_64 = platform.machine() == "x86_64"

root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root")
x86_64_only = pytest.mark.skipif(not IS_X86_64, reason="syscall numbers are x86_64's")

# ---------------------------------------------------------------------------------------------
# Helpers: raw syscalls and running code in a forked child
# ---------------------------------------------------------------------------------------------

_libc_raw = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc_raw.syscall.restype = ctypes.c_long

_Arg = int | bytes | None


def _syscall(nr: int, *args: _Arg) -> int:
    """syscall(nr, *args): the result, or -errno on failure."""
    cargs: list[Any] = []
    for arg in args:
        if arg is None:
            cargs.append(ctypes.c_void_p(None))
        elif isinstance(arg, bytes):
            cargs.append(ctypes.c_char_p(arg))
        else:
            cargs.append(ctypes.c_long(arg))
    ret = int(_libc_raw.syscall(ctypes.c_long(nr), *cargs))
    return -ctypes.get_errno() if ret == -1 else ret


@dataclass(frozen=True)
class _Outcome:
    value: Any  # what the child's function returned (JSON round trip), None if it died
    status: int  # the child's wait status
    error: str | None = None  # traceback, if the child's function raised

    @property
    def killed_by(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None


def _in_child(body: Callable[[], Any], *, timeout: float = 60.0) -> _Outcome:
    """Run ``body`` in a forked child and return what it returned (via JSON over a pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(read_fd)
            # A child killed by SIGSYS must not leave a core file in the working directory.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            try:
                report: dict[str, Any] = {"value": body()}
            except BaseException:
                report = {"error": traceback.format_exc()}
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(write_fd, data) :]
        except BaseException:
            code = 70
        finally:
            os._exit(code)

    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"child {pid} did not finish within {timeout} s")
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return _Outcome(None, status)
    report = json.loads(b"".join(chunks))
    return _Outcome(report.get("value"), status, report.get("error"))


def _confine(program: bytes | None = None) -> None:
    """In a child: what the sandbox does last -- no_new_privs, then the filter."""
    _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
    seccomp.load(seccomp.compile_filter() if program is None else program)


# ---------------------------------------------------------------------------------------------
# The probes: every forbidden call, with arguments that are harmless even if it went through
# ---------------------------------------------------------------------------------------------

NR: dict[str, int] = {  # <asm/unistd_64.h>
    "getpid": 39, "clone": 56, "ptrace": 101, "syslog": 103, "mknod": 133, "uselib": 134,
    "personality": 135, "ustat": 136, "sysfs": 139, "pivot_root": 155, "_sysctl": 156,
    "adjtimex": 159, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "iopl": 172, "ioperm": 173, "create_module": 174,
    "init_module": 175, "delete_module": 176, "get_kernel_syms": 177, "query_module": 178,
    "quotactl": 179, "nfsservctl": 180, "lookup_dcookie": 212, "clock_settime": 227,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "mknodat": 259,
    "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435, "pidfd_getfd": 438,
    "mount_setattr": 442, "quotactl_fd": 443,
}  # fmt: skip

_X32_SYSCALL_BIT = 0x4000_0000
_WALL = 0x4000_0000  # <linux/wait.h> __WALL; not in the os module
_AT_FDCWD = -100
# Inside a directory that does not exist, so that no probe can create or act on anything, even
# if it went through (a bare "/nonexistent" would let mknod create a device node in /).
_NOPATH_DIR = b"/nonexistent-lambdad-seccomp-test"
_NOPATH = _NOPATH_DIR + b"/no/such/file"
_QCMD_GETINFO_USR = 0x80_0005 << 8  # QCMD(Q_GETINFO, USRQUOTA)
_PTRACE_TRACEME = 0
_ADDR_NO_RANDOMIZE = 0x004_0000
_PER_LINUX32 = 0x0008
_DEV_NULL = (1 << 8) | 3  # makedev(1, 3)


def _in_grandchild(call: Callable[[], int]) -> int:
    """Run a probe that changes its caller (unshare, PTRACE_TRACEME) in a throwaway fork."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_fd, str(call()).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with open(read_fd, "rb") as result:
        answer = result.read()
    os.waitpid(pid, 0)
    return int(answer)


def _raw_clone(flags: int) -> int:
    """clone(flags, stack=NULL, ...) straight to the kernel; a child that appears exits at once."""
    ret = _syscall(NR["clone"], flags, 0, None, None, 0)
    if ret == 0:
        os._exit(0)
    if ret > 0:
        # __WALL: CLONE_NEWTIME (0x80) lands in clone's exit-signal byte, and a child whose exit
        # signal is not SIGCHLD is invisible to a plain waitpid.
        os.waitpid(ret, _WALL)
    return ret


@dataclass(frozen=True)
class Probe:
    label: str
    syscall: str  # the syscall it exercises
    call: Callable[[], int]  # returns the result or -errno
    refused_with: int = errno.EPERM


def _sys(label: str, *args: _Arg, name: str | None = None, isolate: bool = False) -> Probe:
    number = NR[name or label]

    def call() -> int:
        return _syscall(number, *args)

    return Probe(label, name or label, (lambda: _in_grandchild(call)) if isolate else call)


_CLONE_NAMESPACE_FLAGS = (
    "CLONE_NEWNS", "CLONE_NEWCGROUP", "CLONE_NEWUTS", "CLONE_NEWIPC",
    "CLONE_NEWUSER", "CLONE_NEWPID", "CLONE_NEWNET", "CLONE_NEWTIME",
)  # fmt: skip


def _clone_probe(flag_name: str) -> Probe:
    flags = getattr(_libc, flag_name) | signal.SIGCHLD
    return Probe(f"clone({flag_name}|SIGCHLD)", "clone", lambda: _raw_clone(flags))


PROBES: tuple[Probe, ...] = (
    _sys("mount", _NOPATH, _NOPATH, None, 0, None),
    _sys("umount2", _NOPATH, 0),
    _sys("pivot_root", _NOPATH, _NOPATH),
    _sys("chroot", _NOPATH),
    _sys("fsopen", b"lambdad-no-such-fs", 0),
    _sys("fsconfig", -1, 0, None, None, 0),
    _sys("fsmount", -1, 0, 0),
    _sys("fspick", _AT_FDCWD, _NOPATH, 0),
    _sys("move_mount", _AT_FDCWD, _NOPATH, _AT_FDCWD, _NOPATH, 0),
    _sys("open_tree", _AT_FDCWD, _NOPATH, 0),
    _sys("mount_setattr", _AT_FDCWD, _NOPATH, 0, None, 0),
    _sys("setns", -1, 0),
    _sys("process_vm_readv", 0, None, 0, None, 0, 0),
    _sys("process_vm_writev", 0, None, 0, None, 0, 0),
    _sys("kcmp", 0, 0, 99, 0, 0),
    _sys("pidfd_getfd", -1, 0, 0),
    _sys("kexec_load", 0, 17, None, 0),  # 17 > KEXEC_SEGMENT_MAX: EINVAL before anything
    _sys("kexec_file_load", -1, -1, 0, None, 0x8000_0000),  # unknown flag: EINVAL
    _sys("init_module", None, 0, b""),  # empty image: ENOEXEC
    _sys("finit_module", -1, b"", 0),
    _sys("delete_module", b"lambdad_no_such_module", os.O_NONBLOCK),
    _sys("create_module", None, 0),
    _sys("get_kernel_syms", None),
    _sys("query_module", None, 0, None, 0, None),
    _sys("bpf", 9999, None, 0),  # unknown command
    _sys("perf_event_open", None, 0, -1, -1, 0),
    _sys("syslog", 9999, None, 0),  # unknown action
    _sys("lookup_dcookie", 0, None, 0),
    _sys("userfaultfd", 0x7FFF_0000),  # unknown flags
    _sys("keyctl", 9999, 0, 0, 0, 0),  # unknown operation
    _sys("add_key", None, None, None, 0, 0),
    _sys("request_key", None, None, None, 0),
    _sys("reboot", 0, 0, 0, None),  # bad magic: EINVAL, never reboots
    _sys("swapon", _NOPATH, 0),
    _sys("swapoff", _NOPATH),
    _sys("acct", _NOPATH),
    _sys("quotactl", _QCMD_GETINFO_USR, _NOPATH, 0, None),
    _sys("quotactl_fd", -1, _QCMD_GETINFO_USR, 0, None),
    _sys("sethostname", None, 65),  # longer than __NEW_UTS_LEN: EINVAL
    _sys("setdomainname", None, 65),
    _sys("nfsservctl", 0, None, None),
    _sys("_sysctl", None),
    _sys("settimeofday", None, None),  # sets nothing
    _sys("clock_settime", 0, None),
    _sys("clock_adjtime", 0, None),
    _sys("adjtimex", None),
    _sys("iopl", 4),  # level > 3: EINVAL
    _sys("ioperm", 65536, 1, 1),  # beyond the I/O bitmap: EINVAL
    _sys("open_by_handle_at", -1, None, 0),
    _sys("name_to_handle_at", _AT_FDCWD, _NOPATH, None, None, 0),
    _sys("uselib", _NOPATH),
    _sys("ustat", 0, None),
    _sys("sysfs", 9999, 0, 0),
    _sys("io_uring_setup", 0, None),
    _sys("io_uring_enter", -1, 0, 0, 0, None, 0),
    _sys("io_uring_register", -1, 0, None, 0),
    # Argument-dependent rules.
    *(_clone_probe(flag) for flag in _CLONE_NAMESPACE_FLAGS),
    Probe("clone3(NULL, 0)", "clone3", lambda: _syscall(NR["clone3"], None, 0), errno.ENOSYS),
    _sys("personality(ADDR_NO_RANDOMIZE)", _ADDR_NO_RANDOMIZE, name="personality"),
    _sys("personality(PER_LINUX32)", _PER_LINUX32, name="personality"),
    _sys("personality(0x7fffffff)", 0x7FFF_FFFF, name="personality"),
    _sys("mknod(S_IFCHR)", _NOPATH, stat.S_IFCHR | 0o600, _DEV_NULL, name="mknod"),
    _sys("mknod(S_IFBLK)", _NOPATH, stat.S_IFBLK | 0o600, _DEV_NULL, name="mknod"),
    _sys("mknodat(S_IFCHR)", _AT_FDCWD, _NOPATH, stat.S_IFCHR | 0o600, _DEV_NULL, name="mknodat"),
    _sys("mknodat(S_IFBLK)", _AT_FDCWD, _NOPATH, stat.S_IFBLK | 0o600, _DEV_NULL, name="mknodat"),
    # These change their caller if they go through, hence isolate: a fork of their own (for
    # PTRACE_TRACEME that makes the tracer the probing process, never pytest).
    _sys("unshare(CLONE_NEWNS)", _libc.CLONE_NEWNS, name="unshare", isolate=True),
    _sys("unshare(CLONE_NEWUSER)", _libc.CLONE_NEWUSER, name="unshare", isolate=True),
    _sys("ptrace(PTRACE_TRACEME)", _PTRACE_TRACEME, 0, 0, 0, name="ptrace", isolate=True),
)

# What the brief (Docker's default profile) requires refused; the ones with argument rules are
# checked by their probes instead of by name.
REQUIRED = {
    "mount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
    "process_vm_writev", "kexec_load", "kexec_file_load", "bpf", "perf_event_open", "keyctl",
    "add_key", "request_key", "init_module", "finit_module", "delete_module", "create_module",
    "unshare", "setns", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "userfaultfd", "lookup_dcookie", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "stime", "sethostname", "setdomainname",
    "iopl", "ioperm", "syslog", "nfsservctl", "vm86", "vm86old", "uselib", "ustat", "sysfs",
    "_sysctl", "get_kernel_syms", "query_module", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "pidfd_getfd", "kcmp", "io_uring_setup",
    "io_uring_enter", "io_uring_register",
}  # fmt: skip
ARGUMENT_RULES = {"clone", "clone3", "personality", "mknod", "mknodat"}


def _run_probes() -> dict[str, int]:
    return {probe.label: probe.call() for probe in PROBES}


# ---------------------------------------------------------------------------------------------
# The filter as data
# ---------------------------------------------------------------------------------------------


def test_deny_list_covers_docker_default_set() -> None:
    assert len(set(seccomp.DENIED_SYSCALLS)) == len(seccomp.DENIED_SYSCALLS), "duplicates"
    assert REQUIRED - set(seccomp.DENIED_SYSCALLS) == set()
    assert ARGUMENT_RULES.isdisjoint(seccomp.DENIED_SYSCALLS)


@x86_64_only
def test_every_denied_syscall_has_a_probe() -> None:
    not_on_x86_64 = {"umount", "stime", "vm86", "vm86old"}
    probed = {probe.syscall for probe in PROBES}
    assert set(seccomp.DENIED_SYSCALLS) - not_on_x86_64 - probed == set()
    assert ARGUMENT_RULES - probed == set()


def test_compile_filter_returns_a_deterministic_sock_filter_array() -> None:
    program = seccomp.compile_filter()
    assert len(program) % 8 == 0
    assert 0 < len(program) // 8 <= 4096  # BPF_MAXINSNS
    assert seccomp.compile_filter() == program
    relaxed = seccomp.compile_filter(allow_namespaces=True)
    assert len(relaxed) % 8 == 0 and len(relaxed) < len(program)


def test_load_rejects_bytes_that_are_not_a_program() -> None:
    with pytest.raises(ValueError, match="sock_filter"):
        seccomp.load(b"")
    with pytest.raises(ValueError, match="sock_filter"):
        seccomp.load(b"\x06\x00\x00\x00\x00\x00\xff")  # 7 bytes


# ---------------------------------------------------------------------------------------------
# The filter loaded: forbidden calls refused
# ---------------------------------------------------------------------------------------------


def _describe(result: int) -> str:
    return f"-{errno.errorcode.get(-result, -result)}" if result < 0 else f"returned {result}"


@pytest.mark.root
@root_only
@x86_64_only
def test_forbidden_syscalls_are_refused() -> None:
    program = seccomp.compile_filter()

    def body() -> dict[str, int]:
        _confine(program)
        return _run_probes()

    outcome = _in_child(body)
    assert outcome.error is None, outcome.error
    assert os.WIFEXITED(outcome.status) and os.WEXITSTATUS(outcome.status) == 0
    wrong = {
        probe.label: _describe(outcome.value[probe.label])
        for probe in PROBES
        if outcome.value[probe.label] != -probe.refused_with
    }
    assert wrong == {}, f"not refused as the filter says: {wrong}"


# Host policy (sysctls, lockdown, removed syscalls already giving ENOSYS do not count) can
# refuse these with EPERM even to root, so their control result proves nothing either way.
_HOST_MAY_REFUSE = {
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "userfaultfd", "iopl", "ioperm", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "syslog",
}  # fmt: skip
# CAP_DAC_READ_SEARCH, CAP_SYS_MODULE, _RAWIO, _PTRACE, _ADMIN, _BOOT, _TIME, CAP_MKNOD
_CONTROL_CAPS = (2, 16, 17, 19, 21, 22, 25, 27)


def _effective_caps() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


@pytest.mark.root
@root_only
@x86_64_only
def test_probes_are_not_refused_without_the_filter() -> None:
    """The control: EPERM in the test above comes from the filter, not from the probe itself."""
    caps = _effective_caps()
    if not all(caps >> cap & 1 for cap in _CONTROL_CAPS):
        pytest.skip(f"root without full capabilities here (CapEff {caps:#x})")
    assert not os.path.lexists(_NOPATH_DIR), "the probes' harmless path must not exist"
    results: dict[str, int] = {}
    for probe in PROBES:  # each in its own child: unshare, TRACEME... must not accumulate
        outcome = _in_child(probe.call)
        assert outcome.error is None, outcome.error
        results[probe.label] = outcome.value
    refused = {
        probe.label: _describe(results[probe.label])
        for probe in PROBES
        if results[probe.label] == -probe.refused_with and probe.syscall not in _HOST_MAY_REFUSE
    }
    assert refused == {}, f"refused even without the filter: {refused}"


@pytest.mark.root
@root_only
@x86_64_only
@pytest.mark.parametrize(
    ("label", "nr"),
    [("x32 getpid", _X32_SYSCALL_BIT | NR["getpid"]), ("x32 mount", _X32_SYSCALL_BIT | 165)],
)
def test_x32_syscalls_kill_the_caller(label: str, nr: int) -> None:
    def body() -> int:
        _confine()
        return _syscall(nr, _NOPATH, _NOPATH, None, 0, None)

    outcome = _in_child(body)
    assert outcome.killed_by == signal.SIGSYS, f"{label}: {outcome}"


# mov eax, 20 (i386 getpid); int 0x80; ret
_I386_GETPID = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"


def _i386_getpid() -> int:
    code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(_I386_GETPID)
    address = ctypes.addressof(ctypes.c_char.from_buffer(code))
    return int(ctypes.CFUNCTYPE(ctypes.c_int)(address)())


@pytest.mark.root
@root_only
@x86_64_only
def test_i386_syscalls_kill_the_caller() -> None:
    control = _in_child(_i386_getpid)
    if control.value is None or control.value <= 0:
        pytest.skip(f"no i386 emulation on this kernel ({control})")

    def body() -> int:
        _confine()
        return _i386_getpid()

    outcome = _in_child(body)
    assert outcome.killed_by == signal.SIGSYS, outcome


# ---------------------------------------------------------------------------------------------
# The filter loaded: what a handler needs still works
# ---------------------------------------------------------------------------------------------


def _handler_essentials() -> dict[str, Any]:
    checks: dict[str, Any] = {}

    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    checks["fork"] = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7

    box: list[int] = []
    thread = threading.Thread(target=lambda: box.append(threading.get_native_id()))
    thread.start()
    thread.join()
    checks["thread"] = len(box) == 1 and box[0] != threading.get_native_id()

    checks["subprocess"] = subprocess.run(["/bin/true"], check=False).returncode == 0
    echo = subprocess.run(["/bin/echo", "hi"], capture_output=True, check=False)
    checks["subprocess output"] = echo.stdout == b"hi\n"

    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"ping")
        checks["socketpair"] = right.recv(4) == b"ping"

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "file")
        with open(path, "w+b") as handle:
            handle.write(b"payload")
            handle.seek(0)
            checks["file"] = handle.read() == b"payload"
        os.mkfifo(os.path.join(tmp, "fifo"))
        checks["mkfifo"] = stat.S_ISFIFO(os.stat(os.path.join(tmp, "fifo")).st_mode)
        os.mknod(os.path.join(tmp, "regular"), stat.S_IFREG | 0o600)
        checks["mknod S_IFREG"] = os.path.isfile(os.path.join(tmp, "regular"))

    time.sleep(0)
    checks["sleep"] = True
    checks["getpid"] = os.getpid() == _syscall(NR["getpid"])
    checks["personality query"] = _syscall(NR["personality"], 0xFFFF_FFFF) >= 0
    checks["personality PER_LINUX"] = _syscall(NR["personality"], 0) >= 0
    checks["clone without namespace flags"] = _raw_clone(signal.SIGCHLD) > 0
    with open("/proc/self/status") as proc_status:
        checks["Seccomp: 2"] = "Seccomp:\t2\n" in proc_status.read()
    return checks


@pytest.mark.root
@root_only
@x86_64_only
def test_handler_essentials_still_work() -> None:
    program = seccomp.compile_filter()

    def body() -> dict[str, Any]:
        _confine(program)
        return _handler_essentials()

    outcome = _in_child(body)
    assert outcome.error is None, outcome.error
    assert {name for name, ok in outcome.value.items() if ok is not True} == set()


@pytest.mark.root
@root_only
@x86_64_only
def test_allow_namespaces_leaves_namespace_calls_alone() -> None:
    program = seccomp.compile_filter(allow_namespaces=True)

    def body() -> dict[str, int]:
        _confine(program)
        return {
            "unshare(CLONE_NEWUTS)": _syscall(NR["unshare"], _libc.CLONE_NEWUTS),
            "clone(CLONE_NEWUTS)": _raw_clone(_libc.CLONE_NEWUTS | signal.SIGCHLD),
            "clone3(NULL, 0)": _syscall(NR["clone3"], None, 0),
            "mount": _syscall(NR["mount"], _NOPATH, _NOPATH, None, 0, None),
        }

    outcome = _in_child(body)
    assert outcome.error is None, outcome.error
    assert outcome.value["unshare(CLONE_NEWUTS)"] == 0
    assert outcome.value["clone(CLONE_NEWUTS)"] > 0
    assert outcome.value["clone3(NULL, 0)"] == -errno.EINVAL  # the kernel's answer, not ENOSYS
    assert outcome.value["mount"] == -errno.EPERM


# ---------------------------------------------------------------------------------------------
# load(): errors and cost
# ---------------------------------------------------------------------------------------------


@pytest.mark.root
@root_only
def test_load_without_no_new_privs_names_the_call() -> None:
    program = seccomp.compile_filter()

    def body() -> list[Any]:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)  # no CAP_SYS_ADMIN, and no_new_privs not set
        try:
            seccomp.load(program)
        except OSError as exc:
            return [exc.errno, str(exc)]
        return []

    outcome = _in_child(body)
    assert outcome.error is None, outcome.error
    err, message = outcome.value
    assert err == errno.EACCES
    assert "seccomp.load" in message and "PR_SET_SECCOMP" in message
    assert "no_new_privs" in message


@pytest.mark.root
@root_only
def test_load_of_an_invalid_program_names_the_call() -> None:
    def body() -> list[Any]:
        _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
        try:
            seccomp.load(b"\x00" * 8)  # one "ld #0" and no return: the kernel refuses it
        except OSError as exc:
            return [exc.errno, str(exc)]
        return []

    outcome = _in_child(body)
    assert outcome.error is None, outcome.error
    assert outcome.value[0] == errno.EINVAL
    assert "seccomp.load(1 instructions)" in outcome.value[1]


@pytest.mark.root
@root_only
def test_compile_once_load_is_cheap() -> None:
    runs = 50
    started = time.perf_counter()
    for _ in range(runs):
        program = seccomp.compile_filter()
    compile_ms = (time.perf_counter() - started) / runs * 1e3

    def body() -> float:
        _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
        started = time.perf_counter()
        seccomp.load(program)
        return time.perf_counter() - started

    load_ms = sum(_in_child(body).value for _ in range(runs)) / runs * 1e3
    print(f"compile_filter(): {compile_ms:.3f} ms, load(): {load_ms:.4f} ms (mean of {runs})")
    assert compile_ms < 50
    assert load_ms < 5
