"""Unit tests of queuectl.cron: parsing, Vixie day rules, next and latest slot, DST in a zone."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from queuectl import errors
from queuectl.cron import Cron, zone

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _slots(cron: Cron, start: datetime, end: datetime) -> list[datetime]:
    """Every slot in (start, end], walking next_after."""
    found, at = [], start
    while (at := cron.next_after(at)) <= end:
        found.append(at)
    return found


def _wall(slots: list[datetime], tz: ZoneInfo) -> list[str]:
    return [s.astimezone(tz).isoformat(timespec="minutes") for s in slots]


# --- parse: syntax and what it accepts --------------------------------------------------------


def test_parse_keeps_the_original_text_and_defaults_to_utc():
    assert Cron.parse("@daily").text == "@daily"
    assert Cron.parse(" 5 4 * * * ").text == " 5 4 * * * "
    assert Cron.parse("5 4 * * *").tz == "UTC"


def test_parse_accepts_any_whitespace_between_fields():
    assert Cron.parse("\t0   12 *\t* *  ") == Cron.parse("0 12 * * *")


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("7 * * * *", "2025-07-01 12:00", "2025-07-01 12:07"),
        ("07 * * * *", "2025-07-01 12:00", "2025-07-01 12:07"),
        ("10-15 * * * *", "2025-07-01 12:12", "2025-07-01 12:13"),
        ("*/15 * * * *", "2025-07-01 12:00", "2025-07-01 12:15"),
        ("10-30/10 * * * *", "2025-07-01 12:20", "2025-07-01 12:30"),
        ("50/3 * * * *", "2025-07-01 12:56", "2025-07-01 12:59"),
        ("1,5-7,*/20 * * * *", "2025-07-01 12:07", "2025-07-01 12:20"),
        ("* */6 * * *", "2025-07-01 12:59", "2025-07-01 18:00"),
        ("0 0 */10 * *", "2025-07-21 00:00", "2025-07-31 00:00"),
        ("0 0 1 JAN,jul *", "2025-01-01 00:00", "2025-07-01 00:00"),
        ("0 0 1 Jun-Aug *", "2025-08-01 00:00", "2026-06-01 00:00"),
        ("0 0 * * Mon-Fri", "2025-07-04 00:00", "2025-07-07 00:00"),  # Friday -> Monday
        ("0 0 * * 7", "2025-06-01 00:00", "2025-06-08 00:00"),  # 7 is Sunday, like 0
        # the extras cronsim reads (Quartz-style): last day, last weekday, last/n-th weekday
        ("0 0 L * *", "2025-02-01 00:00", "2025-02-28 00:00"),
        ("0 0 LW * *", "2025-05-01 00:00", "2025-05-30 00:00"),  # the 31st is a Saturday
        ("0 0 * * 5L", "2025-07-01 00:00", "2025-07-25 00:00"),
        ("0 0 * * MON#1", "2025-07-08 00:00", "2025-08-04 00:00"),
    ],
)
def test_parse_field_forms(text, after, expected):
    assert Cron.parse(text).next_after(_t(after)) == _t(expected)


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


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected 5 fields"),
        ("   ", "expected 5 fields"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 0 * * * 2025", "got 6"),  # seconds or a year: a slot is a whole minute
        ("*/0 * * * *", "bad minute field '*/0'"),
        ("60 * * * *", "bad minute field '60'"),
        ("* 24 * * *", "bad hour field '24'"),
        ("* * 0 * *", "bad day-of-month field '0'"),
        ("* * 32 * *", "bad day-of-month field '32'"),
        ("* * * 13 *", "bad month field '13'"),
        ("* * * * 8", "bad day-of-week field '8'"),
        ("1-99999999999 * * * *", "bad minute"),
        ("30-10 * * * *", "bad minute field '30-10'"),
        ("* * * DEC-JAN *", "bad month"),
        ("* * * * FRI-MON", "bad day-of-week"),
        ("1,,2 * * * *", "bad minute"),
        ("-5 * * * *", "bad minute"),
        ("*/x * * * *", "bad minute"),
        ("*/2/3 * * * *", "bad minute"),
        ("1.5 * * * *", "bad minute"),
        ("\u00b2 * * * *", "bad minute"),
        ("MON * * * *", "bad minute"),
        ("* * * * MONDAY", "bad day-of-week"),
        ("0 0 * * 1#6", "bad day-of-week"),
        ("0 0 ? * *", "bad day-of-month"),
        ("@reboot", "unknown macro"),
        ("@every 5m", "unknown macro"),
        ("@daily 5", "unknown macro"),
        # never fires: no month in the month field has that day
        ("0 0 30 2 *", "bad day-of-month field '30'"),
        ("0 0 31 4,6,9,11 *", "bad day-of-month"),
    ],
)
def test_parse_rejects_bad_expressions_with_a_clear_message(text, problem):
    with pytest.raises(errors.UsageError) as info:
        Cron.parse(text)
    message = str(info.value)
    assert message.startswith(f"bad cron expression {text!r}: ")
    assert problem in message
    assert info.value.exit_code == 2


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


# --- zones --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus",
        "europe/berlin",
        "",
        "Europe",
        "../etc/passwd",
        "/etc/localtime",
        "localtime",
        "Europe/Berlin\n",
        "x" * 300,
        "\x00",
    ],
)
def test_unknown_zones_are_a_usage_error_naming_them(name):
    with pytest.raises(errors.UsageError) as info:
        Cron.parse("0 3 * * *", name)
    assert str(info.value) == f"unknown time zone {name!r} (an IANA name like Europe/Berlin)"
    assert info.value.exit_code == 2


def test_a_bad_expression_is_named_before_a_bad_zone():
    with pytest.raises(errors.UsageError, match="bad cron expression"):
        Cron.parse("61 * * * *", "Mars/Olympus")


@pytest.mark.parametrize("name", ["UTC", "Etc/UTC", "Europe/Berlin", "Asia/Kolkata", "EST5EDT"])
def test_known_zones_resolve(name):
    assert zone(name).utcoffset(datetime(2025, 1, 1)) is not None


@pytest.mark.parametrize(
    ("tz", "after", "expected"),
    [
        ("Europe/Berlin", "2025-01-10 00:00", "2025-01-10 02:00"),  # CET, +01:00
        ("Europe/Berlin", "2025-07-10 00:00", "2025-07-10 01:00"),  # CEST, +02:00
        ("America/New_York", "2025-01-10 00:00", "2025-01-10 08:00"),
        ("Asia/Kolkata", "2025-01-10 00:00", "2025-01-10 21:30"),
        ("Pacific/Auckland", "2025-01-10 00:00", "2025-01-10 14:00"),  # the day before, in UTC
    ],
)
def test_fields_are_wall_clock_times_in_the_zone(tz, after, expected):
    cron = Cron.parse("0 3 * * *", tz)
    assert cron.next_after(_t(after)) == _t(expected)
    assert cron.latest_at_or_before(_t(expected) + timedelta(hours=1)) == _t(expected)


def test_a_zone_decides_the_day_too():
    # Monday 00:30 in Auckland is still Sunday in UTC
    found = Cron.parse("30 0 * * MON", "Pacific/Auckland").next_after(_t("2025-07-01 00:00"))
    assert found == _t("2025-07-06 12:30")
    assert found.astimezone(ZoneInfo("Pacific/Auckland")).isoformat() == "2025-07-07T00:30:00+12:00"


# --- DST: a fixed time fires once, an interval follows the real clock -------------------------


@pytest.mark.parametrize(
    ("tz", "text", "start", "expected"),
    [
        # fall back: 02:00-02:59 happens twice in Berlin; the slot fires at its first occurrence
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2025-10-25 00:00",
            ["2025-10-25T02:30+02:00", "2025-10-26T02:30+02:00", "2025-10-27T02:30+01:00"],
        ),
        (
            "America/New_York",
            "30 1 * * *",
            "2025-11-01 00:00",
            ["2025-11-01T01:30-04:00", "2025-11-02T01:30-04:00", "2025-11-03T01:30-05:00"],
        ),
        # spring forward: 02:30 never happens; the slot fires once, right after the gap
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2025-03-29 00:00",
            ["2025-03-29T02:30+01:00", "2025-03-30T03:00+02:00", "2025-03-31T02:30+02:00"],
        ),
        (
            "America/New_York",
            "30 2 * * *",
            "2025-03-08 00:00",
            ["2025-03-08T02:30-05:00", "2025-03-09T03:00-04:00", "2025-03-10T02:30-04:00"],
        ),
        # two wall-clock slots on one instant (02:00 moved to 03:00) are one slot, fired once
        (
            "Europe/Berlin",
            "0 2,3 * * *",
            "2025-03-30 00:00",
            [
                "2025-03-30T03:00+02:00",
                "2025-03-31T02:00+02:00",
                "2025-03-31T03:00+02:00",
                "2025-04-01T02:00+02:00",
                "2025-04-01T03:00+02:00",
            ],
        ),
    ],
)
def test_fixed_times_fire_once_across_dst(tz, text, start, expected):
    zone_ = ZoneInfo(tz)
    begin = datetime.fromisoformat(start).replace(tzinfo=zone_)
    found = _slots(Cron.parse(text, tz), begin, begin + timedelta(days=3) - timedelta(minutes=1))
    assert _wall(found, zone_) == expected


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        ("Europe/Berlin", "2025-03-30"),
        ("Europe/Berlin", "2025-10-26"),
        ("America/New_York", "2025-03-09"),
        ("America/New_York", "2025-11-02"),
    ],
)
def test_hourly_fires_every_real_hour_across_dst(tz, day):
    # real hours: timedelta arithmetic on a ZoneInfo datetime would count wall-clock ones
    midnight = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    begin = midnight - timedelta(hours=2)
    found = _slots(Cron.parse("0 * * * *", tz), begin, begin + timedelta(hours=8))
    assert len(found) == 8
    assert {b - a for a, b in itertools.pairwise(found)} == {timedelta(hours=1)}


def test_hourly_fires_in_both_repeated_hours_and_not_in_the_skipped_one():
    fall = _slots(
        Cron.parse("0 * * * *", "Europe/Berlin"), _t("2025-10-25 22:30"), _t("2025-10-26 02:30")
    )
    assert _wall(fall, BERLIN) == [
        "2025-10-26T01:00+02:00",
        "2025-10-26T02:00+02:00",
        "2025-10-26T02:00+01:00",
        "2025-10-26T03:00+01:00",
    ]
    spring = _slots(
        Cron.parse("0 * * * *", "Europe/Berlin"), _t("2025-03-29 23:30"), _t("2025-03-30 02:30")
    )
    assert _wall(spring, BERLIN) == [
        "2025-03-30T01:00+01:00",
        "2025-03-30T03:00+02:00",
        "2025-03-30T04:00+02:00",
    ]


def test_a_quarter_hourly_window_follows_the_real_clock_across_dst():
    cron = Cron.parse("*/15 1-3 * * *", "Europe/Berlin")
    fall = _slots(cron, _t("2025-10-25 12:00"), _t("2025-10-26 12:00"))
    assert len(fall) == 16  # 01:00-03:45 lasts four real hours that night
    assert {b - a for a, b in itertools.pairwise(fall)} == {timedelta(minutes=15)}
    spring = _slots(cron, _t("2025-03-29 12:00"), _t("2025-03-30 12:00"))
    assert _wall(spring, BERLIN)[3:5] == ["2025-03-30T01:45+01:00", "2025-03-30T03:00+02:00"]
    assert len(spring) == 8  # 02:00-02:59 does not exist


@pytest.mark.parametrize(
    "text",
    [
        "30 2 * * *",
        "0 * * * *",
        "*/15 1-3 * * *",
        "45 0-3 * * *",
        "* 2 * * *",
        "0 */2 * * *",
        "30 1 * * *",
        "0 0 * * *",
    ],
)
@pytest.mark.parametrize(
    ("tz", "day"),
    [
        ("Europe/Berlin", "2025-03-30"),
        ("Europe/Berlin", "2025-10-26"),
        ("America/New_York", "2025-03-09"),
        ("America/New_York", "2025-11-02"),
    ],
)
def test_latest_slot_agrees_with_the_forward_walk_at_every_minute_of_a_dst_night(text, tz, day):
    # what the orchestrator fires (the latest slot at or before now) must be the slot the
    # forward walk names, in both repeated hours too: else a slot fires twice or never
    cron = Cron.parse(text, tz)
    begin = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    slots = _slots(cron, begin - timedelta(days=2), begin + timedelta(days=2))
    for minute in range(6 * 60):
        at = begin + timedelta(minutes=minute, seconds=minute % 60)
        expected = max(s for s in slots if s <= at)
        assert cron.latest_at_or_before(at) == expected, at
        assert cron.next_after(at) == min(s for s in slots if s > at), at


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        # Lord Howe falls back 30 minutes, Chatham (UTC+12:45) an hour at 03:45
        ("Australia/Lord_Howe", ["00:00+11:00", "02:00+10:30", "04:00+10:30", "06:00+10:30"]),
        ("Pacific/Chatham", ["00:00+13:45", "02:00+13:45", "04:00+12:45", "06:00+12:45"]),
    ],
)
def test_zones_with_odd_offsets_and_shifts(tz, expected):
    # cronsim's own DST handling missed 02:00 in Lord Howe, and looped forever in Chatham
    cron = Cron.parse("0 */2 * * *", tz)
    midnight = datetime(2025, 4, 6, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    found = _slots(cron, midnight - timedelta(minutes=1), midnight + timedelta(hours=7))
    assert [w.split("T")[1] for w in _wall(found, ZoneInfo(tz))] == expected
    for minute in range(0, 7 * 60, 3):
        at = midnight + timedelta(minutes=minute)
        assert cron.latest_at_or_before(at) == max(s for s in found if s <= at), at


# --- Vixie day-of-month / day-of-week semantics -----------------------------------------------


def test_restricted_day_of_month_and_weekday_fire_when_either_matches():
    cron = Cron.parse("0 0 13 * FRI")
    fired, at = [], _t("2025-07-01 00:00")
    for _ in range(5):
        at = cron.next_after(at)
        fired.append(at.day)
    assert fired == [4, 11, 13, 18, 25]  # Fridays, and Sunday the 13th


def test_a_day_field_starting_with_star_makes_both_day_fields_required():
    # Vixie cron tests the first character: `*/2` counts as `*`, so the fields are ANDed
    cron = Cron.parse("0 0 */2 * MON")
    assert cron.next_after(_t("2025-07-06 00:00")) == _t("2025-07-07 00:00")  # odd and Monday
    assert cron.next_after(_t("2025-07-08 00:00")) == _t("2025-07-21 00:00")


def test_day_of_month_or_weekday_alone_restricts_to_it():
    assert Cron.parse("0 0 13 * *").next_after(_t("2025-07-01 00:00")) == _t("2025-07-13 00:00")
    assert Cron.parse("0 0 * * FRI").next_after(_t("2025-07-05 00:00")) == _t("2025-07-11 00:00")


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
        ("15 10 * * MON-FRI", "2025-07-04 11:00", "2025-07-07 10:15"),
        ("0 9-17/4 * * *", "2025-07-01 13:00", "2025-07-01 17:00"),
        ("0 9-17/4 * * *", "2025-07-01 17:00", "2025-07-02 09:00"),
    ],
)
def test_next_after_finds_the_first_later_slot(text, after, expected):
    assert Cron.parse(text).next_after(_t(after)) == _t(expected)


def test_next_after_is_strictly_after_a_slot_and_ignores_seconds():
    cron = Cron.parse("*/5 * * * *")
    assert cron.next_after(_t("2025-07-01 12:05")) == _t("2025-07-01 12:10")
    assert cron.next_after(_t("2025-07-01 12:05:30")) == _t("2025-07-01 12:10")
    assert cron.next_after(_t("2025-07-01 12:04:59.9")) == _t("2025-07-01 12:05")


def test_next_after_returns_whole_minutes_in_utc():
    plus_two = timezone(timedelta(hours=2))
    found = Cron.parse("0 0 * * *").next_after(
        datetime(2025, 7, 1, 1, 30, 45, 123, tzinfo=plus_two)
    )
    assert found == _t("2025-07-01 00:00")
    assert found.tzinfo is UTC
    assert (found.second, found.microsecond) == (0, 0)


def test_next_after_a_sparse_expression():
    # Feb 29 falling on a Sunday: 2032, then 2060
    cron = Cron.parse("0 0 29 2 */7")
    assert cron.next_after(_t("2025-01-01 00:00")) == _t("2032-02-29 00:00")
    assert cron.next_after(_t("2032-02-29 00:00")) == _t("2060-02-29 00:00")


def test_next_after_raises_when_no_slot_remains_before_year_9999_ends():
    with pytest.raises(errors.UsageError, match="never fires after"):
        Cron.parse("0 0 1 1 *").next_after(_t("9999-06-01 00:00"))
    with pytest.raises(errors.UsageError, match="never fires after"):
        Cron.parse("* * * * *").next_after(datetime.max.replace(tzinfo=UTC))


def test_every_five_minutes_fires_five_minutes_apart_across_midnight():
    found = _slots(Cron.parse("*/5 * * * *"), _t("2025-12-31 23:41"), _t("2026-01-01 00:10"))
    assert (found[0], found[-1]) == (_t("2025-12-31 23:45"), _t("2026-01-01 00:10"))
    assert {b - a for a, b in itertools.pairwise(found)} == {timedelta(minutes=5)}


def test_naive_datetimes_are_rejected():
    cron = Cron.parse("* * * * *")
    naive = datetime(2025, 7, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_after(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.latest_at_or_before(naive)


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


@pytest.mark.parametrize(
    "text", ["*/7 */5 * * *", "0,30 8-18 * * MON-FRI", "15 3 1,15 * 0", "5 4 28-31 * *"]
)
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Australia/Sydney"])
def test_next_after_and_latest_agree_at_random_times(text, tz):
    cron = Cron.parse(text, tz)
    rng = random.Random(text + tz)
    for _ in range(12):
        at = _t("2024-01-01 00:00") + timedelta(seconds=rng.randrange(2 * 366 * 86400))
        found = cron.next_after(at)
        assert cron.latest_at_or_before(found + timedelta(seconds=59)) == found
        previous = cron.latest_at_or_before(found - timedelta(minutes=1))
        assert previous is not None
        assert previous <= at
        assert cron.next_after(previous) == found
