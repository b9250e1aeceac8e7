"""Unit tests of queuectl.specs: enqueue input (JSON, NDJSON, flags) into JobSpecs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from queuectl import errors, models, specs
from queuectl.specs import Overrides, apply_overrides, parse_json_arg, parse_ndjson

INT32 = 2**31 - 1


def _spec(**fields: Any) -> models.JobSpec:
    return specs.spec_from_object({"command": "echo hi", **fields})


def _rejects(obj: object, match: str) -> None:
    with pytest.raises(errors.UsageError, match=match):
        specs.spec_from_object(obj)


def _within(value: datetime | None, low: datetime, high: datetime) -> bool:
    return value is not None and low <= value <= high


# --- whole objects --------------------------------------------------------------------------


def test_a_bare_command_gets_every_default():
    assert parse_json_arg('{"command": "echo hi"}') == models.JobSpec(command="echo hi")
    spec = parse_json_arg('{"command": "echo hi"}')
    assert (spec.id, spec.queue, spec.priority) == (None, "default", 0)
    assert (spec.run_at, spec.timeout_s, spec.max_retries) == (None, None, None)


def test_every_field_is_read():
    spec = parse_json_arg(
        json.dumps(
            {
                "id": "nightly-1",
                "command": "backup.sh",
                "queue": "ops",
                "priority": 5,
                "run_at": "2030-01-31T09:00:00Z",
                "timeout": "10m",
                "max_retries": 7,
            }
        )
    )
    assert spec == models.JobSpec(
        command="backup.sh",
        id="nightly-1",
        queue="ops",
        priority=5,
        run_at=datetime(2030, 1, 31, 9, 0, tzinfo=UTC),
        timeout_s=600.0,
        max_retries=7,
    )


@pytest.mark.parametrize("text", ['{"command": ', "{command: 'x'}", "", "{'command': 1}", "[1,"])
def test_malformed_json_is_a_usage_error(text):
    with pytest.raises(errors.UsageError, match=r"^malformed JSON: "):
        parse_json_arg(text)


@pytest.mark.parametrize("text", ["[]", '["echo hi"]', '"echo hi"', "42", "null", "true"])
def test_a_job_that_is_not_an_object_is_rejected(text):
    with pytest.raises(errors.UsageError, match="must be a JSON object"):
        parse_json_arg(text)


@pytest.mark.parametrize("obj", [{}, {"queue": "q"}, {"id": "a", "priority": 1}])
def test_a_missing_command_is_rejected(obj):
    _rejects(obj, 'missing required field "command"')


@pytest.mark.parametrize("command", ["", "   ", "\n\t", 5, None, ["echo"], {"sh": "x"}, True])
def test_command_must_be_a_non_empty_string(command):
    _rejects({"command": command}, '"command" must be a non-empty string')


@pytest.mark.parametrize("field", ["colour", "Command", "retries", "timeout_s", "lease_token"])
def test_an_unknown_field_is_rejected_naming_it(field):
    _rejects({"command": "x", field: 1}, f"unknown field '{field}'")


@pytest.mark.parametrize("state", ["processing", "completed", "failed", "dead", "PENDING", None])
def test_a_state_other_than_pending_is_rejected(state):
    _rejects({"command": "x", "state": state}, "'state' can only be 'pending'")


@pytest.mark.parametrize("attempts", [1, 3, -1, "0", None])
def test_attempts_other_than_zero_are_rejected(attempts):
    _rejects({"command": "x", "attempts": attempts}, "'attempts' can only be 0")


def test_a_fresh_pending_job_with_timestamps_is_accepted():
    spec = _spec(
        state="pending",
        attempts=0,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )
    assert spec == models.JobSpec(command="echo hi")


def test_show_json_of_a_fresh_job_loads_back():
    # specs.py: fresh-job fields are "accepted so job files written for other tools (or
    # `show --json` output) load"
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    job = models.Job(
        id="copy-me",
        command="echo hi",
        state=models.JobState.PENDING,
        attempts=0,
        max_retries=4,
        created_at=t0,
        updated_at=t0,
        queue="mail",
        priority=3,
        run_at=t0,
        timeout_s=30.0,
        last_error=None,
        exit_code=None,
        started_at=None,
        finished_at=None,
        worker_id=None,
    )
    spec = specs.spec_from_object(json.loads(json.dumps(job.to_json())))
    assert spec == models.JobSpec(
        command="echo hi",
        id="copy-me",
        queue="mail",
        priority=3,
        run_at=t0,
        timeout_s=30.0,
        max_retries=4,
    )


# --- command --------------------------------------------------------------------------------


def test_a_command_of_exactly_64_kib_is_accepted():
    command = "x" * 65536
    assert _spec(command=command).command == command


def test_a_command_one_byte_over_64_kib_is_rejected():
    with pytest.raises(errors.UsageError, match="65537 bytes; the limit is 65536"):
        _spec(command="x" * 65537)


def test_the_command_limit_counts_utf8_bytes_not_characters():
    assert _spec(command="é" * 32768).command == "é" * 32768  # 65536 bytes
    with pytest.raises(errors.UsageError, match="65537 bytes"):
        _spec(command="é" * 32768 + "x")


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_a_unicode_command_round_trips_exactly(ensure_ascii):
    command = "echo 'héllo wörld ✓ 🚀 日本語' \"$HOME\" \\n\ttab  two-spaces "
    text = json.dumps({"command": command}, ensure_ascii=ensure_ascii)
    assert parse_json_arg(text).command == command


def test_a_command_with_a_nul_character_is_rejected():
    with pytest.raises(errors.UsageError, match="NUL"):
        parse_json_arg('{"command": "echo a\\u0000b"}')


def test_a_command_with_a_lone_surrogate_is_rejected():
    # JSON can spell an unpaired surrogate; it cannot be encoded as UTF-8, so neither
    # SQLite nor PostgreSQL can store it: it must be a UsageError here, not a crash later
    with pytest.raises(errors.UsageError):
        parse_json_arg('{"command": "echo \\ud800"}')


# --- integers -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 1000])
def test_max_retries_in_range_is_accepted(value):
    assert _spec(max_retries=value).max_retries == value


def test_null_max_retries_means_the_configured_default():
    assert _spec(max_retries=None).max_retries is None


@pytest.mark.parametrize("value", [1.5, 2.0, -1, 1001, True, False, "3", [3]])
def test_max_retries_must_be_a_whole_number_in_range(value):
    _rejects({"command": "x", "max_retries": value}, "^max_retries must be")


@pytest.mark.parametrize("value", [0, -5, 5, INT32, -INT32])
def test_priority_in_range_is_accepted(value):
    assert _spec(priority=value).priority == value


@pytest.mark.parametrize("value", [1.5, -0.5, 2.0, True, "1", None, INT32 + 1, -INT32 - 1])
def test_priority_must_be_a_whole_number_in_range(value):
    _rejects({"command": "x", "priority": value}, "^priority must be")


def test_nan_priority_is_rejected():
    with pytest.raises(errors.UsageError, match="priority"):
        parse_json_arg('{"command": "x", "priority": NaN}')


# --- id and queue ---------------------------------------------------------------------------


def test_a_null_id_means_generate_one():
    assert _spec(id=None).id is None


@pytest.mark.parametrize("job_id", ["", "a b", "x" * 129, 5, "a/b"])
def test_a_bad_id_is_rejected(job_id):
    _rejects({"command": "x", "id": job_id}, "bad job id")


@pytest.mark.parametrize("queue", ["", "a b", "x" * 65, None, 3])
def test_a_bad_queue_is_rejected(queue):
    _rejects({"command": "x", "queue": queue}, "bad queue name")


def test_a_queue_of_64_characters_is_accepted():
    assert _spec(queue="q" * 64).queue == "q" * 64


# --- run_at and delay -----------------------------------------------------------------------


def test_run_at_with_a_zone_is_converted_to_utc():
    spec = _spec(run_at="2030-01-31T09:00:00+01:00")
    assert spec.run_at == datetime(2030, 1, 31, 8, 0, tzinfo=UTC)


def test_run_at_without_a_zone_is_utc():
    assert _spec(run_at="2030-01-31T09:00:00").run_at == datetime(2030, 1, 31, 9, tzinfo=UTC)


@pytest.mark.parametrize("run_at", [1700000000, ["2030-01-01"], True])
def test_run_at_must_be_a_string(run_at):
    _rejects({"command": "x", "run_at": run_at}, "RFC 3339")


def test_an_unparsable_run_at_is_rejected():
    _rejects({"command": "x", "run_at": "next tuesday"}, "^run_at: 'next tuesday' is not a time")


@pytest.mark.parametrize(("delay", "seconds"), [(60, 60), (1.5, 1.5), ("5m", 300), ("2h", 7200)])
def test_delay_schedules_the_job_that_far_ahead(delay, seconds):
    before = models.utcnow()
    spec = _spec(delay=delay)
    after = models.utcnow()
    step = timedelta(seconds=seconds)
    assert _within(spec.run_at, before + step, after + step)


def test_null_delay_means_run_now():
    assert _spec(delay=None).run_at is None


@pytest.mark.parametrize("delay", [-1, "-5s", "soon", True, [5]])
def test_a_bad_delay_is_rejected(delay):
    with pytest.raises(errors.UsageError, match="delay"):
        _spec(delay=delay)


def test_an_enormous_delay_is_a_usage_error():
    with pytest.raises(errors.UsageError, match="too large"):
        _spec(delay=1e15)


def test_run_at_and_delay_together_are_rejected():
    _rejects(
        {"command": "x", "run_at": "2030-01-01T00:00:00Z", "delay": 5},
        'give "run_at" or "delay", not both',
    )


# --- timeout --------------------------------------------------------------------------------


def test_no_timeout_field_means_the_configured_default():
    assert _spec().timeout_s is None


@pytest.mark.parametrize("timeout", [0, 0.0, None, "0", "0s"])
def test_timeout_zero_or_null_means_explicitly_no_timeout(timeout):
    assert _spec(timeout=timeout).timeout_s == 0.0


@pytest.mark.parametrize(
    ("timeout", "seconds"), [(30, 30.0), (0.5, 0.5), (0.001, 0.001), ("1.5m", 90.0), ("2h", 7200.0)]
)
def test_timeout_accepts_seconds_or_a_duration(timeout, seconds):
    assert _spec(timeout=timeout).timeout_s == pytest.approx(seconds)


@pytest.mark.parametrize("timeout", [-1, "-1s", True, "soon", {"s": 1}, 0.0005])
def test_a_bad_timeout_is_rejected(timeout):
    with pytest.raises(errors.UsageError, match="timeout"):
        _spec(timeout=timeout)


def test_an_infinite_timeout_is_rejected():
    with pytest.raises(errors.UsageError, match="timeout"):
        parse_json_arg('{"command": "x", "timeout": Infinity}')


# --- NDJSON ---------------------------------------------------------------------------------


def test_ndjson_reads_one_job_per_line_in_order():
    lines = ['{"command": "a"}\n', '{"command": "b", "queue": "q"}\n', '{"command": "c"}']
    assert [s.command for s in parse_ndjson(lines)] == ["a", "b", "c"]
    assert parse_ndjson(lines)[1].queue == "q"


def test_ndjson_skips_blank_lines():
    lines = ["\n", '{"command": "a"}\n', "   \n", "\t\n", '{"command": "b"}\n', "\n"]
    assert [s.command for s in parse_ndjson(lines)] == ["a", "b"]


def test_ndjson_malformed_json_names_the_line_number():
    lines = ['{"command": "a"}\n', "\n", '{"command": \n']
    with pytest.raises(errors.UsageError, match=r"^line 3: malformed JSON"):
        parse_ndjson(lines)


def test_ndjson_invalid_job_names_the_line_number():
    lines = ['{"command": "a"}\n', '{"command": "b", "priority": 1.5}\n']
    with pytest.raises(errors.UsageError, match=r"^line 2: priority must be a whole number"):
        parse_ndjson(lines)


def test_ndjson_non_object_line_names_the_line_number():
    with pytest.raises(errors.UsageError, match=r"^line 1: a job must be a JSON object"):
        parse_ndjson(['["a"]\n'])


@pytest.mark.parametrize("lines", [[], ["\n", "  \n"]])
def test_ndjson_without_jobs_is_rejected(lines):
    with pytest.raises(errors.UsageError, match="no jobs in the input"):
        parse_ndjson(lines)


# --- flag overrides -------------------------------------------------------------------------


def test_no_overrides_leave_the_spec_unchanged():
    spec = _spec(id="a", queue="q", priority=2, timeout=5, max_retries=1)
    assert apply_overrides(spec, Overrides()) == spec


def test_overrides_replace_fields():
    spec = _spec(id="a", queue="q", priority=2, timeout=5, max_retries=1)
    changed = apply_overrides(
        spec,
        Overrides(
            id="b",
            queue="r",
            priority=-3,
            run_at="2030-01-01T00:00:00Z",
            timeout="1m",
            max_retries=9,
        ),
    )
    assert changed == models.JobSpec(
        command="echo hi",
        id="b",
        queue="r",
        priority=-3,
        run_at=datetime(2030, 1, 1, tzinfo=UTC),
        timeout_s=60.0,
        max_retries=9,
    )


def test_delay_flag_schedules_from_now():
    before = models.utcnow()
    spec = apply_overrides(_spec(run_at="2030-01-01T00:00:00Z"), Overrides(delay="10s"))
    after = models.utcnow()
    assert _within(spec.run_at, before + timedelta(seconds=10), after + timedelta(seconds=10))


def test_timeout_flag_zero_means_explicitly_no_timeout():
    assert apply_overrides(_spec(timeout=5), Overrides(timeout="0")).timeout_s == 0.0


def test_delay_and_run_at_flags_together_are_rejected():
    with pytest.raises(errors.UsageError, match="--delay or --run-at"):
        apply_overrides(_spec(), Overrides(delay="5s", run_at="2030-01-01T00:00:00Z"))


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (Overrides(id="a b"), "bad job id"),
        (Overrides(queue="a b"), "bad queue name"),
        (Overrides(priority=INT32 + 1), "--priority"),
        (Overrides(max_retries=-1), "--max-retries"),
        (Overrides(max_retries=1001), "--max-retries"),
        (Overrides(delay="soon"), "--delay"),
        (Overrides(run_at="soon"), "--run-at"),
        (Overrides(timeout="-5"), "--timeout|timeout"),
    ],
)
def test_bad_flags_are_rejected(flags, match):
    with pytest.raises(errors.UsageError, match=match):
        apply_overrides(_spec(), flags)


# --- what Client takes from Python: typed values, JobSpecs, ids, windows, schedules ----------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (Overrides(priority=INT32 + 1), "priority must be between"),
        (Overrides(max_retries=-1), "max_retries must be between"),
        (Overrides(delay="soon"), "delay: 'soon' is not a duration"),
        (Overrides(run_at="soon"), "run_at: 'soon' is not a time"),
        (Overrides(ttl=0), "ttl must be longer than 0s"),
        (Overrides(delay=5, run_at="2030-01-01T00:00:00Z"), "give delay or run_at, not both"),
    ],
)
def test_python_overrides_name_the_arguments_not_the_flags(flags, message):
    with pytest.raises(errors.UsageError, match=f"^{message}"):
        apply_overrides(_spec(), flags, python=True)


@pytest.mark.parametrize("value", [90, 90.0, "90s", "1.5m", timedelta(seconds=90)])
def test_a_duration_is_seconds_a_timedelta_or_text(value):
    assert specs.seconds(value, "timeout") == 90.0
    assert apply_overrides(_spec(), Overrides(timeout=value), python=True).timeout_s == 90.0


def test_run_at_may_be_a_datetime_and_a_naive_one_is_utc():
    at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert apply_overrides(_spec(), Overrides(run_at=at), python=True).run_at == at
    naive = at.replace(tzinfo=None)
    assert apply_overrides(_spec(), Overrides(run_at=naive), python=True).run_at == at


def test_check_spec_passes_a_good_spec_through_unchanged():
    spec = models.JobSpec(command="echo", id="a", queue="q", priority=-3, timeout_s=1.5)
    assert specs.check_spec(spec) is spec


def test_check_spec_makes_naive_times_utc():
    spec = models.JobSpec(command="echo", run_at=datetime(2031, 1, 1), expires_at=None)
    assert specs.check_spec(spec).run_at == datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (models.JobSpec(command=""), '"command" must be a non-empty string'),
        (models.JobSpec(command="x", id="a b"), "bad job id"),
        (models.JobSpec(command="x", queue="a/b"), "bad queue name"),
        (models.JobSpec(command="x", priority=True), "priority must be a whole number"),
        (models.JobSpec(command="x", max_retries=1001), "max_retries must be between"),
        (models.JobSpec(command="x", timeout_s=0.0001), "timeout must be at least 1ms"),
        (models.JobSpec(command="x", run_at=5), "run_at must be a datetime"),  # type: ignore[arg-type]
        ("echo", "a job must be a JobSpec or a dict, not str"),
    ],
)
def test_check_spec_holds_a_python_spec_to_the_parsed_rules(spec, message):
    with pytest.raises(errors.UsageError, match=re.escape(message)):
        specs.check_spec(spec)


def test_as_spec_takes_a_command_a_json_shaped_dict_or_a_spec():
    assert specs.as_spec("echo hi") == models.JobSpec(command="echo hi")
    assert specs.as_spec({"command": "x", "queue": "q"}) == models.JobSpec(command="x", queue="q")
    spec = models.JobSpec(command="y")
    assert specs.as_spec(spec) is spec


def test_as_specs_numbers_the_bad_job_from_one():
    with pytest.raises(errors.UsageError, match=r"^job 3: missing required field"):
        specs.as_specs(["a", {"command": "b"}, {"queue": "q"}])


def test_check_ids_takes_one_id_or_several():
    assert specs.check_ids("a") == ["a"]
    assert specs.check_ids(("a", "b")) == ["a", "b"]
    for bad in ([], [1], ["a", None]):
        with pytest.raises(errors.UsageError, match="give one or more job ids"):
            specs.check_ids(bad)  # type: ignore[arg-type]


def test_a_window_is_longer_than_zero():
    assert specs.window("1h") == specs.window(timedelta(hours=1)) == 3600.0
    with pytest.raises(errors.UsageError, match="since must be longer than 0s"):
        specs.window(0)


def test_schedule_checks_cron_and_name_and_copies_the_spec():
    spec = models.JobSpec(command="echo", queue="q", priority=2, timeout_s=5.0, max_retries=1)
    made = specs.schedule("nightly", " 0 3 * * * ", spec)
    assert (made.name, made.cron, made.command, made.queue) == ("nightly", "0 3 * * *", "echo", "q")
    assert (made.priority, made.timeout_s, made.max_retries) == (2, 5.0, 1)
    with pytest.raises(errors.UsageError, match="longer than 64 characters"):
        specs.schedule("n" * 65, "@daily", spec)
    with pytest.raises(errors.UsageError, match="bad job id"):
        specs.schedule("a b", "@daily", spec)
    with pytest.raises(errors.UsageError):
        specs.schedule("ok", "61 * * * *", spec)
    assert made.tz == "UTC"
    assert specs.schedule("nightly", "0 3 * * *", spec, "Asia/Tokyo").tz == "Asia/Tokyo"
    with pytest.raises(errors.UsageError, match="unknown time zone 'Asia/Tokio'"):
        specs.schedule("nightly", "0 3 * * *", spec, "Asia/Tokio")
