"""Sleeps (or busy-spins) for the time asked: used for timeouts and metering accuracy.

Event: {"ms": 50} sleeps 50 ms; {"ms": 20, "spin": true} burns CPU for 20 ms instead.
Returns the handler's own measurement of how long it took, to compare with the REPORT.
"""

import time


def handler(event, context):
    ms = float((event or {}).get("ms", 100))
    start = time.monotonic_ns()
    if (event or {}).get("spin"):
        while time.monotonic_ns() - start < ms * 1e6:
            pass
    else:
        time.sleep(ms / 1000)
    return {"slept_ms": (time.monotonic_ns() - start) / 1e6}
