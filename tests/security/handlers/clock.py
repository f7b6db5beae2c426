"""Forging the metering (issue 12 point 4): work for ``work_ms`` of real time, then make the
runtime believe (or say) that the invocation took 10 us.

The handler shares the runtime's process, so each of these is open to it:

* ``patch``: replace ``time.monotonic_ns`` (what the runtime reads) by a clock that stands
  still at the moment the work started;
* ``frame``: with ctypes, rewrite the runtime's own local variable holding the invocation's
  start time (``PyFrame_LocalsToFast`` on the caller's frame), so that its clock is untouched
  but its arithmetic is wrong;
* ``encoder``: replace the runtime's message constructor so that whatever it measured, the
  ``result`` it sends says 10 us;
* ``forge``: write a well-formed ``result`` frame saying 10 us straight onto the channel
  (fd 3), ahead of the runtime's own.

Each returns ``{"work_ms": ...}``, its own measurement with the real clock taken before it
tampered with anything.
"""

import ctypes
import os
import sys
import time

from packb import packb

CHANNEL_FD = 3
REAL_NS = time.monotonic_ns  # kept before any patch
FORGED = []  # one entry per result the patched encoder rewrote (warm calls see earlier ones)


def _work(ms):
    started = REAL_NS()
    time.sleep(ms / 1000)
    return started, (REAL_NS() - started) / 1e6


def _runtime_frame():
    frame = sys._getframe(1)
    while frame is not None and "start" not in frame.f_locals:
        frame = frame.f_back
    assert frame is not None, "no runtime frame with 'start' above the handler"
    return frame


def _module_globals(name):
    """A module's globals, from a frame of its code above the handler: the runtime drops its
    modules from sys.modules, but its frames are still the handler's callers."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") != name:
        frame = frame.f_back
    assert frame is not None, f"no frame of {name} above the handler"
    return frame.f_globals


def handler(event, context):
    mode, ms = event["mode"], event.get("work_ms", 300)
    started, work_ms = _work(ms)
    if mode == "patch":
        time.monotonic_ns = lambda: started + 10_000
    elif mode == "frame":
        frame = _runtime_frame()
        frame.f_locals["start"] = REAL_NS() - 10_000
        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
    elif mode == "encoder":
        runtime = _module_globals("sandbox.runtimes.python")
        module = runtime["messages"]
        real = module.Result

        class Messages:
            def __getattr__(self, name):
                return getattr(module, name)

            @staticmethod
            def Result(**fields):
                fields["duration_us"] = 10.0
                FORGED.append(1)
                return real(**fields)

        runtime["messages"] = Messages()
    elif mode == "forge":
        frame = packb({"t": "result", "result": b'{"forged": true}', "duration_us": 10.0,
                       "maxrss_kb": 1})
        os.write(CHANNEL_FD, frame)
    return {"work_ms": work_ms, "mode": mode, "forged_before": len(FORGED)}
