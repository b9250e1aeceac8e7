"""Unit tests of queuectl.durations: parse_duration, parse_time and format_duration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from queuectl import errors
from queuectl.durations import format_duration, parse_duration, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("0", 0.0),
        (" 10 s ", 10.0),
        ("5M", 300.0),
        ("2H", 7200.0),
        ("100MS", 0.1),
    ],
)
def test_parse_duration_accepts_each_unit(text, seconds):
    assert parse_duration(text, what="--delay") == pytest.approx(seconds)


def test_parse_duration_returns_a_float():
    assert isinstance(parse_duration("30", what="x"), float)


@pytest.mark.parametrize(
    "text",
    ["", " ", "abc", "-5s", "5x", "5 mins", "1e3", ".5s", "5.s", "5s5m", "s", "1,5h", "5 5"],
)
def test_parse_duration_rejects_malformed_text_with_usage_error(text):
    with pytest.raises(errors.UsageError, match="is not a duration") as info:
        parse_duration(text, what="--delay")
    message = str(info.value)
    assert message.startswith("--delay: ")
    assert repr(text) in message


def test_parse_duration_error_is_a_usage_error_not_a_config_error():
    with pytest.raises(errors.UsageError) as info:
        parse_duration("nope", what="x")
    assert type(info.value) is errors.UsageError
    assert info.value.exit_code == 2


def test_parse_duration_rejects_an_infinite_value():
    with pytest.raises(errors.UsageError, match="too large"):
        parse_duration("9" * 400, what="timeout")


def test_parse_time_reads_rfc3339_with_z():
    assert parse_time("2026-01-31T09:00:00Z", what="run_at") == datetime(
        2026, 1, 31, 9, 0, tzinfo=UTC
    )


def test_parse_time_accepts_lowercase_z():
    assert parse_time("2026-01-31T09:00:00z", what="run_at") == datetime(
        2026, 1, 31, 9, 0, tzinfo=UTC
    )


def test_parse_time_converts_an_offset_to_utc():
    value = parse_time("2026-01-31T09:00:00+02:00", what="run_at")
    assert value == datetime(2026, 1, 31, 7, 0, tzinfo=UTC)
    assert value.tzinfo is UTC


def test_parse_time_without_zone_is_taken_as_utc():
    value = parse_time("2026-01-31T09:00:00", what="run_at")
    assert value == datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    assert value.tzinfo is UTC


def test_parse_time_keeps_fractional_seconds_and_ignores_surrounding_spaces():
    value = parse_time("  2026-01-31T09:00:00.250Z \n", what="run_at")
    assert value == datetime(2026, 1, 31, 9, 0, 0, 250_000, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-13-01T00:00:00Z", "2026-01-31T25:00", "5m"])
def test_parse_time_rejects_non_times_with_usage_error(text):
    with pytest.raises(errors.UsageError, match="is not a time") as info:
        parse_time(text, what="--run-at")
    assert str(info.value).startswith("--run-at: ")


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_parse_time_out_of_range_after_utc_conversion_is_a_usage_error(text):
    # the input parses, but converting it to UTC leaves datetime's range
    with pytest.raises(errors.UsageError):
        parse_time(text, what="--run-at")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.85, "850ms"),
        (1.0, "1.0s"),
        (2.5, "2.5s"),
        (12.0, "12s"),
        (59.0, "59s"),
        (60.0, "1m00s"),
        (245.0, "4m05s"),
        (3599.0, "59m59s"),
        (3600.0, "1h00m"),
        (11400.0, "3h10m"),
        (47 * 3600 + 59 * 60, "47h59m"),
        (48 * 3600, "2d0h"),
        (2 * 86400 + 4 * 3600, "2d4h"),
        (10 * 86400 + 5 * 3600 + 59, "10d5h"),
    ],
)
def test_format_duration_uses_the_short_human_form(seconds, text):
    assert format_duration(seconds) == text
