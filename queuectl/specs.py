"""Job specs: enqueue input (a JSON object, NDJSON lines, flags, Python arguments) into
validated JobSpecs. The domain rules behind `queuectl enqueue`, `schedule add` and Client."""

# no `from __future__ import annotations`: a NamedTuple with string annotations compiles
# each of them at import, on every CLI call
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from queuectl import errors, ids, models
from queuectl.durations import parse_duration, parse_time

MAX_COMMAND_BYTES = 64 * 1024
INT32 = 2**31 - 1
MAX_RETRIES_CAP = 1000
VALID_QUEUE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# what json.loads runs, without its per-call checks (typeshed does not declare it)
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_JSON_SPACE = " \t\n\r"  # the whitespace JSON allows around a value

# accepted so job files written for other tools (or `show --json` output) load; they must
# describe a fresh job, and are otherwise ignored
_FRESH: dict[str, object] = {
    "state": "pending",
    "attempts": 0,
    **dict.fromkeys(("last_error", "exit_code", "started_at", "finished_at", "worker_id")),
}
_IGNORED = {"created_at", "updated_at"}
_TIMING = frozenset({"run_at", "delay", "ttl", "expires_at"})  # rare: most jobs skip their checks
_FLOW = frozenset({"after", "unique_key", "unique_for"})  # DESIGN §8
_FIELDS = _TIMING | _FLOW | {"id", "command", "queue", "priority", "timeout", "max_retries"}
MAX_AFTER = 1000  # dependencies of one job
MAX_UNIQUE_KEY = 255


Duration = str | float | timedelta  # "5m", seconds, or a timedelta


class Overrides(NamedTuple):
    """Field flags of `enqueue` (or Client.enqueue's keyword arguments); None means not
    given. Durations are text like 30s (flags), or seconds or a timedelta (Python)."""

    # a NamedTuple, not a dataclass: defining a dataclass costs every CLI call ~1 ms
    id: str | None = None
    queue: str | None = None
    priority: int | None = None
    delay: Duration | None = None
    run_at: str | datetime | None = None
    timeout: Duration | None = None
    max_retries: int | None = None
    ttl: Duration | None = None
    after: tuple[str, ...] | None = None
    unique_key: str | None = None
    unique_for: Duration | None = None


# how apply_overrides names a field in its errors: the CLI's flags, or Python's arguments
_FLAG_NAMES = {"priority": "--priority", "delay": "--delay", "run_at": "--run-at"}
_FLAG_NAMES |= {"ttl": "--ttl", "max_retries": "--max-retries", "after": "--after"}
_FLAG_NAMES |= {"unique_key": "--unique-key", "unique_for": "--unique-for"}


