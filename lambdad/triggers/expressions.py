"""EventBridge schedule expressions: ``rate(...)``, ``cron(...)``, ``at(...)`` — pure logic.

The syntax is EventBridge's exactly (docs/triggers-schedules.md):

* ``rate(VALUE UNIT)``: ``minute`` / ``hour`` / ``day`` for a value of 1, ``minutes`` /
  ``hours`` / ``days`` otherwise. lambdad's own extension, for development only:
  ``rate(N second|seconds)``.
* ``cron(MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR)``: six fields, the sixth is the *year*
  (not seconds, as Quartz and some peers have it). Wildcards ``, - * ? / L W #``; exactly one of
  day-of-month and day-of-week must be ``?``. Day-of-week ``1-7`` = ``SUN-SAT``.
* ``at(yyyy-mm-ddThh:mm:ss)``: one fire.

cron and at are read in the schedule's time zone (default UTC); the fire times are computed
by **croniter** after translating AWS's fields to its five-field dialect (day-of-week numbers
shifted to 0-6, ``nL`` → ``Ln``, ``n#k`` → ``(n-1)#k``); the year field and ``LW`` (which
croniter lacks) are applied as filters on croniter's candidates.

Every refusal is an :class:`ExpressionError` naming the position (0-based character offset in
the whole expression) and the reason.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]

from lambdad.errors import InvalidParameterValue

RATE_UNITS: Final = {"minute": 60, "hour": 3600, "day": 86400, "second": 1}
MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 2199  # EventBridge's year range
# Candidates croniter may produce before a filter (year, LW) gives up: bounds the work of an
# expression that matches nothing, e.g. cron(0 0 30 2 ? *).
MAX_CANDIDATES: Final = 20_000


class ExpressionError(InvalidParameterValue):
    """A schedule expression EventBridge would refuse; ``position`` is the offending offset."""

    def __init__(self, expression: str, position: int, reason: str) -> None:
        super().__init__(
            f"invalid schedule expression {expression!r} at position {position}: {reason}",
            field="expression",
            position=position,
        )
        self.position = position
        self.reason = reason


@dataclass(frozen=True)
class _Field:
    text: str
    start: int  # offset of the field in the whole expression


@dataclass(frozen=True)
class Schedule:
    """A parsed expression. ``next_after(t)``: the first fire strictly after ``t`` (aware
    datetime), or None when there is none (an ``at`` in the past, a cron whose years ended).
    """

    expression: str
    kind: str  # "rate", "cron" or "at"
    timezone: str = "UTC"
    period_s: int = 0  # rate
    at: datetime | None = None  # at: aware, in the schedule's zone
    cron5: str = ""  # cron: croniter's five fields
    years: frozenset[int] | None = None  # cron: None = every year
    last_weekday: bool = False  # cron: day-of-month "LW"
    anchor: float = 0.0  # rate: fires at floor(anchor) + k * period (Unix time)

    def next_after(self, t: datetime) -> datetime | None:
        if self.kind == "rate":
            # Whole seconds: fire times are exact floats, so a fire time fed back in (through
            # a datetime, which rounds to microseconds) never yields itself again.
            ts = math.floor(t.timestamp() + 1e-6)
            anchor = math.floor(self.anchor)
            nxt = anchor + ((ts - anchor) // self.period_s + 1) * self.period_s
            return datetime.fromtimestamp(nxt, UTC)
        if self.kind == "at":
            assert self.at is not None
            return self.at if self.at > t else None
        zone = ZoneInfo(self.timezone)
        local = t.astimezone(zone)
        it = croniter(self.cron5, local)
        for _ in range(MAX_CANDIDATES):
            candidate: datetime = it.get_next(datetime)
            if candidate.year > MAX_YEAR:
                return None
            if self.years is not None and candidate.year not in self.years:
                later = [y for y in self.years if y > candidate.year]
                if not later:
                    return None
                if min(later) > candidate.year + 1:
                    # Jump to the next permitted year instead of walking through the ones between.
                    it = croniter(
                        self.cron5, datetime(min(later), 1, 1, tzinfo=zone) - timedelta(seconds=1)
                    )
                continue
            if self.last_weekday and candidate.day != _last_weekday(
                candidate.year, candidate.month
            ):
                continue
            return candidate
        return None

    def fires_between(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Fire times in ``(after, until]``, at most ``limit`` of them (the latest ones)."""
        out: list[datetime] = []
        t = after
        while True:
            nxt = self.next_after(t)
            if nxt is not None and nxt <= t:  # a schedule must move forward; never spin
                raise AssertionError(f"{self.expression}: next fire {nxt} is not after {t}")
            if nxt is None or nxt > until:
                return out[-limit:] if limit else []
            out.append(nxt)
            if len(out) > 4 * limit:
                out = out[-limit:]
            t = nxt


