"""Result encoding, byte for byte against Lambda's own runtime client (awslambdaric)."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import math
from typing import Any

import pytest
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller

from sandbox.runtimes import lambda_json

Point = collections.namedtuple("Point", "x y")


class Color(enum.IntEnum):
    RED = 1


class Tags(dict[str, Any]):
    pass


CASES: list[Any] = [
    None,
    True,
    0,
    -7,
    2**70,
    1.5,
    1e300,
    float("inf"),
    float("-inf"),
    "",
    "café ☕ \u2028 \x00",
    "\ud83d\ude00",
    [1, [2, [3, []]]],
    (1, "two", None),
    {"a": 1, "b": [True, False]},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    decimal.Decimal("19.990"),
    decimal.Decimal("-0"),
    decimal.Decimal("1E+3"),
    decimal.Decimal("1.2345678901234567890123456789"),
    decimal.Decimal("Infinity"),
    {"item": {"price": decimal.Decimal("3.50"), "qty": decimal.Decimal(2)}},
    Point(1, 2),
    [Point(Point(0, 0), [Point(1, 1)])],
    {"raw": b"utf-8 bytes", "nested": [b"x"]},
    Color.RED,
    Tags(env="prod"),
    {"deep": {"deeper": {"deepest": [{"k": "v"}] * 3}}},
]


@pytest.mark.parametrize("value", CASES, ids=lambda v: repr(v)[:40])
def test_encoding_matches_awslambdaric(value: Any) -> None:
    theirs, content_type = LambdaMarshaller().marshal_response(value)
    assert content_type == "application/json"
    assert lambda_json.encode_result(value) == theirs.encode("utf-8", "surrogatepass")


def test_decimal_nan_and_float_nan() -> None:
    for value in (decimal.Decimal("NaN"), math.nan, [math.nan]):
        theirs, _ = LambdaMarshaller().marshal_response(value)
        assert lambda_json.encode_result(value) == theirs.encode()


def test_top_level_bytes_go_out_as_they_are() -> None:
    theirs, content_type = LambdaMarshaller().marshal_response(b"\x00\xffraw")
    assert content_type == "application/unknown"
    assert lambda_json.encode_result(b"\x00\xffraw") == theirs == b"\x00\xffraw"


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        datetime.datetime(2026, 12, 1),
        object(),
        {"k": {"nested": {1j}}},
        {(1, 2): "tuple key"},
    ],
    ids=["set", "datetime", "object", "nested-complex", "tuple-key"],
)
def test_unserialisable_values_fail_with_the_same_message(value: Any) -> None:
    with pytest.raises(Exception) as theirs:
        LambdaMarshaller().marshal_response(value)
    with pytest.raises((TypeError, ValueError)) as ours:
        lambda_json.encode_result(value)
    # awslambdaric wraps it: "Unable to marshal response: <simplejson's message>"
    assert theirs.value.msg == f"Unable to marshal response: {ours.value}"  # type: ignore[attr-defined]


def test_events_decode_as_lambda_decodes_them() -> None:
    payload = b'{"a": 1.10, "b": [1, 2], "c": "\\u00e9", "d": 12345678901234567890}'
    assert lambda_json.decode_event(payload) == LambdaMarshaller().unmarshal_request(payload)
    assert lambda_json.decode_event(b"") is None
