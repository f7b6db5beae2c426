"""Host-wide kernel counters a sandbox may try to exhaust (issue 12, point 3).

Each mode takes as much of one counter as the kernel lets it and reports how far it got and
how it was stopped. Whatever it took stays taken while the sandbox is warm (the objects are
kept in module globals), so the test can check the host and another sandbox meanwhile.
"""

import ctypes
import errno
import fcntl
import os
import threading

from common import failed, syscall

_libc = ctypes.CDLL(None, use_errno=True)
_kept = []


def aio(event):
    """io_setup: each context holds ``nr`` of the host's fs.aio-max-nr."""
    ctx = ctypes.c_ulong(0)
    try:
        syscall(event["nr"], 65536, ctx)
    except OSError as exc:
        return failed(exc)
    return {"ok": True, "value": ctx.value}


def threads(event):
    """Threads (each a task: pids.max and RLIMIT_NPROC count them) until refused."""
    threading.stack_size(64 * 1024)
    release = threading.Event()
    started, error = [], None
    while len(started) < event["max"]:
        t = threading.Thread(target=release.wait, daemon=True)
        try:
            t.start()
        except RuntimeError as exc:  # "can't start new thread": EAGAIN from clone
            error = str(exc)
            break
        started.append(t)
    release.set()
    for t in started:
        t.join()
    return {"threads": len(started), "error": error}


def inotify(event):
    """inotify instances until refused, then watches (on files of its own /tmp) until refused."""
    instances, error = [], None
    while len(instances) < 100_000:
        fd = _libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            error = errno.errorcode.get(ctypes.get_errno())
            break
        instances.append(fd)
    _kept.extend(instances)  # all held while the sandbox stays warm
    # Watches need one inode each: empty files in /tmp (their memory is the sandbox's).
    watches, watch_error = 0, None
    os.makedirs("/tmp/w", exist_ok=True)
    while watches < event["max_watches"]:
        path = f"/tmp/w/{watches}".encode()
        try:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            watch_error = errno.errorcode.get(exc.errno)
            break
        if _libc.inotify_add_watch(instances[0], path, 0x2) < 0:
            watch_error = errno.errorcode.get(ctypes.get_errno())
            break
        watches += 1
    return {"instances": len(instances), "error": error, "watches": watches,
            "watch_error": watch_error}


def inotify_one(event):
    """Control: one instance and one watch, in a sandbox that took nothing."""
    fd = _libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return failed(OSError(ctypes.get_errno(), "inotify_init1"))
    wd = _libc.inotify_add_watch(fd, b"/tmp", 0x100)
    os.close(fd)
    if wd < 0:
        return failed(OSError(ctypes.get_errno(), "inotify_add_watch"))
    return {"ok": True}


def keys(event):
    """add_key into the user keyring (keyrings are not namespaced) until refused."""
    outcomes = set()
    for i in range(event["count"]):
        try:  # add_key("user", desc, payload, len, KEY_SPEC_USER_KEYRING)
            syscall(event["nr"], b"user", f"lambdad-{i}".encode(), b"x" * 32, 32, -4)
            outcomes.add("ok")
        except OSError as exc:
            outcomes.add(errno.errorcode.get(exc.errno))
    return {"outcomes": sorted(outcomes), "uid": os.getuid()}


class _MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long),
                ("pad", ctypes.c_long * 4)]


def _mq_open(name, maxmsg, msgsize):
    attr = _MqAttr(0, maxmsg, msgsize, 0)
    fd = _libc.mq_open(name.encode(), os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "mq_open")
    return fd


def mqueues(event):
    """POSIX message queues: big ones until the uid's bytes are gone (RLIMIT_MSGQUEUE), then
    tiny ones until the namespace's count is (fs.mqueue.queues_max)."""
    out = {}
    for label, (maxmsg, msgsize) in (("bytes", (10, 8192)), ("count", (1, 1))):
        n, error = 0, None
        while n < 100_000:
            try:
                _kept.append(_mq_open(f"/lambdad-{label}-{n}", maxmsg, msgsize))
            except OSError as exc:
                error = errno.errorcode.get(exc.errno)
                break
            n += 1
        out[label] = {"queues": n, "error": error}
    return out


def mqueue_one(event):
    try:
        os.close(_mq_open("/lambdad-control", 10, 8192))
    except OSError as exc:
        return failed(exc)
    return {"ok": True}


def locks(event):
    """POSIX byte-range locks (each a kernel object) on a /tmp file, until refused. (Each new
    lock scans the file's list: n locks cost O(n^2) CPU, which the timeout bounds too.)"""
    fd = os.open("/tmp/locks", os.O_CREAT | os.O_RDWR, 0o600)
    _kept.append(fd)
    n, error = 0, None
    while n < event["max"]:
        try:  # every other byte, so that no two locks merge
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 2 * n)
        except OSError as exc:
            error = errno.errorcode.get(exc.errno)
            break
        n += 1
    return {"locks": n, "error": error}


def handler(event, context):
    return globals()[event["mode"]](event)
