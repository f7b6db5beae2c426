"""Shared by the escape battery's handlers (this directory is deployed as the function code).

Every attempt is reported as data, never raised: ``{"ok": True, "value": ...}`` when the
forbidden thing worked, ``{"ok": False, "errno": N, "error": "EPERM", ...}`` when it failed.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def failed(exc: OSError) -> dict[str, Any]:
    code = exc.errno or 0
    return {"ok": False, "errno": code, "error": errno.errorcode.get(code, str(code)),
            "message": str(exc)[:200]}


def attempt(fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)``; report its value or the OSError it raised."""
    try:
        value = fn(*args)
    except OSError as exc:
        return failed(exc)
    return {"ok": True, "value": repr(value)[:200]}


def _arg(a: Any) -> Any:
    if a is None:
        return ctypes.c_void_p(None)
    if isinstance(a, int):
        return ctypes.c_long(a)
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    return ctypes.c_void_p(ctypes.addressof(a))  # a ctypes buffer or structure


def syscall(nr: int, *args: Any) -> int:
    """The raw system call ``nr``; raises OSError like the os module does."""
    ctypes.set_errno(0)
    ret = int(_libc.syscall(ctypes.c_long(nr), *(_arg(a) for a in args)))
    if ret == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"syscall {nr}: {errno.errorcode.get(code, code)}")
    return ret
