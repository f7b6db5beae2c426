"""Shared-inode attacks (issue 12, point 2): locks and inotify watches on the read-only files
every sandbox gets from the host.

``hold`` takes an exclusive ``flock`` on each path and an inotify watch on each watch path,
says so on its log (``HOLDING <token>``), then collects events for a bounded window while the
test, on the host, tries to lock the host's files, opens them, and has a function with the same
code start cold. Times are CLOCK_MONOTONIC (host-wide), so the test can check that its attempts
fell inside the window. ``stat`` reports what the paths are (device, inode).
"""

import ctypes
import errno
import fcntl
import os
import select
import struct
import time

from common import failed

_libc = ctypes.CDLL(None, use_errno=True)
IN_ALL_EVENTS = 0xFFF
_EVENT = struct.Struct("iIII")


def _stats(paths):
    out = {}
    for path in paths:
        st = os.stat(path)
        out[path] = [st.st_dev, st.st_ino]
    return out


def _events(fd, names):
    out = []
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return out
    offset = 0
    while offset < len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0").decode()
        out.append({"watch": names.get(wd, wd), "mask": mask, "name": name})
        offset += _EVENT.size + length
    return out


def hold(event):
    locks, held = {}, []
    for path in event["lock"]:
        fd = os.open(path, os.O_RDONLY)
        held.append(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locks[path] = {"ok": True}
        except OSError as exc:
            locks[path] = failed(exc)
    # Control: the locks are really held (a second open file description conflicts).
    control = {}
    for path in event["lock"]:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            control[path] = "not held"
        except OSError as exc:
            control[path] = errno.errorcode.get(exc.errno, str(exc.errno))
        finally:
            os.close(fd)
    ino = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if ino < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    names = {}
    for path in event["watch"]:
        wd = _libc.inotify_add_watch(ino, path.encode(), IN_ALL_EVENTS)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch({path})")
        names[wd] = path
    print(f"HOLDING {event['token']}", flush=True)
    start = time.monotonic()
    deadline = start + event["window_s"]
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        if select.select([ino], [], [], left)[0]:
            seen += _events(ino, names)
    end = time.monotonic()
    # Control: the watches work; this sandbox's own open of its code is seen.
    os.close(os.open(event["control_open"], os.O_RDONLY))
    select.select([ino], [], [], 2.0)
    control_events = _events(ino, names)
    os.close(ino)
    for fd in held:
        os.close(fd)
    return {"locks": locks, "lock_control": control, "events": seen,
            "control_events": control_events, "window": [start, end],
            "stats": _stats(event["lock"] + event["watch"])}


def stat(event):
    for path in event["paths"]:  # open them too, as an Init would
        os.close(os.open(path, os.O_RDONLY))
    return {"stats": _stats(event["paths"])}


def handler(event, context):
    return globals()[event["mode"]](event)
