"""Scale-out probe: note when the handler started (CLOCK_MONOTONIC, shared with the host: no
time namespace), then hold the sandbox busy so that every concurrent invocation needs its own.

Event: {"ms": 5000} holds for 5 s. Returns {"started_ns": ...}.
"""

import time
from typing import Any


def handler(event: Any, context: Any) -> dict[str, int]:
    started = time.monotonic_ns()
    time.sleep(float((event or {}).get("ms", 1000)) / 1000)
    return {"started_ns": started}
