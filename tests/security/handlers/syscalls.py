"""Forbidden system calls, made with raw ``syscall(2)`` and harmless arguments.

The test resolves the numbers on the host (they differ between architectures) and sends
them in the event. Each call is one that a sandbox must never be able to make; the arguments
are chosen so that, were the call allowed, it would do nothing harmful (a query, a flag that
is invalid in a child pid namespace, a file under /tmp) -- and an unexpected success is
reported as such, not hidden.
"""

import ctypes
import os
import signal
import struct
import time

from common import attempt, syscall

AT_FDCWD = -100
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
S_IFCHR, S_IFBLK = 0o020000, 0o060000


def _buf(data=b"", size=0):
    return ctypes.create_string_buffer(data, max(size, len(data)))


def _close_fd(fd):
    os.close(fd)
    return f"fd {fd}"


def _fork_blocked_child():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    return pid, w


def _ptrace(nr, request):
    pid, w = _fork_blocked_child()
    try:
        return syscall(nr, request, pid, None, None)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(w)


def _clone(nr, flags):
    pid = syscall(nr, flags | signal.SIGCHLD, None, None, None, None)
    if pid == 0:  # the child of a clone that should never have worked
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _setns(nr):
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        return syscall(nr, fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def _mknod(nr, path, kind, major, minor):
    try:
        return syscall(nr, AT_FDCWD, path.encode(), kind | 0o600, os.makedev(major, minor))
    finally:
        if os.path.lexists(path):
            os.unlink(path)


def _perf_event_open(nr):
    # struct perf_event_attr, PERF_ATTR_SIZE_VER0 (64 bytes): a software CPU clock counter on
    # ourselves, user space only, disabled -- what perf_event_paranoid=2 lets anyone open.
    flags = 1 | 1 << 5 | 1 << 6  # disabled, exclude_kernel, exclude_hv
    attr = _buf(struct.pack("=IIQQQQQIIQ", 1, 64, 0, 0, 0, 0, flags, 0, 0, 0))
    return _close_fd(syscall(nr, attr, 0, -1, -1, 0))


def _bpf(nr):
    # union bpf_attr for BPF_MAP_CREATE: a one-entry hash map.
    attr = _buf(struct.pack("=IIIII", 1, 4, 4, 1, 0), 72)
    return _close_fd(syscall(nr, 0, attr, 72))


def _io_uring_setup(nr):
    return _close_fd(syscall(nr, 1, _buf(size=120)))


def _userfaultfd(nr):
    return _close_fd(syscall(nr, os.O_CLOEXEC | 1))  # UFFD_USER_MODE_ONLY


def _open_by_handle_at(nr):
    handle = _buf(struct.pack("=Ii", 8, 1) + struct.pack("=Q", 2))  # "inode 2 of this fs"
    mount_fd = os.open("/tmp", os.O_RDONLY)
    try:
        return _close_fd(syscall(nr, mount_fd, handle, os.O_RDONLY))
    finally:
        os.close(mount_fd)


def _name_to_handle_at(nr):
    handle, mount_id = _buf(struct.pack("=Ii", 128, 0), 136), ctypes.c_int(0)
    return syscall(nr, AT_FDCWD, b"/tmp", handle, mount_id, 0)


def _now_timeval():
    t = time.time()
    return _buf(struct.pack("=qq", int(t), int(t % 1 * 1e6)))


def _now_timespec():
    t = time.clock_gettime(time.CLOCK_REALTIME)
    return _buf(struct.pack("=qq", int(t), int(t % 1 * 1e9)))


CALLS = {
    # Mounts and the root.
    "mount": lambda nr: syscall(nr, b"none", b"/tmp", b"tmpfs", 0, None),
    "umount2": lambda nr: syscall(nr, b"/var/task", 2),  # MNT_DETACH
    "pivot_root": lambda nr: syscall(nr, b"/tmp", b"/tmp"),
    "chroot": lambda nr: syscall(nr, b"/tmp"),
    "fsopen": lambda nr: _close_fd(syscall(nr, b"tmpfs", 0)),
    "open_tree": lambda nr: _close_fd(syscall(nr, AT_FDCWD, b"/var/task", 1)),  # CLONE
    # Namespaces.
    "unshare(CLONE_NEWUSER)": lambda nr: syscall(nr, CLONE_NEWUSER),
    "unshare(CLONE_NEWNS)": lambda nr: syscall(nr, CLONE_NEWNS),
    "unshare(CLONE_NEWNET)": lambda nr: syscall(nr, CLONE_NEWNET),
    "clone(CLONE_NEWUSER)": lambda nr: _clone(nr, CLONE_NEWUSER),
    "setns": _setns,
    # Other processes.
    "ptrace(PTRACE_ATTACH)": lambda nr: _ptrace(nr, 16),
    "ptrace(PTRACE_SEIZE)": lambda nr: _ptrace(nr, 0x4206),
    "process_vm_readv": lambda nr: syscall(nr, os.getpid(), None, 0, None, 0, 0),
    "kcmp": lambda nr: syscall(nr, os.getpid(), os.getpid(), 0, 0, 0),
    # The kernel itself.
    "bpf": _bpf,
    "perf_event_open": _perf_event_open,
    "kexec_load": lambda nr: syscall(nr, 0, 0, None, 0),
    "kexec_file_load": lambda nr: syscall(nr, -1, -1, 0, b"", 0),
    "init_module": lambda nr: syscall(nr, _buf(size=64), 64, b""),
    "finit_module": lambda nr: syscall(nr, -1, b"", 0),
    "delete_module": lambda nr: syscall(nr, b"lambdad_no_such_module", os.O_NONBLOCK),
    "userfaultfd": _userfaultfd,
    "io_uring_setup": _io_uring_setup,
    "syslog": lambda nr: syscall(nr, 3, _buf(size=64), 64),  # SYSLOG_ACTION_READ_ALL
    "iopl": lambda nr: syscall(nr, 3),
    "personality": lambda nr: syscall(nr, 0x0040000),  # ADDR_NO_RANDOMIZE
    # Keyrings (not namespaced).
    "keyctl": lambda nr: syscall(nr, 0, -3, 0),  # KEYCTL_GET_KEYRING_ID(session)
    "add_key": lambda nr: syscall(nr, b"user", b"lambdad-sec", b"x", 1, -2),
    "request_key": lambda nr: syscall(nr, b"user", b"lambdad-sec-none", None, 0),
    # File handles (the "shocker" escape).
    "open_by_handle_at": _open_by_handle_at,
    "name_to_handle_at": _name_to_handle_at,
    # Device nodes.
    "mknodat(/dev/sda)": lambda nr: _mknod(nr, "/tmp/sda", S_IFBLK, 8, 0),
    "mknodat(/dev/mem)": lambda nr: _mknod(nr, "/tmp/mem", S_IFCHR, 1, 1),
    # Sockets that no network namespace confines: vsock reaches the hypervisor (CID 2) from
    # a VM guest. Only created, never connected.
    "socket(AF_VSOCK)": lambda nr: _close_fd(syscall(nr, 40, 1, 0)),  # SOCK_STREAM
    # Host-wide machine state.
    "settimeofday": lambda nr: syscall(nr, _now_timeval(), None),
    "clock_settime": lambda nr: syscall(nr, time.CLOCK_REALTIME, _now_timespec()),
    # LINUX_REBOOT_CMD_CAD_OFF: a no-op (EINVAL) in a child pid namespace even if allowed.
    "reboot": lambda nr: syscall(nr, 0xFEE1DEAD, 672274793, 0, None),
    "swapon": lambda nr: syscall(nr, b"/tmp/no-swap", 0),
    "acct": lambda nr: syscall(nr, b"/tmp/acct"),
    "sethostname": lambda nr: syscall(nr, b"pwned", 5),
}


def syscall_name(call):
    return call.split("(")[0]


def handler(event, context):
    call = event["call"]
    nr = event["nr"]
    if nr is None:
        return {"absent": True}
    return attempt(CALLS[call], nr)
