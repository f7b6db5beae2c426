"""Credentials: the unprivileged uid/gid, no capabilities at all, no_new_privs (child half).

Order matters: the bounding set can only be shrunk while CAP_SETPCAP is held, so it is
emptied before the uid changes; ``setresuid`` away from 0 then clears the permitted and
effective sets; the remaining sets are cleared explicitly so nothing depends on that rule.
Changing credentials also clears the parent-death signal, so it is set again afterwards.
"""

from __future__ import annotations

import os
import signal

import pyprctl

from sandbox import _libc


def drop(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` with no supplementary groups and an empty capability state."""
    pyprctl.set_no_new_privs()
    for cap in pyprctl.Cap:
        try:
            pyprctl.capbset_drop(cap)
        except OSError:  # a capability this kernel does not know
            pass
    pyprctl.cap_ambient_clear_all()
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    state = pyprctl.CapState.get_current()
    state.effective.clear()
    state.permitted.clear()
    state.inheritable.clear()
    state.set_current()
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
