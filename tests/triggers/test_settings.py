"""Trigger settings are checked per kind, and every refusal names its field (pure logic)."""

from __future__ import annotations

import pytest

from lambdad.errors import InvalidParameterValue
from lambdad.triggers.store import check_settings


def test_defaults_are_filled_in() -> None:
    assert check_settings("http", {"route": "GET /a"}) == {
        "route": "GET /a", "payload_format": "2.0", "api": "http", "cors": None,
    }  # fmt: skip
    assert check_settings("http", {"route": "GET /a", "api": "rest"})["payload_format"] == "1.0"
    assert check_settings("schedule", {"expression": "rate(1 day)"})["catch_up"] == "none"


@pytest.mark.parametrize(
    ("kind", "settings", "field"),
    [
        ("queue", {}, "kind"),
        ("http", {}, "route"),
        ("http", {"route": "GET /a", "payload_fromat": "1.0"}, "settings"),
        ("http", {"route": "GET /a", "api": "rest", "payload_format": "2.0"}, "payload_format"),
        ("http", {"route": "GET /a", "cors": {"allow_origins": ["*"], "allow_credentials": True}},
         "cors.allow_origins"),
        ("http", {"route": "GET /a", "cors": {"max_age": 90000}}, "cors.max_age"),
        ("url", {"auth_type": "PASSWORD"}, "auth_type"),
        ("schedule", {}, "expression"),
        ("schedule", {"expression": "rate(1 day)", "timezone": "Mars/Olympus"}, "timezone"),
        ("schedule", {"expression": "rate(1 day)", "input": "{not json"}, "input"),
        ("schedule", {"expression": "rate(1 day)", "input": '"' + "x" * 262144 + '"'}, "input"),
        ("schedule", {"expression": "rate(1 day)", "catch_up": "some"}, "catch_up"),
        ("schedule", {"expression": "rate(1 day)", "overlap": "queue"}, "overlap"),
    ],
)  # fmt: skip
def test_bad_settings_name_their_field(kind: str, settings: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        check_settings(kind, settings)
    assert info.value.details["field"] == field