def parse_json_arg(text: str) -> models.JobSpec:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.UsageError(f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise errors.UsageError(_unparsable(exc)) from None
    return spec_from_object(obj)


def _unparsable(exc: RecursionError | ValueError) -> str:
    """JSON that is well formed but that Python will not load: arrays or objects nested
    about a thousand deep, or an integer of more than 4300 digits."""
    if isinstance(exc, RecursionError):
        return "malformed JSON: nested too deeply"
    return "malformed JSON: a number with too many digits"


def parse_ndjson(lines: Iterable[str]) -> list[models.JobSpec]:
    specs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            specs.append(spec_from_object(_load_line(line)))
        except json.JSONDecodeError as exc:
            raise errors.UsageError(f"line {number}: malformed JSON: {exc.msg}") from None
        except (RecursionError, ValueError) as exc:
            raise errors.UsageError(f"line {number}: {_unparsable(exc)}") from None
        except errors.UsageError as exc:
            raise errors.UsageError(f"line {number}: {exc}") from None
    if not specs:
        raise errors.UsageError("no jobs in the input (expected one JSON object per line)")
    return specs


def _load_line(line: str) -> Any:
    """json.loads(line), minus its per-call overhead when the line is one clean value."""
    try:
        obj, end = _scan(line, 0)
    except (StopIteration, json.JSONDecodeError):
        return json.loads(line)  # leading whitespace, or an error json.loads names exactly
    if end != len(line) and line[end:].strip(_JSON_SPACE):
        return json.loads(line)  # raises "Extra data"
    return obj


def spec_from_object(obj: object) -> models.JobSpec:
    if not isinstance(obj, dict):
        raise errors.UsageError('a job must be a JSON object with a "command"')
    if not obj.keys() <= _FIELDS:  # the usual job has only these: no key needs a look
        _check_other_keys(obj)
    if "command" not in obj:
        raise errors.UsageError('missing required field "command"')
    timed = not _TIMING.isdisjoint(obj)
    if timed:
        # null means "not given" here, as it does for ttl and expires_at below
        if obj.get("run_at") is not None and obj.get("delay") is not None:
            raise errors.UsageError('give "run_at" or "delay", not both')
        if obj.get("ttl") is not None and obj.get("expires_at") is not None:
            raise errors.UsageError('give "ttl" or "expires_at", not both')
    job_id, max_retries = obj.get("id"), obj.get("max_retries")
    flow: dict[str, Any] = {} if _FLOW.isdisjoint(obj) else _flow_fields(obj)
    return models.JobSpec(
        **flow,
        command=check_command(obj["command"]),
        id=None if job_id is None else check_id(job_id),
        queue=check_queue(obj.get("queue", "default")),
        priority=check_int(obj.get("priority", 0), "priority", low=-INT32, high=INT32),
        run_at=_run_at(obj) if timed else None,
        timeout_s=_timeout(obj["timeout"]) if "timeout" in obj else None,
        max_retries=None
        if max_retries is None
        else check_int(max_retries, "max_retries", low=0, high=MAX_RETRIES_CAP),
        expires_at=_expires_at(obj) if timed else None,
    )


def _flow_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`after`, `unique_key` and `unique_for` of a JSON job (null: not given)."""
    fields: dict[str, Any] = {}
    if obj.get("after") is not None:
        fields["after"] = check_after(obj["after"], "after")
    if obj.get("unique_key") is not None:
        fields["unique_key"] = check_unique_key(obj["unique_key"], "unique_key")
    if obj.get("unique_for") is not None:
        fields["unique_for_s"] = _unique_for(obj["unique_for"], "unique_for")
    _check_unique(fields.get("unique_key"), fields.get("unique_for_s"), "unique_key", "unique_for")
    return fields


def check_after(value: object, name: str) -> tuple[str, ...]:
    """The ids a job runs after: a list of job ids (one id alone is accepted too)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise errors.UsageError(f"{name} must be a list of job ids")
    if len(items) > MAX_AFTER:
        raise errors.UsageError(f"{name}: at most {MAX_AFTER} dependencies, not {len(items)}")
    return tuple(dict.fromkeys(check_id(item) for item in items))


def check_unique_key(value: object, name: str) -> str:
    if (
        not isinstance(value, str)
        or not value
        or value.isspace()
        or len(value) > MAX_UNIQUE_KEY
        or not value.isprintable()
    ):
        raise errors.UsageError(
            f"{name} must be 1-{MAX_UNIQUE_KEY} printable characters, not {_brief(value)}"
        )
    return value


def _unique_for(value: object, name: str) -> float:
    return _positive(_seconds(value, name), name)


def _check_unique(key: str | None, window_s: float | None, key_name: str, for_name: str) -> None:
    if window_s is not None and key is None:
        raise errors.UsageError(f"{for_name} needs {key_name}")


def _check_other_keys(obj: dict[str, Any]) -> None:
    for key, value in obj.items():
        if key in _FRESH and (value != _FRESH[key] or type(value) is not type(_FRESH[key])):
            raise errors.UsageError(f"{key!r} can only be {_FRESH[key]!r} for a new job")
        if key not in _FIELDS and key not in _FRESH and key not in _IGNORED:
            raise errors.UsageError(
                f"unknown field {_brief(key)} (allowed: {', '.join(sorted(_FIELDS))})"
            )


def apply_overrides(
    spec: models.JobSpec, flags: Overrides, *, python: bool = False
) -> models.JobSpec:
    """`spec` with the given fields replaced; errors name the CLI's flags (`--delay`), or
    with `python` the keyword arguments (`delay`)."""
    name = (lambda field: field) if python else _FLAG_NAMES.__getitem__
    changes: dict[str, Any] = {}
    if flags.id is not None:
        changes["id"] = check_id(flags.id)
    if flags.queue is not None:
        changes["queue"] = check_queue(flags.queue)
    if flags.priority is not None:
        changes["priority"] = check_int(flags.priority, name("priority"), low=-INT32, high=INT32)
    if flags.delay is not None and flags.run_at is not None:
        raise errors.UsageError(f"give {name('delay')} or {name('run_at')}, not both")
    if flags.delay is not None:
        changes["run_at"] = _after(_seconds(flags.delay, name("delay")))
    if flags.run_at is not None:
        changes["run_at"] = _time(flags.run_at, name("run_at"))
    if flags.timeout is not None:
        changes["timeout_s"] = _timeout(flags.timeout)
    if flags.ttl is not None:
        ttl = _positive(_seconds(flags.ttl, name("ttl")), name("ttl"))
        due = changes.get("run_at") or spec.run_at or models.utcnow()
        changes["expires_at"] = _plus(due, ttl)
    if flags.max_retries is not None:
        changes["max_retries"] = check_int(
            flags.max_retries, name("max_retries"), low=0, high=MAX_RETRIES_CAP
        )
    if flags.after is not None or flags.unique_key is not None or flags.unique_for is not None:
        changes |= _flow_overrides(spec, flags, name)
    result = replace(spec, **changes)
    _check_unique(result.unique_key, result.unique_for_s, name("unique_key"), name("unique_for"))
    if result.expires_at is not None and result.expires_at <= (result.run_at or models.utcnow()):
        raise errors.UsageError("expires_at must be after the time the job is due")
    return result


def _flow_overrides(
    spec: models.JobSpec, flags: Overrides, name: Callable[[str], str]
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if flags.after is not None:
        extra = check_after(list(flags.after), name("after"))
        changes["after"] = tuple(dict.fromkeys(spec.after + extra))
    if flags.unique_key is not None:
        changes["unique_key"] = check_unique_key(flags.unique_key, name("unique_key"))
    if flags.unique_for is not None:
        changes["unique_for_s"] = _unique_for(flags.unique_for, name("unique_for"))
    return changes


def check_spec(spec: object) -> models.JobSpec:
    """A JobSpec built in Python, held to the rules parsed input meets: UsageError on a bad
    field. Naive datetimes are taken as UTC, as parse_time takes a time without a zone."""
    if not isinstance(spec, models.JobSpec):
        raise errors.UsageError(f"a job must be a JobSpec or a dict, not {type(spec).__name__}")
    check_command(spec.command)
    if spec.id is not None:
        check_id(spec.id)
    check_queue(spec.queue)
    check_int(spec.priority, "priority", low=-INT32, high=INT32)
    if spec.max_retries is not None:
        check_int(spec.max_retries, "max_retries", low=0, high=MAX_RETRIES_CAP)
    changes: dict[str, Any] = {}
    if spec.after:
        changes["after"] = check_after(list(spec.after), "after")
    if spec.unique_key is not None:
        check_unique_key(spec.unique_key, "unique_key")
    if spec.unique_for_s is not None:
        _unique_for(spec.unique_for_s, "unique_for_s")
    _check_unique(spec.unique_key, spec.unique_for_s, "unique_key", "unique_for_s")
    if spec.timeout_s is not None and _timeout(spec.timeout_s) != spec.timeout_s:
        changes["timeout_s"] = _timeout(spec.timeout_s)
    for field in ("run_at", "expires_at"):
        value = getattr(spec, field)
        if value is not None and (aware := _time(value, field)) is not value:
            changes[field] = aware
    return replace(spec, **changes) if changes else spec


def _time(value: object, name: str) -> datetime:
    """An RFC 3339 string or a datetime, as an aware UTC datetime."""
    if isinstance(value, str):
        return parse_time(value, what=name)
    if not isinstance(value, datetime):
        raise errors.UsageError(f"{name} must be a datetime or an RFC 3339 time string")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def check_command(value: object) -> str:
    if not isinstance(value, str) or not value or value.isspace():
        raise errors.UsageError('"command" must be a non-empty string')
    if "\x00" in value:
        raise errors.UsageError('"command" must not contain a NUL character')
    try:
        size = len(value) if value.isascii() else len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise errors.UsageError('"command" is not valid Unicode (a lone surrogate)') from None
    if size > MAX_COMMAND_BYTES:
        raise errors.UsageError(f'"command" is {size} bytes; the limit is {MAX_COMMAND_BYTES}')
    return value


def check_id(value: object) -> str:
    if not isinstance(value, str) or not ids.is_valid(value):
        raise errors.UsageError(f"bad job id {_brief(value)}: use 1-128 of A-Z a-z 0-9 . _ : -")
    return value


def check_queue(value: object) -> str:
    if not isinstance(value, str) or not _valid_queue(value):
        raise errors.UsageError(f"bad queue name {_brief(value)}: use 1-64 of A-Z a-z 0-9 . _ : -")
    return value


@functools.lru_cache(maxsize=256)
def _valid_queue(name: str) -> bool:
    # a bulk enqueue names the same few queues on every line: match each name once
    return VALID_QUEUE.fullmatch(name) is not None


def check_int(value: object, name: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.UsageError(f"{name} must be a whole number, not {_brief(value)}")
    if not low <= value <= high:
        raise errors.UsageError(f"{name} must be between {low} and {high}, not {_brief(value)}")
    return value


def _brief(value: object) -> str:
    """A rejected value for the error line, cut short: input may be megabytes long, or
    nested so deep that printing it in full would exceed the recursion limit."""
    try:
        text = repr(value[:100]) if isinstance(value, str) else json.dumps(value)
    except (RecursionError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 80 else text[:79] + "…"


def _seconds(value: object, name: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool):
        raise errors.UsageError(f"{name} must be a number of seconds or a duration like 30s")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past 1.8e308
            raise errors.UsageError(f"{name} is too large") from None
    elif isinstance(value, str):
        seconds = parse_duration(value, what=name)
    else:
        raise errors.UsageError(f"{name} must be a number of seconds or a duration like 30s")
    if not math.isfinite(seconds):
        raise errors.UsageError(f"{name} must be a finite number of seconds")
    if seconds < 0:
        raise errors.UsageError(f"{name} must not be negative")
    return seconds


def seconds(value: object, name: str) -> float:
    """A duration (seconds, a timedelta, or text like 30s) as seconds >= 0."""
    return _seconds(value, name)


def _timeout(value: object) -> float:
    """0 (or null) stores 'no timeout' explicitly; the config default does not apply then."""
    if value is None:
        return 0.0
    seconds = _seconds(value, "timeout")
    if 0 < seconds < 0.001:
        raise errors.UsageError("timeout must be at least 1ms (or 0 for none)")
    return seconds


def _run_at(obj: Mapping[str, Any]) -> datetime | None:
    if obj.get("run_at") is not None:
        if not isinstance(obj["run_at"], str):
            raise errors.UsageError('"run_at" must be an RFC 3339 time string')
        return parse_time(obj["run_at"], what="run_at")
    if obj.get("delay") is not None:
        return _after(_seconds(obj["delay"], "delay"))
    return None


def _expires_at(obj: Mapping[str, Any]) -> datetime | None:
    """`ttl` (seconds or 1h) after the job is due, or an absolute `expires_at`: not started by
    then, the job is dead-lettered instead of running late."""
    if obj.get("expires_at") is not None:
        if not isinstance(obj["expires_at"], str):
            raise errors.UsageError('"expires_at" must be an RFC 3339 time string')
        return parse_time(obj["expires_at"], what="expires_at")
    if obj.get("ttl") is not None:
        # counted from when the job is due: "run at 9:00, but not after 9:05"
        return _plus(_run_at(obj) or models.utcnow(), _positive(_seconds(obj["ttl"], "ttl"), "ttl"))
    return None


def _positive(seconds: float, name: str) -> float:
    if seconds <= 0:
        raise errors.UsageError(f"{name} must be longer than 0s")
    return seconds


def _plus(at: datetime, seconds: float) -> datetime:
    try:
        return at + timedelta(seconds=seconds)
    except OverflowError:
        raise errors.UsageError("ttl is too large") from None


def _after(seconds: float) -> datetime:
    try:
        return models.utcnow() + timedelta(seconds=seconds)
    except OverflowError:
        raise errors.UsageError("delay is too large") from None


def as_spec(job: object) -> models.JobSpec:
    """What Client.enqueue takes as a job: a shell command, a dict in the JSON shape of
    `queuectl enqueue`, or a JobSpec (held to the same rules)."""
    if isinstance(job, str):
        return models.JobSpec(command=check_command(job))
    if isinstance(job, Mapping):
        return spec_from_object(dict(job))
    return check_spec(job)


def as_specs(jobs: Iterable[object]) -> list[models.JobSpec]:
    """`as_spec` of each job; a UsageError names the job's number (from 1)."""
    checked = []
    for number, job in enumerate(jobs, start=1):
        try:
            checked.append(as_spec(job))
        except errors.UsageError as exc:
            raise errors.UsageError(f"job {number}: {exc}") from None
    return checked


def check_ids(ids: Iterable[str]) -> list[str]:
    """One id or several, as a non-empty list of strings."""
    out = [ids] if isinstance(ids, str) else list(ids)
    if not out or not all(isinstance(job_id, str) for job_id in out):
        raise errors.UsageError(f"give one or more job ids (strings), not {str(out)[:60]}")
    return out


def window(since: object) -> float:
    """A stats window (seconds, a timedelta or text like 1h), longer than 0s."""
    window_s = _seconds(since, "since")
    if window_s <= 0:
        raise errors.UsageError("since must be longer than 0s")
    return window_s


def schedule(
    name: str, cron: str, spec: models.JobSpec, tz: str | None = None
) -> "models.Schedule":
    """A recurring job: a cron expression read in the IANA zone `tz` (default UTC), a
    job-id-like name (<= 64), a checked spec."""
    from queuectl.cron import DEFAULT_TZ, Cron

    tz = DEFAULT_TZ if tz is None else tz
    Cron.parse(cron, tz)  # reject a bad expression or zone before storing them
    if not isinstance(name, str) or len(name) > 64:
        raise errors.UsageError(f"schedule name {str(name)[:20]!r}… is longer than 64 characters")
    return models.Schedule(
        name=check_id(name),
        cron=cron.strip(),
        command=spec.command,
        queue=spec.queue,
        priority=spec.priority,
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        tz=tz,
    )
