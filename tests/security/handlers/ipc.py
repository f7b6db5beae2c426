"""SysV IPC and the hostname: both must be the sandbox's own (ipc and uts namespaces)."""

import ctypes
import os
import socket

from common import attempt

_libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000


def _check(ret, what):
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _lookup(key):
    return {
        "shmget": attempt(lambda: _check(_libc.shmget(key, 0, 0), "shmget")),
        "msgget": attempt(lambda: _check(_libc.msgget(key, 0), "msgget")),
        "semget": attempt(lambda: _check(_libc.semget(key, 0, 0), "semget")),
    }


def handler(event, context):
    key = event["key"]
    if event["mode"] == "create":
        _check(_libc.shmget(key, 4096, IPC_CREAT | 0o666), "shmget")
        _check(_libc.msgget(key, IPC_CREAT | 0o666), "msgget")
        _check(_libc.semget(key, 1, IPC_CREAT | 0o666), "semget")
    return {"lookup": _lookup(key), "hostname": socket.gethostname()}
