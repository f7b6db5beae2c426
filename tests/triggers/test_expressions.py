"""EventBridge schedule expressions against AWS's own documented examples (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lambdad.triggers.expressions import ExpressionError, parse

BASE = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday

# AWS's examples (EventBridge "Schedule expressions for rules"): expression -> next 5 fires
# after 2026-12-01T00:00:00Z.
AWS_EXAMPLES = {
    # 10:15 AM UTC every day
    "cron(15 10 * * ? *)": ["2026-12-01T10:15", "2026-12-02T10:15", "2026-12-03T10:15",
                            "2026-12-04T10:15", "2026-12-05T10:15"],
    # 6:00 PM Monday through Friday
    "cron(0 18 ? * MON-FRI *)": ["2026-12-01T18:00", "2026-12-02T18:00", "2026-12-03T18:00",
                                 "2026-12-04T18:00", "2026-12-07T18:00"],
    # 8:00 AM on the first day of the month
    "cron(0 8 1 * ? *)": ["2026-12-01T08:00", "2027-01-01T08:00", "2027-02-01T08:00",
                          "2027-03-01T08:00", "2027-04-01T08:00"],
    # every 10 min on weekdays
    "cron(0/10 * ? * MON-FRI *)": ["2026-12-01T00:10", "2026-12-01T00:20", "2026-12-01T00:30",
                                   "2026-12-01T00:40", "2026-12-01T00:50"],
    # every 5 minutes between 8:00 AM and 5:55 PM weekdays
    "cron(0/5 8-17 ? * MON-FRI *)": ["2026-12-01T08:00", "2026-12-01T08:05", "2026-12-01T08:10",
                                     "2026-12-01T08:15", "2026-12-01T08:20"],
    # 9 AM on the first Monday of each month
    "cron(0 9 ? * 2#1 *)": ["2026-12-07T09:00", "2027-01-04T09:00", "2027-02-01T09:00",
                            "2027-03-01T09:00", "2027-04-05T09:00"],
    # the last day of the month, and the last weekday of the month
    "cron(0 12 L * ? *)": ["2026-12-31T12:00", "2027-01-31T12:00", "2027-02-28T12:00",
                           "2027-03-31T12:00", "2027-04-30T12:00"],
    "cron(0 12 LW * ? *)": ["2026-12-31T12:00", "2027-01-29T12:00", "2027-02-26T12:00",
                            "2027-03-31T12:00", "2027-04-30T12:00"],
    # the weekday nearest the 15th; the last Friday; a year range
    "cron(0 0 15W * ? *)": ["2026-12-15T00:00", "2027-01-15T00:00", "2027-02-15T00:00",
                            "2027-03-15T00:00", "2027-04-15T00:00"],
    "cron(0 0 ? * 6L *)": ["2026-12-25T00:00", "2027-01-29T00:00", "2027-02-26T00:00",
                           "2027-03-26T00:00", "2027-04-30T00:00"],
    "cron(0 12 29 2 ? 2028-2044/4)": ["2028-02-29T12:00", "2032-02-29T12:00", "2036-02-29T12:00",
                                      "2040-02-29T12:00", "2044-02-29T12:00"],
    "rate(5 minutes)": ["2026-12-01T00:05", "2026-12-01T00:10", "2026-12-01T00:15",
                        "2026-12-01T00:20", "2026-12-01T00:25"],
    "rate(1 day)": ["2026-12-02T00:00", "2026-12-03T00:00", "2026-12-04T00:00",
                    "2026-12-05T00:00", "2026-12-06T00:00"],
}  # fmt: skip


def next_five(expression: str, timezone: str = "UTC") -> list[str]:
    schedule = parse(expression, timezone)
    out, t = [], BASE
    for _ in range(5):
        nxt = schedule.next_after(t)
        if nxt is None:
            break
        out.append(nxt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))
        t = nxt
    return out


@pytest.mark.parametrize("expression", sorted(AWS_EXAMPLES))
def test_aws_examples_fire_when_aws_says(expression: str) -> None:
    assert next_five(expression) == AWS_EXAMPLES[expression]


def test_time_zone_and_at() -> None:
    # 09:00 in Paris is 08:00 UTC in winter.
    assert next_five("cron(0 9 * * ? *)", "Europe/Paris")[0] == "2026-12-01T08:00"
    assert next_five("at(2027-01-01T00:00:00)") == ["2027-01-01T00:00"]
    assert next_five("at(2020-01-01T00:00:00)") == []
    assert next_five("rate(10 seconds)")[:2] == ["2026-12-01T00:00", "2026-12-01T00:00"]


@pytest.mark.parametrize(
    ("expression", "position", "reason"),
    [
        ("rate(1 minutes)", 7, "singular 'minute'"),
        ("rate(5 minute)", 7, "plural 'minutes'"),
        ("rate(0 hours)", 5, "not a positive integer"),
        ("rate(5 fortnights)", 7, "unknown unit"),
        ("cron(0 10 * * * *)", 10, "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 10 ? * ? *)", 14, "exactly one of"),
        ("cron(0 10 * * ?)", 5, "cron takes 6 fields"),
        ("cron(61 10 * * ? *)", 5, "minutes value 61 is outside 0-59"),
        ("cron(0 25 * * ? *)", 7, "hours value 25 is outside 0-23"),
        ("cron(0 10 ? * 8 *)", 14, "day-of-week value 8 is outside 1-7"),
        ("cron(0 10 ? * MON#6 *)", 18, "week of the month is 1-5"),
        ("cron(0/0 10 * * ? *)", 7, "step '0'"),
        ("cron(0 10 * * ? 1969)", 16, "year value 1969"),
        ("at(2027-13-01T00:00:00)", 3, "not a date and time"),
        ("at(tomorrow)", 3, "yyyy-mm-ddThh:mm:ss"),
        ("every 5 minutes", 0, "expected rate(...), cron(...) or at(...)"),
    ],
)
def test_bad_expressions_name_position_and_reason(expression: str, position: int,
                                                  reason: str) -> None:  # fmt: skip
    with pytest.raises(ExpressionError) as info:
        parse(expression)
    assert info.value.position == position
    assert reason in info.value.reason
    assert f"at position {position}" in info.value.message
