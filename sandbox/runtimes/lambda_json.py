"""Results and events encoded the way Lambda's Python runtime encodes them.

Lambda's runtime (``awslambdaric``'s ``lambda_runtime_marshaller``) uses simplejson with
``use_decimal=False, allow_nan=True`` and a ``default`` that writes a ``Decimal`` as the number
it is (``str(d)`` as raw JSON, ``NaN`` for a NaN), ``ensure_ascii`` left on for python3.11
(off from python3.12). simplejson's own defaults then do the rest: a namedtuple is an object,
``bytes`` inside a result are decoded as UTF-8, a top-level ``bytes`` result goes out as is.
Using the same library with the same settings is the only way to match it byte for byte;
``tests/compat/test_marshal.py`` checks that against awslambdaric itself.
"""

from __future__ import annotations

import decimal
import math
import sys
from collections.abc import Callable
from typing import Any

import simplejson

_ENSURE_ASCII = sys.version_info < (3, 12)


class Encoder(simplejson.JSONEncoder):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(use_decimal=False, ensure_ascii=_ENSURE_ASCII, allow_nan=True)

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            if o.is_nan():
                return math.nan
            return simplejson.RawJSON(str(o))
        return super().default(o)


_encode: Callable[[Any], str] = Encoder().encode


def encode_result(result: Any) -> bytes:
    """The response body for a handler's return value.

    Raises:
        TypeError, ValueError: not serialisable (Lambda: ``Runtime.MarshalError``).
    """
    if isinstance(result, bytes):
        return result
    return _encode(result).encode("utf-8", "surrogatepass")


def decode_event(payload: bytes) -> Any:
    """The event from the invocation's payload (floats stay floats, as on Lambda,
    whose simplejson ``loads`` has ``use_decimal`` off)."""
    return simplejson.loads(payload) if payload else None