def _last_weekday(year: int, month: int) -> int:
    day = calendar.monthrange(year, month)[1]
    while calendar.weekday(year, month, day) >= 5:
        day -= 1
    return day


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidParameterValue(
            f"unknown time zone {name!r} (an IANA name such as 'Europe/Paris')", field="timezone"
        ) from exc
    return name


def parse(expression: str, timezone: str = "UTC", anchor: float = 0.0) -> Schedule:
    """Parse ``expression``; ``anchor`` is when a ``rate`` schedule starts counting.

    Raises:
        ExpressionError: naming the position and the reason.
        InvalidParameterValue: an unknown time zone.
    """
    check_timezone(timezone)
    if not isinstance(expression, str):
        raise InvalidParameterValue("expression must be a string", field="expression")
    m = re.fullmatch(r"(rate|cron|at)\((.*)\)", expression)
    if m is None:
        raise ExpressionError(expression, 0, "expected rate(...), cron(...) or at(...)")
    kind, body = m.group(1), m.group(2)
    offset = len(kind) + 1
    if kind == "rate":
        return _parse_rate(expression, body, offset, timezone, anchor)
    if kind == "at":
        return _parse_at(expression, body, offset, timezone)
    return _parse_cron(expression, body, offset, timezone)


def _parse_rate(expression: str, body: str, offset: int, tz: str, anchor: float) -> Schedule:
    m = re.fullmatch(r"(\S+) (\S+)", body)
    if m is None:
        raise ExpressionError(expression, offset, "rate takes 'VALUE UNIT', e.g. rate(5 minutes)")
    value_text, unit = m.group(1), m.group(2)
    if not value_text.isdigit() or int(value_text) <= 0:
        raise ExpressionError(
            expression, offset, f"rate value {value_text!r} is not a positive integer"
        )
    value = int(value_text)
    unit_at = offset + m.start(2)
    singular = unit.rstrip("s") if unit.endswith("s") else unit
    if singular not in RATE_UNITS:
        raise ExpressionError(
            expression,
            unit_at,
            f"unknown unit {unit!r} (minute(s), hour(s), day(s); lambdad also second(s))",
        )
    if value == 1 and unit != singular:
        raise ExpressionError(expression, unit_at, f"a value of 1 takes the singular {singular!r}")
    if value != 1 and unit == singular:
        raise ExpressionError(
            expression, unit_at, f"a value of {value} takes the plural {singular + 's'!r}"
        )
    return Schedule(expression, "rate", tz, period_s=value * RATE_UNITS[singular], anchor=anchor)


def _parse_at(expression: str, body: str, offset: int, tz: str) -> Schedule:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", body) is None:
        raise ExpressionError(expression, offset, "at takes yyyy-mm-ddThh:mm:ss")
    try:
        local = datetime.strptime(body, "%Y-%m-%dT%H:%M:%S")
    except ValueError as exc:
        raise ExpressionError(expression, offset, f"not a date and time: {exc}") from exc
    return Schedule(expression, "at", tz, at=local.replace(tzinfo=ZoneInfo(tz)))


def _split(body: str, offset: int) -> list[_Field]:
    fields = []
    for m in re.finditer(r"\S+", body):
        fields.append(_Field(m.group(0), offset + m.start()))
    return fields


def _parse_cron(expression: str, body: str, offset: int, tz: str) -> Schedule:
    fields = _split(body, offset)
    if len(fields) != 6:
        raise ExpressionError(
            expression,
            offset,
            f"cron takes 6 fields (minutes hours day-of-month month "
            f"day-of-week year), got {len(fields)}",
        )
    minute, hour, dom, month, dow, year = fields
    if (dom.text == "?") == (dow.text == "?"):
        where = dom if dom.text != "?" else dow
        raise ExpressionError(
            expression,
            where.start,
            "exactly one of day-of-month and day-of-week must be '?'",
        )
    parts = [
        _numeric(expression, minute, 0, 59, "minutes"),
        _numeric(expression, hour, 0, 23, "hours"),
    ]
    last_weekday = False
    if dom.text == "?":
        parts.append("*")
    elif dom.text == "LW":
        parts.append("*")
        last_weekday = True
    else:
        parts.append(_day_of_month(expression, dom))
    parts.append(_numeric(expression, month, 1, 12, "month", names=MONTHS, first=1))
    parts.append("*" if dow.text == "?" else _day_of_week(expression, dow))
    years = _years(expression, year)
    cron5 = " ".join(parts)
    try:
        croniter(cron5)
    except (ValueError, KeyError) as exc:  # a combination croniter cannot express
        raise ExpressionError(expression, offset, f"unsupported combination: {exc}") from exc
    return Schedule(expression, "cron", tz, cron5=cron5, years=years, last_weekday=last_weekday)


