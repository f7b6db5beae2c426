"""The error hierarchy that crosses the wire: stable type names, to_wire / from_wire."""

from __future__ import annotations

from typing import Any

import pytest

from lambdad import errors
from lambdad.errors import (
    ERROR_TYPES,
    FrameTooLarge,
    InvalidParameterValue,
    InvalidRequest,
    LambdadError,
    ProtocolError,
    ServiceError,
    TooManyRequests,
    UnsupportedVersion,
    from_wire,
)

# The wire contract: clients in other languages match on these strings.
STABLE_TYPES = {
    "ServiceError": errors.ServiceError,
    "ProtocolError": errors.ProtocolError,
    "FrameTooLarge": errors.FrameTooLarge,
    "UnsupportedVersion": errors.UnsupportedVersion,
    "InvalidRequest": errors.InvalidRequest,
    "InvalidParameterValue": errors.InvalidParameterValue,
    "ResourceNotFound": errors.ResourceNotFound,
    "RequestTooLarge": errors.RequestTooLarge,
    "TooManyRequests": errors.TooManyRequests,
    "AccessDenied": errors.AccessDenied,
    "ShuttingDown": errors.ShuttingDown,
    "DaemonUnreachable": errors.DaemonUnreachable,
    "ConnectionLost": errors.ConnectionLost,
}


def test_type_names_are_stable() -> None:
    for name, cls in STABLE_TYPES.items():
        assert cls.type == name
        assert ERROR_TYPES[name] is cls


def test_every_registered_type_is_named_by_its_own_class() -> None:
    for name, cls in ERROR_TYPES.items():
        assert cls.type == name
        assert issubclass(cls, LambdadError)


def test_the_base_class_does_not_shadow_service_error() -> None:
    # LambdadError and ServiceError share the wire name; the concrete class must win.
    assert LambdadError.type == "ServiceError"
    assert ERROR_TYPES["ServiceError"] is ServiceError


def test_hierarchy_lets_callers_catch_families() -> None:
    assert issubclass(FrameTooLarge, ProtocolError)
    assert issubclass(UnsupportedVersion, ProtocolError)
    assert issubclass(InvalidParameterValue, InvalidRequest)
    assert not issubclass(TooManyRequests, ProtocolError)


@pytest.mark.parametrize("cls", sorted(STABLE_TYPES.values(), key=lambda c: c.type), ids=str)
def test_each_type_round_trips(cls: type[LambdadError]) -> None:
    exc = cls("it went wrong", field="memory_mb", limit=3, nested={"a": [1, b"x"]})

    wire = exc.to_wire()
    back = from_wire(wire)

    assert wire == {
        "type": cls.type,
        "message": "it went wrong",
        "field": "memory_mb",
        "limit": 3,
        "nested": {"a": [1, b"x"]},
    }
    assert type(back) is cls
    assert back.message == "it went wrong"
    assert str(back) == "it went wrong"
    assert back.details == {"field": "memory_mb", "limit": 3, "nested": {"a": [1, b"x"]}}
    assert back.to_wire() == wire


def test_details_cannot_override_type_or_message() -> None:
    exc = TooManyRequests("real message", reason="R")
    exc.details["type"] = "Forged"
    exc.details["message"] = "forged"

    wire = exc.to_wire()

    assert wire["type"] == "TooManyRequests"
    assert wire["message"] == "real message"


def test_unknown_type_keeps_its_name_and_details() -> None:
    wire = {"type": "FutureError", "message": "from a newer daemon", "hint": "upgrade"}

    exc = from_wire(wire)

    assert type(exc) is LambdadError
    assert exc.type == "FutureError"
    assert exc.message == "from a newer daemon"
    assert exc.details == {"hint": "upgrade"}
    assert exc.to_wire() == wire
    # The class attribute is untouched: only that instance carries the new name.
    assert LambdadError.type == "ServiceError"


@pytest.mark.parametrize(
    ("wire", "expected_type", "message"),
    [
        ({}, ServiceError, ""),
        ({"message": "m"}, ServiceError, "m"),
        ({"type": "TooManyRequests"}, TooManyRequests, ""),
        ({"type": "TooManyRequests", "message": 42}, TooManyRequests, "42"),
    ],
    ids=repr,
)
def test_missing_fields_get_defaults(
    wire: dict[str, Any], expected_type: type[LambdadError], message: str
) -> None:
    exc = from_wire(wire)
    assert type(exc) is expected_type
    assert exc.message == message


def test_non_string_detail_keys_are_dropped() -> None:
    exc = from_wire({"type": "ServiceError", "message": "m", 1: "x", b"k": "y", "ok": True})
    assert exc.details == {"ok": True}


@pytest.mark.parametrize("wire", ["boom", None, [1, 2], 7], ids=repr)
def test_a_malformed_error_object_is_a_protocol_error(wire: Any) -> None:
    exc = from_wire(wire)
    assert type(exc) is ProtocolError
    assert exc.message == f"malformed error object: {wire!r}"


def test_repr_names_the_class_and_message() -> None:
    assert repr(TooManyRequests("slow down", reason="R")) == "TooManyRequests('slow down')"
