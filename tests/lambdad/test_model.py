"""lambdad.model: the requests and results every front and client share, and their wire form."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from lambdad.errors import InvalidParameterValue
from lambdad.metering import Report
from lambdad.model import Caller, InvocationResult, InvokeRequest

REPORT = Report(
    request_id="r", duration_ms=1.25, billed_ms=2, memory_mb=128, max_memory_used_mb=3,
    init_ms=4.5, cold=True, source="pool", version="2", queue_us=7, phases_us={"fork": 600},
)  # fmt: skip


def _field_names(obj: object) -> set[str]:
    return set(vars(obj))


def test_from_wire_builds_every_field_as_the_constructor_would() -> None:
    caller = Caller("unix", 1, 2, 3)
    args = {"name": "f", "payload": "{}", "type": "async", "qualifier": "3", "log_tail": 1,
            "force_cold": True, "client_context": "e30=", "trace_id": "Root=1"}  # fmt: skip
    built = InvokeRequest.from_wire(args, caller)
    assert built == InvokeRequest(
        function="f", payload=b"{}", qualifier="3", type="async", log_tail=True,
        client_context="e30=", trace_id="Root=1", caller=caller, force_cold=True,
    )  # fmt: skip
    assert _field_names(built) == {f.name for f in fields(InvokeRequest)}


def test_ran_builds_every_field_as_the_constructor_would() -> None:
    built = InvocationResult.ran("r", b"1", None, None, REPORT, "tail")
    assert built == InvocationResult(
        request_id="r", result=b"1", report=REPORT, log_tail="tail", executed_version="2"
    )
    assert _field_names(built) == {f.name for f in fields(InvocationResult)}


def test_fast_built_values_are_still_frozen() -> None:
    built = InvocationResult.ran("r", b"1", None, None, REPORT, None)
    with pytest.raises(AttributeError):
        built.result = b"2"  # type: ignore[misc]


@pytest.mark.parametrize(
    "result",
    [
        InvocationResult.ran("r", b'{"a": 1}', None, None, REPORT, None),
        InvocationResult.ran(
            "r", None, {"errorType": "E", "errorMessage": "m"}, "Handled", REPORT, "log"
        ),
        InvocationResult(request_id="e", status=202, event_id="e"),
        InvocationResult(request_id="", status=204, executed_version="4"),
    ],
)
def test_results_round_trip_through_the_wire(result: InvocationResult) -> None:
    assert InvocationResult.from_wire(result.to_wire()) == result


def test_requests_round_trip_through_the_wire() -> None:
    request = InvokeRequest("f", b"[1]", qualifier="2", type="dryrun", log_tail=True,
                            force_cold=True, trace_id="t")  # fmt: skip
    assert InvokeRequest.from_wire(request.to_wire()) == request


@pytest.mark.parametrize(
    "args, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "f", "type": "later"}, "type"),
        ({"name": "f", "payload": 5}, "payload"),
        ({"name": "f", "qualifier": 1}, "qualifier"),
        ({"name": "f", "client_context": {}}, "client_context"),
        ({"name": "f", "trace_id": 1}, "trace_id"),
    ],
)
def test_from_wire_names_the_first_bad_field(args: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        InvokeRequest.from_wire(args)
    assert info.value.details["field"] == field
