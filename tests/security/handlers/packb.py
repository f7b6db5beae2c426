"""msgpack encoding for attack handlers, in plain Python.

A function cannot import lambdad's msgpack (nothing of the daemon's environment is visible in a
sandbox, as on Lambda), so handlers that write frames on the runtime's link encode them here:
nil, bool, int, float, str, bytes, list/tuple and dict, as ``msgpack.packb(obj,
use_bin_type=True)`` would.
"""

import struct


def packb(obj):
    out = bytearray()
    _pack(obj, out)
    return bytes(out)


def _length(n, fix, fix_max, small, medium, large, out):
    if fix is not None and n <= fix_max:
        out.append(fix | n)
    elif small is not None and n < 0x100:
        out += bytes((small, n))
    elif n < 0x10000:
        out.append(medium)
        out += struct.pack(">H", n)
    else:
        out.append(large)
        out += struct.pack(">I", n)


def _pack(obj, out):
    if obj is None:
        out.append(0xC0)
    elif obj is True or obj is False:
        out.append(0xC3 if obj else 0xC2)
    elif isinstance(obj, int):
        if 0 <= obj < 0x80:
            out.append(obj)
        elif -32 <= obj < 0:
            out += struct.pack(">b", obj)
        elif 0 <= obj < 2**64:
            out.append(0xCF)
            out += struct.pack(">Q", obj)
        else:
            out.append(0xD3)
            out += struct.pack(">q", obj)
    elif isinstance(obj, float):
        out.append(0xCB)
        out += struct.pack(">d", obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        _length(len(data), 0xA0, 31, 0xD9, 0xDA, 0xDB, out)
        out += data
    elif isinstance(obj, bytes | bytearray | memoryview):
        data = bytes(obj)
        _length(len(data), None, 0, 0xC4, 0xC5, 0xC6, out)
        out += data
    elif isinstance(obj, list | tuple):
        _length(len(obj), 0x90, 15, None, 0xDC, 0xDD, out)
        for item in obj:
            _pack(item, out)
    elif isinstance(obj, dict):
        _length(len(obj), 0x80, 15, None, 0xDE, 0xDF, out)
        for key, value in obj.items():
            _pack(key, out)
            _pack(value, out)
    else:
        raise TypeError(f"cannot pack {type(obj).__name__}")