def _numeric(
    expression: str,
    f: _Field,
    low: int,
    high: int,
    what: str,
    names: tuple[str, ...] = (),
    first: int = 0,
) -> str:
    """A field of ``, - * /`` (and names): checked, returned in croniter's syntax."""
    out = []
    pos = f.start
    for item in f.text.split(","):
        out.append(_item(expression, item, pos, low, high, what, names, first))
        pos += len(item) + 1
    return ",".join(out)


def _item(
    expression: str,
    item: str,
    pos: int,
    low: int,
    high: int,
    what: str,
    names: tuple[str, ...],
    first: int,
    shift: int = 0,
) -> str:
    base, slash, step = item.partition("/")
    if slash and (not step.isdigit() or int(step) == 0):
        raise ExpressionError(
            expression,
            pos + len(base) + 1,
            f"step {step!r} in {what} is not a positive integer",
        )
    if base == "*":
        text = "*"
    else:
        lo_text, dash, hi_text = base.partition("-")
        lo = _value(expression, lo_text, pos, low, high, what, names, first)
        text = str(lo - shift)
        if dash:
            hi = _value(expression, hi_text, pos + len(lo_text) + 1, low, high, what, names, first)
            if hi < lo:
                raise ExpressionError(expression, pos, f"range {base!r} in {what} is backwards")
            text += f"-{hi - shift}"
        elif slash:
            text += f"-{high - shift}"
    return text + (f"/{step}" if slash else "")


def _value(
    expression: str,
    text: str,
    pos: int,
    low: int,
    high: int,
    what: str,
    names: tuple[str, ...],
    first: int,
) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + first
    if not text.isdigit():
        raise ExpressionError(expression, pos, f"{text!r} is not a valid {what} value")
    value = int(text)
    if not low <= value <= high:
        raise ExpressionError(expression, pos, f"{what} value {value} is outside {low}-{high}")
    return value


def _day_of_month(expression: str, f: _Field) -> str:
    text = f.text
    if text == "L":
        return "L"
    m = re.fullmatch(r"(\d+)W", text)
    if m:
        day = _value(expression, m.group(1), f.start, 1, 31, "day-of-month", (), 0)
        return f"{day}W"
    if "L" in text or "W" in text:
        raise ExpressionError(
            expression,
            f.start + text.find("L" if "L" in text else "W"),
            "L and W stand alone in day-of-month: L, LW or nW",
        )
    return _numeric(expression, f, 1, 31, "day-of-month")


def _day_of_week(expression: str, f: _Field) -> str:
    text = f.text.upper()
    m = re.fullmatch(r"(\w+)#(\d)", text)
    if m:
        day = _value(expression, m.group(1), f.start, 1, 7, "day-of-week", DAYS, 1)
        nth = int(m.group(2))
        if not 1 <= nth <= 5:
            raise ExpressionError(
                expression, f.start + len(m.group(1)) + 1, f"#{nth}: the week of the month is 1-5"
            )
        return f"{day - 1}#{nth}"
    if text == "L":
        return "6"  # the last day of the week: Saturday
    m = re.fullmatch(r"(\w+)L", text)
    if m:
        day = _value(expression, m.group(1), f.start, 1, 7, "day-of-week", DAYS, 1)
        return f"L{day - 1}"
    if "L" in text or "#" in text:  # no day name has an L in it
        raise ExpressionError(
            expression, f.start, "L and # stand alone in day-of-week: L, nL or n#k"
        )
    out = []
    pos = f.start
    for item in text.split(","):
        out.append(_item(expression, item, pos, 1, 7, "day-of-week", DAYS, 1, shift=1))
        pos += len(item) + 1
    return ",".join(out)


def _years(expression: str, f: _Field) -> frozenset[int] | None:
    if f.text == "*":
        return None
    years: set[int] = set()
    pos = f.start
    for item in f.text.split(","):
        base, slash, step_text = item.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) == 0):
            raise ExpressionError(
                expression,
                pos + len(base) + 1,
                f"step {step_text!r} in year is not a positive integer",
            )
        step = int(step_text) if slash else 1
        if base == "*":
            lo, hi = MIN_YEAR, MAX_YEAR
        else:
            lo_text, dash, hi_text = base.partition("-")
            lo = _value(expression, lo_text, pos, MIN_YEAR, MAX_YEAR, "year", (), 0)
            hi = lo
            if dash:
                hi = _value(
                    expression, hi_text, pos + len(lo_text) + 1, MIN_YEAR, MAX_YEAR, "year", (), 0
                )
            elif slash:
                hi = MAX_YEAR
            if hi < lo:
                raise ExpressionError(expression, pos, f"range {base!r} in year is backwards")
        years.update(range(lo, hi + 1, step))
        pos += len(item) + 1
    return frozenset(years)


__all__ = ["ExpressionError", "Schedule", "check_timezone", "parse"]
