"""Forging Init Duration: the import sleeps 300 ms, then rewrites the agent's ``t_init`` (the
start of Init, a local of ``sandbox.agent.serve`` up the stack) with ctypes so that the agent
reports 10 us. See ``clock.py`` for the invocation-time attacks."""

import ctypes
import sys
import time

time.sleep(0.3)
_frame = sys._getframe(0)
while _frame is not None and "t_init" not in _frame.f_locals:
    _frame = _frame.f_back
FORGED = _frame is not None
if _frame is not None:
    _frame.f_locals["t_init"] = time.monotonic_ns() - 10_000
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(_frame), ctypes.c_int(0))
del _frame


def handler(event, context):
    return {"forged": FORGED}
