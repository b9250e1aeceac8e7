"""Standard 5-field cron expressions: parsing, matching, and the next or latest slot in UTC."""

from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from queuectl import errors

_MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# The longest each month can be (February in a leap year), for the "never fires" check.
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# The Gregorian calendar repeats every 400 years, so a slot that exists occurs within that span.
_HORIZON_DAYS = 401 * 366
_LOOKBACK_DAYS = 366


@dataclass(frozen=True)
class _Spec:
    name: str
    low: int
    high: int  # the largest value one may write (7 for day of week)
    top: int  # where `*` and `a/n` end (6 for day of week: Sunday is 0)
    names: dict[str, int]


_SPECS = (
    _Spec("minute", 0, 59, 59, {}),
    _Spec("hour", 0, 23, 23, {}),
    _Spec("day of month", 1, 31, 31, {}),
    _Spec("month", 1, 12, 12, _MONTHS),
    _Spec("day of week", 0, 7, 6, _WEEKDAYS),
)


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field (day of week 0-6, Sunday 0)."""

    text: str = field(compare=False)
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    # Vixie rule: when neither day field starts with `*`, a day matches if EITHER matches.
    either_day: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """A Cron from `m h dom mon dow` or a macro such as `@daily`; UsageError otherwise."""
        expanded = text.strip()
        if expanded.startswith("@"):
            if expanded.lower() not in _MACROS:
                known = ", ".join(_MACROS)
                raise _bad(text, f"unknown macro (use one of {known})")
            expanded = _MACROS[expanded.lower()]
        fields = expanded.split()
        if len(fields) != 5:
            raise _bad(
                text,
                f"expected 5 fields (minute hour day-of-month month day-of-week), "
                f"got {len(fields)}",
            )
        minutes, hours, days, months, weekdays = (
            _parse_field(raw, spec, text) for raw, spec in zip(fields, _SPECS, strict=True)
        )
        either = not fields[2].startswith("*") and not fields[4].startswith("*")
        cron = cls(text, minutes, hours, days, months, weekdays, either_day=either)
        if not either and not any(
            day <= _LONGEST_MONTH[month - 1] for month in cron.months for day in cron.days
        ):
            raise _bad(text, "never fires: no month in the month field has that day of month")
        return cron

    def matches(self, at: datetime) -> bool:
        """Whether the whole minute containing `at` is a slot."""
        at = _utc(at)
        return (
            at.minute in self.minutes
            and at.hour in self.hours
            and at.month in self.months
            and self._day_matches(at.date())
        )

    def next_after(self, at: datetime) -> datetime:
        """The first slot strictly after `at` (a slot is the start of a whole minute)."""
        at = _utc(at)
        ordinal, minute = at.toordinal(), at.hour * 60 + at.minute + 1
        if minute == 24 * 60:
            ordinal, minute = ordinal + 1, 0
        stop = min(ordinal + _HORIZON_DAYS, date.max.toordinal())
        found = self._search(ordinal, minute, stop, forward=True)
        if found is None:
            raise errors.UsageError(
                f"cron expression {self.text!r} never fires after {at.isoformat()}"
            )
        return found

    def latest_at_or_before(self, at: datetime) -> datetime | None:
        """The most recent slot at or before `at`, or None if none in the 366 days before it."""
        at = _utc(at).replace(second=0, microsecond=0)
        stop = max(at.toordinal() - _LOOKBACK_DAYS, 1)
        found = self._search(at.toordinal(), at.hour * 60 + at.minute, stop, forward=False)
        if found is None or (at - found).days >= _LOOKBACK_DAYS:
            return None
        return found

    def _day_matches(self, day: date) -> bool:
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        return in_days or in_weekdays if self.either_day else in_days and in_weekdays

    def _search(self, ordinal: int, minute: int, stop: int, *, forward: bool) -> datetime | None:
        """The first slot from day `ordinal`, minute of day `minute`, towards day `stop`."""
        times = sorted(hour * 60 + m for hour in self.hours for m in self.minutes)
        step = 1 if forward else -1
        while (stop - ordinal) * step >= 0:
            day = date.fromordinal(ordinal)
            if day.month not in self.months:  # jump to the next (or previous) month's edge
                length = calendar.monthrange(day.year, day.month)[1]
                ordinal += length - day.day + 1 if forward else -day.day
                minute = 0 if forward else 24 * 60 - 1
                continue
            if self._day_matches(day):
                if forward:
                    index = bisect.bisect_left(times, minute)
                    pick = times[index] if index < len(times) else None
                else:
                    index = bisect.bisect_right(times, minute)
                    pick = times[index - 1] if index else None
                if pick is not None:
                    hour, minute = divmod(pick, 60)
                    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
            ordinal += step
            minute = 0 if forward else 24 * 60 - 1
        return None


def _bad(text: str, problem: str) -> errors.UsageError:
    return errors.UsageError(f"bad cron expression {text!r}: {problem}")


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"cron times must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC)


def _parse_field(raw: str, spec: _Spec, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in raw.split(","):
        if not item:
            raise _bad(text, f"{spec.name} field {raw!r} has an empty list item")
        values.update(_parse_item(item, spec, text))
    if spec.high == 7:
        values = {value % 7 for value in values}  # 7 is Sunday too
    return frozenset(values)


def _parse_item(item: str, spec: _Spec, text: str) -> range:
    """One list item: `*`, `a`, `a-b`, each optionally with `/n`."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()):
            raise _bad(text, f"{spec.name} step {step_text!r} is not a number")
        step = int(step_text) if len(step_text) <= 4 else 10_000
        if step < 1:
            raise _bad(text, f"{spec.name} step must be >= 1")
        if step > spec.top - spec.low + 1:
            raise _bad(text, f"{spec.name} step {step_text} is larger than the field's range")
    if base == "*":
        return range(spec.low, spec.top + 1, step)
    low_text, dash, high_text = base.partition("-")
    low = _parse_value(low_text, spec, text)
    high = low
    if dash:
        high = _parse_value(high_text, spec, text)
    elif slash:
        high = max(low, spec.top)  # `a/n` runs from a to the end of the field
    if low > high:
        raise _bad(text, f"{spec.name} range {low_text}-{high_text} is reversed")
    return range(low, high + 1, step)


def _parse_value(token: str, spec: _Spec, text: str) -> int:
    if not token:
        raise _bad(text, f"{spec.name} is missing a value")
    if token.lower() in spec.names:
        return spec.names[token.lower()]
    if not (token.isascii() and token.isdigit()):
        kind = "a number or name" if spec.names else "a number"
        raise _bad(text, f"{spec.name} value {token!r} is not {kind}")
    value = int(token) if len(token) <= 4 else 10_000
    if not spec.low <= value <= spec.high:
        raise _bad(text, f"{spec.name} value {token} is out of range {spec.low}-{spec.high}")
    return value
