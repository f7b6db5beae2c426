"""Attacks on the daemon through the sandbox's own channel to it.

The runtime talks to the daemon over a Unix socket at fd 3 (msgpack maps). The handler runs
in the same process, so it can write anything there: the daemon must treat whatever arrives
as hostile -- garbage, forged or malformed results, a flood -- and lose at most this sandbox.
"""

import os
import threading
import time

CHANNEL_FD = 3


def _pack(value):
    """A minimal msgpack encoder (maps, short strings, ints): a function cannot import lambdad's
    msgpack, as on Lambda it could not import the runtime's dependencies either."""
    if isinstance(value, dict):
        assert len(value) < 16
        return bytes([0x80 | len(value)]) + b"".join(_pack(k) + _pack(v) for k, v in value.items())
    if isinstance(value, str):
        data = value.encode()
        assert len(data) < 32
        return bytes([0xA0 | len(data)]) + data
    if isinstance(value, int) and 0 <= value < 128:
        return bytes([value])
    raise TypeError(type(value))


def _write(data):
    view = memoryview(data)
    while view:
        view = view[os.write(CHANNEL_FD, view):]


def garbage(event):
    _write(b"\xc1" * 16)  # 0xc1 is never valid msgpack
    time.sleep(event.get("linger_s", 2.0))  # the daemon must not wait for us to finish
    return {"sent": "garbage"}


def deep(event):
    _write(b"\x91" * 100_000 + b"\xc0")  # [[[[...nil...]]]]: past any sane nesting limit
    time.sleep(event.get("linger_s", 2.0))
    return {"sent": "deep"}


def malformed_result(event):
    # A result frame whose fields have the wrong types.
    _write(_pack({"t": "result", "result": 5, "error": 7, "duration_us": "abc",
                  "maxrss_kb": "x"}))
    time.sleep(event.get("linger_s", 0.5))
    return {"sent": "malformed"}


def flood(event):
    """Send small well-formed maps as fast as possible for ``seconds``, from a thread, while
    the handler itself returns normally."""
    frame = _pack({"t": "x"})
    burst = frame * (65536 // len(frame))
    deadline = time.monotonic() + event["seconds"]

    def run():
        while time.monotonic() < deadline:
            try:
                _write(burst)
            except OSError:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    if event.get("wait", True):
        t.join()
    return {"flooded_s": event["seconds"]}


def handler(event, context):
    return globals()[event["mode"]](event)
