"""Cron expressions read in an IANA time zone: the next and the latest slot, in UTC."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from queuectl import errors

DEFAULT_TZ = "UTC"
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# A missed slot older than this never fires (a yearly schedule's last slot is within it).
_LOOKBACK = timedelta(days=366)
# Walks stop here whatever happens; a repeated hour holds 120 minute slots at most.
_MAX_STEPS = 10_000
# Offsets are probed this far apart for a change (since 1990 no zone has changed twice
# within 166 hours, so none is missed).
_PROBE = timedelta(hours=12)
_SECOND = timedelta(seconds=1)


def zone(name: str) -> tzinfo:
    """The IANA zone `name` (UTC is the stdlib's); UsageError when no such zone exists."""
    if name == DEFAULT_TZ:
        return UTC
    from zoneinfo import ZoneInfo

    # `localtime` is the host's own zone: two hosts could read one schedule differently
    if isinstance(name, str) and name != "localtime":
        try:
            return ZoneInfo(name)
        except (KeyError, ValueError, OSError):  # not found, not a key, a directory, too long
            pass
    raise errors.UsageError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin)")


@dataclass(frozen=True)
class Cron:
    """A 5-field expression (or a macro such as `@daily`) whose fields are wall-clock times in
    the zone `tz`; slots are whole minutes, returned in UTC. Across DST changes, as Vixie and
    Debian cron: when the minute and the hour field are both fixed, a slot fires once per
    wall-clock time, at the first of a repeated time and at the first instant after a skipped
    one; when either starts with `*`, slots follow the real clock, so `0 * * * *` fires every
    real hour, in both repeated hours, and not in a skipped one.

    cronsim parses and walks the calendar without a zone; mapping its wall-clock times to
    instants is done here (cronsim's own DST handling got slots wrong, DECISIONS.md)."""

    text: str = field(compare=False)
    tz: str
    fields: str  # the five fields, a macro expanded
    zone: tzinfo = field(compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, tz: str = DEFAULT_TZ) -> Cron:
        """A Cron for `text` in the zone `tz`; UsageError naming what is wrong otherwise."""
        expanded = text.strip()
        if expanded.startswith("@"):
            if expanded.lower() not in _MACROS:
                raise _bad(text, f"unknown macro (use one of {', '.join(_MACROS)})")
            expanded = _MACROS[expanded.lower()]
        parts = expanded.split()
        if len(parts) != 5:  # cronsim would take six, but a slot is a whole minute (job ids)
            raise _bad(text, f"expected 5 fields ({' '.join(_FIELDS)}), got {len(parts)}")
        cron = cls(text, DEFAULT_TZ, " ".join(parts), UTC)
        from cronsim import CronSimError

        try:
            # cronsim parses in its constructor; the first slot proves the expression fires
            next(cron._walls(datetime(2000, 1, 1), reverse=False))
        except CronSimError as exc:  # "Bad minute": name the field's text too
            problem = str(exc).lower()
            for name, raw in zip(_FIELDS, parts, strict=True):
                if problem == f"bad {name}":
                    problem = f"bad {name} field {raw!r}"
            raise _bad(text, problem) from None
        except StopIteration:
            raise _bad(text, "never fires") from None
        return cron if tz == DEFAULT_TZ else cls(text, tz, cron.fields, zone(tz))

    @property
    def follows_real_clock(self) -> bool:
        """Whether the minute or hour field starts with `*` (Vixie cron's "wildcard" job)."""
        minute, hour = self.fields.split()[:2]
        return minute.startswith("*") or hour.startswith("*")

    def next_after(self, at: datetime) -> datetime:
        """The first slot strictly after `at`."""
        at = _utc(at)
        try:
            found = self._next(at)
        except OverflowError:  # past the end of year 9999
            found = None
        if found is None:
            raise errors.UsageError(
                f"cron expression {self.text!r} never fires after {at.isoformat()}"
            )
        return found

    def latest_at_or_before(self, at: datetime) -> datetime | None:
        """The most recent slot at or before `at`, or None if none in the 366 days before it."""
        at = _utc(at)
        try:
            latest = self._latest(at)
        except OverflowError:  # before the start of year 1
            return None
        if latest is None or at - latest >= _LOOKBACK:
            return None
        return latest

    def _next(self, at: datetime) -> datetime | None:
        if self.zone is UTC:
            found = next(self._walls(_naive(at), reverse=False), None)
            return None if found is None else found.replace(tzinfo=UTC)
        if self.follows_real_clock:
            return self._next_real(at)
        # a fixed time's first instant rises with its wall clock, so the first one after `at`
        # is next; from inside a second repeated hour, the first few are before `at`
        walls = self._walls(self._wall(at), reverse=False)
        return next((i for i in map(self._first_instant, walls) if i > at), None)

    def _latest(self, at: datetime) -> datetime | None:
        if self.zone is UTC:
            found = next(self._walls(_naive(at), reverse=True, inclusive=True), None)
            return None if found is None else found.replace(tzinfo=UTC)
        if self.follows_real_clock:
            return self._latest_real(at)
        wall = self._wall(at)
        found = next(self._walls(wall, reverse=True, inclusive=True), None)
        latest = None if found is None else self._first_instant(found)
        # in a second repeated hour, the later wall-clock times fired in the first one
        for later in self._walls(wall, reverse=False):
            instant = self._first_instant(later)
            if instant > at:
                break
            latest = instant
        return latest

    # --- the real clock: one stretch of constant UTC offset at a time --------------------------
    def _next_real(self, at: datetime) -> datetime | None:
        start, inclusive = at, False
        for _ in range(_MAX_STEPS):
            wall = _naive(start) + (offset := _offset(self.zone, start))
            found = next(self._walls(wall, reverse=False, inclusive=inclusive), None)
            if found is None:
                return None
            candidate = (found - offset).replace(tzinfo=UTC)
            change = self._change_after(start, candidate)
            if change is None:
                return candidate
            start, inclusive = change, True  # the offset changed before that slot came
        return None

    def _latest_real(self, at: datetime) -> datetime | None:
        end = at
        for _ in range(_MAX_STEPS):
            wall = _naive(end) + (offset := _offset(self.zone, end))
            found = next(self._walls(wall, reverse=True, inclusive=True), None)
            if found is None:
                return None
            candidate = (found - offset).replace(tzinfo=UTC)
            begin = self._change_before(candidate, end)
            if begin is None:
                return candidate
            if at - begin >= _LOOKBACK:
                return None
            end = begin - timedelta(microseconds=1)  # the stretch before `end`'s own
        return None

    def _change_after(self, start: datetime, end: datetime) -> datetime | None:
        """The first instant in (start, end] whose UTC offset is not start's."""
        offset, low = _offset(self.zone, start), start
        while low < end:
            high = min(low + _PROBE, end)
            if _offset(self.zone, high) != offset:
                return self._change_between(low, high, offset)
            low = high
        return None

    def _change_before(self, start: datetime, end: datetime) -> datetime | None:
        """The first instant of the stretch of end's UTC offset, when that is after `start`."""
        offset, high = _offset(self.zone, end), end
        while high > start:
            low = max(high - _PROBE, start)
            if (before := _offset(self.zone, low)) != offset:
                return self._change_between(low, high, before)
            high = low
        return None

    def _change_between(self, low: datetime, high: datetime, before: timedelta) -> datetime:
        """Where the offset `before` (low's) gives way, in (low, high]: a whole second."""
        while high - low > _SECOND:
            middle = low + (high - low) / 2
            if _offset(self.zone, middle) == before:
                low = middle
            else:
                high = middle
        return low.replace(microsecond=0) + _SECOND

    # --- wall clocks ---------------------------------------------------------------------------
    def _wall(self, at: datetime) -> datetime:
        return at.astimezone(self.zone).replace(tzinfo=None, microsecond=0)

    def _first_instant(self, wall: datetime) -> datetime:
        """A wall-clock time's first instant; a skipped one's is where the skip ends."""
        for _ in range(_MAX_STEPS):
            local = wall.replace(tzinfo=self.zone)  # fold=0: the first of a repeated time
            instant = local.astimezone(UTC)
            if instant.astimezone(self.zone).replace(tzinfo=None) == wall:
                return instant
            wall += timedelta(minutes=1)
        raise errors.UsageError(f"time zone {self.tz!r} skips more than a week")

    def _walls(
        self, start: datetime, *, reverse: bool, inclusive: bool = False
    ) -> Iterator[datetime]:
        """cronsim's wall-clock slots after (or before) the naive `start`, in order."""
        from cronsim import CronSim

        try:
            if inclusive:  # cronsim steps one second before it looks
                start = start + _SECOND if reverse else start - _SECOND
            slots = CronSim(self.fields, start, reverse=reverse)
            for _ in range(_MAX_STEPS):
                yield next(slots)
        except (StopIteration, OverflowError):  # none for 50 years, or past year 1 or 9999
            return


def _offset(where: tzinfo, at: datetime) -> timedelta:
    return at.astimezone(where).utcoffset() or timedelta(0)


def _naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None, microsecond=0)


def _bad(text: str, problem: str) -> errors.UsageError:
    return errors.UsageError(f"bad cron expression {text!r}: {problem}")


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"cron times must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC)
