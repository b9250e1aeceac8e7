"""Unit tests of queuectl.cron: parsing, Vixie day semantics, matches, next_after, latest slot."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from queuectl import errors
from queuectl.cron import Cron


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _span(low: int, high: int, step: int = 1) -> frozenset[int]:
    return frozenset(range(low, high + 1, step))


# --- parse: syntax ----------------------------------------------------------------------------


def test_parse_all_stars_allows_every_value():
    cron = Cron.parse("* * * * *")
    assert cron.minutes == _span(0, 59)
    assert cron.hours == _span(0, 23)
    assert cron.days == _span(1, 31)
    assert cron.months == _span(1, 12)
    assert cron.weekdays == _span(0, 6)


def test_parse_keeps_the_original_text():
    assert Cron.parse("@daily").text == "@daily"
    assert Cron.parse(" 5 4 * * * ").text == " 5 4 * * * "


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("7", {7}),
        ("07", {7}),
        ("10-15", _span(10, 15)),
        ("*/15", {0, 15, 30, 45}),
        ("10-30/10", {10, 20, 30}),
        ("50/3", {50, 53, 56, 59}),
        ("1,5-7,*/20", {0, 1, 5, 6, 7, 20, 40}),
        ("3,3,3", {3}),
        ("0-59", _span(0, 59)),
        ("*/1", _span(0, 59)),
        ("*/60", {0}),
        ("5-5", {5}),
    ],
)
def test_parse_minute_field_forms(field, values):
    assert Cron.parse(f"{field} * * * *").minutes == frozenset(values)


def test_parse_step_of_other_fields_starts_at_the_field_minimum():
    cron = Cron.parse("* */6 */10 */5 *")
    assert cron.hours == {0, 6, 12, 18}
    assert cron.days == {1, 11, 21, 31}
    assert cron.months == {1, 6, 11}


def test_parse_accepts_any_whitespace_between_fields():
    assert Cron.parse("\t0   12 *\t* *  ") == Cron.parse("0 12 * * *")


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("JAN", {1}),
        ("dec", {12}),
        ("Jun-Aug", {6, 7, 8}),
        ("jan,APR,jul,oct", {1, 4, 7, 10}),
        ("FEB/3", {2, 5, 8, 11}),
        ("mar-12/4", {3, 7, 11}),
    ],
)
def test_parse_month_names_are_case_insensitive(field, values):
    assert Cron.parse(f"0 0 1 {field} *").months == frozenset(values)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("SUN", {0}),
        ("sat", {6}),
        ("Mon-Fri", {1, 2, 3, 4, 5}),
        ("sun,WED", {0, 3}),
        ("MON-5", {1, 2, 3, 4, 5}),
    ],
)
def test_parse_weekday_names_are_case_insensitive(field, values):
    assert Cron.parse(f"0 0 * * {field}").weekdays == frozenset(values)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("7", {0}),
        ("0,7", {0}),
        ("5-7", {5, 6, 0}),
        ("0-7", _span(0, 6)),
        ("*/2", {0, 2, 4, 6}),
        ("1/2", {1, 3, 5}),
        ("7/2", {0}),
    ],
)
def test_parse_day_of_week_7_is_sunday_like_0(field, values):
    assert Cron.parse(f"0 0 * * {field}").weekdays == frozenset(values)


def test_day_of_week_7_and_0_fire_on_the_same_sunday():
    sunday = _t("2025-06-01 00:00")
    assert Cron.parse("0 0 * * 7").matches(sunday)
    assert Cron.parse("0 0 * * 0").matches(sunday)
    assert Cron.parse("0 0 * * 7").next_after(sunday) == _t("2025-06-08 00:00")


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
        (" @Daily ", "0 0 * * *"),
    ],
)
def test_parse_macro_equals_its_expansion(macro, expanded):
    assert Cron.parse(macro) == Cron.parse(expanded)


def test_weekly_macro_fires_at_sunday_midnight():
    assert Cron.parse("@weekly").next_after(_t("2025-06-02 12:00")) == _t("2025-06-08 00:00")


# --- parse: errors ----------------------------------------------------------------------------


def test_parse_error_names_the_expression_and_the_field():
    with pytest.raises(errors.UsageError) as info:
        Cron.parse("*/0 * * * *")
    assert str(info.value) == "bad cron expression '*/0 * * * *': minute step must be >= 1"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected 5 fields"),
        ("   ", "expected 5 fields"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 * * * * *", "got 6"),
        ("0 0 * * * 2025", "got 6"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("* 24 * * *", "hour value 24 is out of range 0-23"),
        ("* * 0 * *", "day of month value 0 is out of range 1-31"),
        ("* * 32 * *", "day of month value 32 is out of range 1-31"),
        ("* * * 0 *", "month value 0 is out of range 1-12"),
        ("* * * 13 *", "month value 13 is out of range 1-12"),
        ("* * * * 8", "day of week value 8 is out of range 0-7"),
        ("1-99999999999 * * * *", "minute value 99999999999 is out of range"),
        ("30-10 * * * *", "minute range 30-10 is reversed"),
        ("* * * DEC-JAN *", "month range DEC-JAN is reversed"),
        ("* * * * FRI-MON", "day of week range FRI-MON is reversed"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("1, * * * *", "has an empty list item"),
        (",1 * * * *", "has an empty list item"),
        ("-5 * * * *", "minute is missing a value"),
        ("5- * * * *", "minute is missing a value"),
        ("/5 * * * *", "minute is missing a value"),
        ("*/ * * * *", "minute step '' is not a number"),
        ("*/x * * * *", "minute step 'x' is not a number"),
        ("*/2/3 * * * *", "minute step '2/3' is not a number"),
        ("*/-1 * * * *", "minute step '-1' is not a number"),
        ("*/61 * * * *", "minute step 61 is larger than the field's range"),
        ("* */25 * * *", "hour step 25 is larger"),
        ("* * * * */8", "day of week step 8 is larger"),
        ("1-2-3 * * * *", "minute value '2-3' is not a number"),
        ("a * * * *", "minute value 'a' is not a number"),
        ("** * * * *", "minute value '**' is not a number"),
        ("*-5 * * * *", "minute value '*' is not a number"),
        ("1.5 * * * *", "minute value '1.5' is not a number"),
        ("\u00b2 * * * *", "minute value '\u00b2' is not a number"),
        ("MON * * * *", "minute value 'MON' is not a number"),
        ("* * * MON *", "month value 'MON' is not a number or name"),
        ("* * * * JAN", "day of week value 'JAN' is not a number or name"),
        ("* * * * MONDAY", "day of week value 'MONDAY' is not a number or name"),
        ("@reboot", "unknown macro"),
        ("@every 5m", "unknown macro"),
        ("@daily 5", "unknown macro"),
    ],
)
def test_parse_rejects_bad_expressions_with_a_clear_message(text, problem):
    with pytest.raises(errors.UsageError) as info:
        Cron.parse(text)
    message = str(info.value)
    assert message.startswith(f"bad cron expression {text!r}: ")
    assert problem in message


@pytest.mark.parametrize(
    "text", ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *", "0 0 31 2 */2"]
)
def test_parse_rejects_expressions_that_never_fire(text):
    with pytest.raises(errors.UsageError, match="never fires"):
        Cron.parse(text)


@pytest.mark.parametrize(
    ("text", "after", "first"),
    [
        ("0 0 30 2,3 *", "2025-01-01 00:00", "2025-03-30 00:00"),
        ("0 0 30,1 2 *", "2025-01-01 00:00", "2025-02-01 00:00"),
        # both day fields restricted: day 30 never comes in February, but Mondays do
        ("0 0 30 2 MON", "2025-01-01 00:00", "2025-02-03 00:00"),
    ],
)
def test_expressions_with_some_impossible_days_still_fire(text, after, first):
    assert Cron.parse(text).next_after(_t(after)) == _t(first)


def test_usage_error_is_exit_code_2():
    with pytest.raises(errors.UsageError) as info:
        Cron.parse("nonsense")
    assert info.value.exit_code == 2


# --- Vixie day-of-month / day-of-week semantics -----------------------------------------------


def test_restricted_day_of_month_and_weekday_fire_when_either_matches():
    cron = Cron.parse("0 0 13 * FRI")
    assert cron.matches(_t("2025-06-13 00:00"))  # a Friday the 13th
    assert cron.matches(_t("2025-07-13 00:00"))  # a Sunday, but the 13th
    assert cron.matches(_t("2025-07-04 00:00"))  # a Friday, not the 13th
    assert not cron.matches(_t("2025-07-05 00:00"))  # neither
    fired, at = [], _t("2025-07-01 00:00")
    for _ in range(5):
        at = cron.next_after(at)
        fired.append(at.day)
    assert fired == [4, 11, 13, 18, 25]


def test_day_of_month_alone_restricts_to_that_day():
    cron = Cron.parse("0 0 13 * *")
    assert cron.matches(_t("2025-07-13 00:00"))
    assert not cron.matches(_t("2025-07-04 00:00"))
    assert cron.next_after(_t("2025-07-01 00:00")) == _t("2025-07-13 00:00")


def test_weekday_alone_restricts_to_that_weekday():
    cron = Cron.parse("0 0 * * FRI")
    assert cron.matches(_t("2025-07-04 00:00"))
    assert not cron.matches(_t("2025-07-13 00:00"))
    assert cron.next_after(_t("2025-07-05 00:00")) == _t("2025-07-11 00:00")


def test_a_day_field_starting_with_star_makes_both_day_fields_required():
    # Vixie cron tests the first character: `*/2` counts as `*`, so the fields are ANDed
    cron = Cron.parse("0 0 */2 * MON")
    assert not cron.either_day
    assert cron.matches(_t("2025-07-07 00:00"))  # Monday the 7th: odd day and Monday
    assert not cron.matches(_t("2025-07-14 00:00"))  # Monday, even day
    assert not cron.matches(_t("2025-07-09 00:00"))  # odd day, Wednesday
    assert cron.next_after(_t("2025-07-08 00:00")) == _t("2025-07-21 00:00")


def test_either_day_is_set_only_when_both_day_fields_are_restricted():
    assert Cron.parse("0 0 1 * 1").either_day
    assert Cron.parse("0 0 1-31 * 0-6").either_day
    assert not Cron.parse("0 0 1 * *").either_day
    assert not Cron.parse("0 0 * * 1").either_day
    assert not Cron.parse("@weekly").either_day


# --- matches --------------------------------------------------------------------------------


def test_matches_ignores_seconds_within_the_slot_minute():
    cron = Cron.parse("30 9 * * *")
    assert cron.matches(_t("2025-07-01 09:30:00"))
    assert cron.matches(_t("2025-07-01 09:30:59.999999"))
    assert not cron.matches(_t("2025-07-01 09:31:00"))
    assert not cron.matches(_t("2025-07-01 09:29:59"))


def test_matches_converts_other_zones_to_utc():
    plus_two = timezone(timedelta(hours=2))
    assert Cron.parse("0 0 * * *").matches(datetime(2025, 7, 1, 2, 0, tzinfo=plus_two))


def test_naive_datetimes_are_rejected():
    cron = Cron.parse("* * * * *")
    naive = datetime(2025, 7, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.matches(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_after(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.latest_at_or_before(naive)


# --- next_after -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("* * * * *", "2025-07-01 12:00", "2025-07-01 12:01"),
        ("0 * * * *", "2025-07-01 12:00", "2025-07-01 13:00"),
        ("0 0 * * *", "2025-07-01 23:59", "2025-07-02 00:00"),
        ("0 0 1 * *", "2025-01-31 12:00", "2025-02-01 00:00"),
        ("0 0 31 * *", "2025-01-31 00:00", "2025-03-31 00:00"),
        ("@yearly", "2025-12-31 23:59", "2026-01-01 00:00"),
        ("59 23 31 12 *", "2025-12-31 23:59", "2026-12-31 23:59"),
        ("0 0 29 2 *", "2025-03-01 00:00", "2028-02-29 00:00"),
        ("0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00"),  # 2100 is not a leap year
        ("0 0 * 2 *", "2024-02-28 12:00", "2024-02-29 00:00"),
        ("0 0 * 2 *", "2025-02-28 12:00", "2026-02-01 00:00"),
        ("15 10 * * MON-FRI", "2025-07-04 11:00", "2025-07-07 10:15"),
        ("0 9-17/4 * * *", "2025-07-01 13:00", "2025-07-01 17:00"),
        ("0 9-17/4 * * *", "2025-07-01 17:00", "2025-07-02 09:00"),
        ("0 0 1 JAN,JUL *", "2025-01-01 00:00", "2025-07-01 00:00"),
    ],
)
def test_next_after_finds_the_first_later_slot(text, after, expected):
    assert Cron.parse(text).next_after(_t(after)) == _t(expected)


def test_next_after_is_strictly_after_a_slot():
    cron = Cron.parse("*/5 * * * *")
    assert cron.next_after(_t("2025-07-01 12:05")) == _t("2025-07-01 12:10")


def test_next_after_a_time_inside_a_slot_minute_gives_the_next_slot():
    cron = Cron.parse("*/5 * * * *")
    assert cron.next_after(_t("2025-07-01 12:05:30")) == _t("2025-07-01 12:10")
    assert cron.next_after(_t("2025-07-01 12:04:59.9")) == _t("2025-07-01 12:05")


def test_every_five_minutes_fires_five_minutes_apart_across_midnight():
    cron = Cron.parse("*/5 * * * *")
    at, fired = _t("2025-12-31 23:41"), []
    for _ in range(6):
        at = cron.next_after(at)
        fired.append(at)
    assert fired[0] == _t("2025-12-31 23:45")
    assert fired[-1] == _t("2026-01-01 00:10")
    assert {b - a for a, b in itertools.pairwise(fired)} == {timedelta(minutes=5)}


def test_next_after_returns_whole_minutes_in_utc():
    plus_two = timezone(timedelta(hours=2))
    found = Cron.parse("0 0 * * *").next_after(
        datetime(2025, 7, 1, 1, 30, 45, 123, tzinfo=plus_two)
    )
    assert found == _t("2025-07-01 00:00")
    assert found.tzinfo is UTC
    assert (found.second, found.microsecond) == (0, 0)


def test_next_after_a_sparse_expression_is_fast():
    # Feb 29 falling on a Sunday: 2032, then 2060 (a scan of minutes would take far too long)
    cron = Cron.parse("0 0 29 2 */7")
    assert cron.next_after(_t("2025-01-01 00:00")) == _t("2032-02-29 00:00")
    assert cron.next_after(_t("2032-02-29 00:00")) == _t("2060-02-29 00:00")


def test_next_after_raises_when_no_slot_remains_before_year_9999_ends():
    cron = Cron.parse("0 0 1 1 *")
    with pytest.raises(errors.UsageError, match="never fires after"):
        cron.next_after(_t("9999-06-01 00:00"))
    with pytest.raises(errors.UsageError, match="never fires after"):
        Cron.parse("* * * * *").next_after(datetime.max.replace(tzinfo=UTC))


def test_next_after_terminates_for_an_impossible_hand_built_cron():
    parsed = Cron.parse("0 0 1 2 *")
    impossible = Cron(
        "0 0 30 2 *",
        parsed.minutes,
        parsed.hours,
        frozenset({30}),
        parsed.months,
        parsed.weekdays,
        either_day=False,
    )
    with pytest.raises(errors.UsageError, match="never fires"):
        impossible.next_after(_t("2025-01-01 00:00"))
    assert impossible.latest_at_or_before(_t("2025-01-01 00:00")) is None


# --- latest_at_or_before --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "at", "expected"),
    [
        ("*/5 * * * *", "2025-07-01 12:05", "2025-07-01 12:05"),
        ("*/5 * * * *", "2025-07-01 12:05:59.999", "2025-07-01 12:05"),
        ("*/5 * * * *", "2025-07-01 12:04:59", "2025-07-01 12:00"),
        ("0 0 * * *", "2025-07-01 00:00", "2025-07-01 00:00"),
        ("0 0 * * *", "2025-07-01 23:59", "2025-07-01 00:00"),
        ("30 12 * * *", "2025-07-01 12:29", "2025-06-30 12:30"),
        ("@yearly", "2025-01-01 00:00", "2025-01-01 00:00"),
        ("@yearly", "2024-12-31 23:59", "2024-01-01 00:00"),
        ("@monthly", "2025-03-15 08:00", "2025-03-01 00:00"),
        ("59 23 31 * *", "2025-05-01 00:00", "2025-03-31 23:59"),
        ("0 0 29 2 *", "2024-12-31 00:00", "2024-02-29 00:00"),
        ("0 0 13 * FRI", "2025-07-12 00:00", "2025-07-11 00:00"),
    ],
)
def test_latest_at_or_before_finds_the_most_recent_slot(text, at, expected):
    assert Cron.parse(text).latest_at_or_before(_t(at)) == _t(expected)


def test_latest_at_or_before_gives_none_beyond_366_days():
    cron = Cron.parse("0 0 29 2 *")
    assert cron.latest_at_or_before(_t("2025-02-28 23:59:59")) == _t("2024-02-29 00:00")
    assert cron.latest_at_or_before(_t("2025-03-01 00:00")) is None  # exactly 366 days later
    assert cron.latest_at_or_before(_t("2026-02-28 00:00")) is None


def test_latest_at_or_before_near_the_start_of_time_gives_none():
    assert Cron.parse("0 12 * * *").latest_at_or_before(_t("0001-01-01 11:00")) is None


def test_latest_at_or_before_returns_utc_for_other_zones():
    minus_five = timezone(timedelta(hours=-5))
    found = Cron.parse("0 * * * *").latest_at_or_before(
        datetime(2025, 7, 1, 20, 30, tzinfo=minus_five)
    )
    assert found == _t("2025-07-02 01:00")
    assert found is not None
    assert found.tzinfo is UTC


# --- agreement with a minute-by-minute scan -------------------------------------------------


def _scan_next(cron: Cron, at: datetime) -> datetime:
    slot = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not cron.matches(slot):
        slot += timedelta(minutes=1)
    return slot


@pytest.mark.parametrize(
    "text",
    [
        "*/7 */5 * * *",
        "0,30 8-18 * * MON-FRI",
        "15 3 1,15 * 0",
        "*/13 1 */3 * 2-4",
        "5 4 28-31 * *",
        "0 12 * */2 7",
        "45 23 31 * 5",
    ],
)
def test_next_after_and_latest_agree_with_a_minute_scan(text):
    cron = Cron.parse(text)
    rng = random.Random(text)
    for _ in range(12):
        at = _t("2024-01-01 00:00") + timedelta(seconds=rng.randrange(2 * 366 * 86400))
        found = cron.next_after(at)
        assert found == _scan_next(cron, at)
        assert cron.latest_at_or_before(found + timedelta(seconds=59)) == found
        previous = cron.latest_at_or_before(found - timedelta(minutes=1))
        assert previous is not None
        assert cron.next_after(previous) == found
