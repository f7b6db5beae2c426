"""Fuzzing the daemon's side of the sandbox link, from inside the sandbox (issue 12 point 11).

The runtime's channel to the daemon is fd 3 (msgpack maps over a stream socket) and user code
shares its process, so it can write anything there, at any moment: during Init (this module's
import) or during an invocation. Every attempt draws a random seed (printed to the log as
``FUZZ <where> seed <n> ending <how>``, so a failure can be replayed with ``{"seed": n}``),
writes a few random or malformed frames, and then ends one of several ways. Whatever it
sends, the daemon must lose this sandbox and nothing else: no entry left in its state, nothing
charged to the memory budget, no descriptor kept.

Deployed with ``FUZZ_INIT=1`` in its environment, the attack runs at import (Init); invoked with
``{"fuzz": true}``, during the invocation.
"""

import array
import os
import random
import socket
import struct
import sys

from packb import packb

CHANNEL_FD = 3
KINDS = ["init-done", "init-error", "result", "ready", "invoke", "init", "retire", "exited",
         "spawned", "spawn", "config", "x", "", 5, None, b"init-done", ["init-done"]]
FIELDS = ["phases", "init_us", "error", "result", "duration_us", "maxrss_kb", "bad_payload",
          "function", "code_path", "request_id", "payload", "timeout_ms", "t", "id", "pid"]
# Endings that leave the stream parseable (only whole msgpack objects were sent) may let the
# runtime carry on; after raw bytes the daemon may be waiting inside a half frame, so those
# attempts end by closing the link or exiting, not by a 10 s Init timeout.
WHOLE_ENDINGS = ["continue", "raise", "exit", "shutdown", "close"]
RAW_ENDINGS = ["exit", "shutdown"]


def _write(data):
    view = memoryview(data)
    while view:
        view = view[os.write(CHANNEL_FD, view):]


def _deep(depth, leaf):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def _value(rng, depth=0):
    """A random msgpack-able value, weighted towards the shapes that break validators."""
    choice = rng.randrange(14 if depth < 3 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1,
                           rng.randrange(-9, 10**6)])
    if choice == 3:
        return rng.choice([0.0, -0.0, 1.5, -1e308, 1e308, float("inf"), float("-inf"),
                           float("nan"), rng.random() * 1e6])
    if choice == 4:
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(0, 40)))
    if choice == 5:
        return os.urandom(rng.randrange(0, 64))
    if choice == 6:
        return "A" * rng.choice([0, 63, 64, 65, 5000, 70_000])
    if choice == 7:
        return rng.choice(KINDS)
    if choice == 8:
        # msgpack packs at most 511 levels; deeper nesting is sent raw (_whole_frame).
        return _deep(rng.choice([10, 200, 490]), rng.choice([None, "x", {}]))
    if choice in (9, 10):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    return {rng.choice([*FIELDS, "errorMessage", "errorType", "stackTrace", "k"]):
            _value(rng, depth + 1) for _ in range(rng.randrange(0, 6))}


def _message(rng):
    """A map that looks like one of the link's messages, with random or wrong fields."""
    msg = {"t": rng.choice(KINDS)}
    for _ in range(rng.randrange(0, 6)):
        msg[rng.choice(FIELDS)] = _value(rng)
    if rng.random() < 0.3:
        msg["phases"] = {f"p{i}" * rng.choice([1, 20]): _value(rng)
                         for i in range(rng.choice([0, 3, 64, 65, 500]))}
    if rng.random() < 0.2:
        msg["error"] = {"errorMessage": _value(rng), "errorType": _value(rng),
                        "stackTrace": _value(rng)}
    return msg


def _pack(obj):
    return packb(obj)


def _whole_frame(rng):
    """One complete msgpack object (the daemon's unpacker always finishes it)."""
    kind = rng.randrange(9)
    if kind == 8:  # a field nested deeper than Python's recursion limit: str() of it raises
        field = rng.choice([b"\xa1t", b"\xa5error", b"\xa6phases", b"\xa6result"])
        return b"\x82\xa1t" + _pack(rng.choice(KINDS[:3])) + field + b"\x91" * rng.choice(
            [600, 1000, 1020]) + b"\xc0"
    if kind == 0:  # a well-formed init-done or result: forged, early or duplicated
        return _pack(rng.choice([
            {"t": "init-done", "phases": {}, "init_us": rng.choice([0, 1, 2**64 - 1])},
            {"t": "result", "result": b"null", "duration_us": rng.choice([0.0, 1e11]),
             "maxrss_kb": 1},
        ]))
    if kind == 1:  # not a map
        return _pack(_value(rng))
    if kind == 2:  # a map with non-string keys (msgpack refuses them when strict)
        return b"\x81" + _pack(rng.choice([1, 2.5, None, True])) + _pack("init-done")
    if kind == 3:  # a string that is not UTF-8, where a string is expected
        return b"\x82" + _pack("t") + _pack("init-done") + _pack("phases") + b"\x81\xa2\xff\xfe\x01"
    return _pack(_message(rng))


def _raw_frame(rng):
    """Bytes that need not be msgpack at all, or a frame cut short, or a huge header."""
    kind = rng.randrange(5)
    if kind == 0:
        return os.urandom(rng.randrange(1, 300))
    if kind == 1:
        frame = _pack({"t": "init-done", "phases": {"a": 1}, "init_us": 5})
        return frame[: rng.randrange(1, len(frame))]
    if kind == 2:  # bin32 / array32 / map32 headers announcing more than any message may be
        return rng.choice([b"\xc6", b"\xdd", b"\xdf"]) + struct.pack(">I", rng.choice(
            [2**32 - 1, 8 * 2**20, 2**31]))
    if kind == 3:
        return b"\xc1" * rng.randrange(1, 20)  # never valid msgpack
    return b"\x91" * rng.randrange(1000, 100_000) + b"\xc0"  # nesting past any limit


def _send_with_fd(data):
    """A frame with a descriptor attached (SCM_RIGHTS): the daemon must not keep it."""
    r, w = os.pipe()
    sock = socket.socket(fileno=os.dup(CHANNEL_FD))  # closing the duplicate leaves fd 3 open
    try:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r, w]))])
    finally:
        sock.close()
        os.close(r)
        os.close(w)


def attack(where, seed=None):
    """Send this attempt's frames; return how it is to end (the caller carries it out)."""
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    rng = random.Random(seed)
    raw = rng.random() < 0.35
    ending = rng.choice(RAW_ENDINGS if raw else WHOLE_ENDINGS)
    print(f"FUZZ {where} seed {seed} ending {ending}", flush=True)
    for _ in range(rng.randrange(1, 6)):
        data = _raw_frame(rng) if raw and rng.random() < 0.6 else _whole_frame(rng)
        try:
            if rng.random() < 0.15:
                _send_with_fd(data)
            else:
                _write(data)
        except OSError:
            break  # the daemon already hung up on us: it should
    return ending


def finish(ending):
    if ending == "raise":
        raise RuntimeError("fuzz: raising after the frames")
    if ending == "exit":
        os._exit(3)
    if ending == "shutdown":
        sock = socket.socket(fileno=os.dup(CHANNEL_FD))
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()
    if ending == "close":
        os.close(CHANNEL_FD)  # the runtime's own answer then fails: it dies


if os.environ.get("FUZZ_INIT"):
    finish(attack("init", int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else None))


def handler(event, context):
    event = event or {}
    if event.get("fuzz"):
        finish(attack("invoke", event.get("seed")))
    sys.stdout.flush()
    return {"ok": True, "pid": os.getpid()}
