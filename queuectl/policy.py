"""Queue policy: the keys `queuectl config set/get/list` validate and store in the database's
settings table, so every worker on every host shares them (models.Policy is the typed form)."""

# no `from __future__ import annotations`: a NamedTuple with string annotations compiles
# each of them at import
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import NamedTuple

from queuectl import errors, models
from queuectl.durations import parse_duration


def _int_at_least(low: int, *, high: int | None = None) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if value < low:
            raise ValueError(f"must be >= {low}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high}")
        return value

    return parse


def _number(
    low: float, high: float = math.inf, *, open_low: bool = False
) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (open_low and value == low) or value > high:
            bound = f"> {low:g}" if open_low else f">= {low:g}"
            raise ValueError(f"must be {bound}" + (f" and <= {high:g}" if high < math.inf else ""))
        return value

    return parse


MAX_POLICY_SECONDS = 366 * 86400.0  # a year: larger waits and limits are typos, and overflow


def _seconds(*, nullable: bool, most: float) -> Callable[[str], object]:
    def parse(text: str) -> object:
        if nullable and text.strip().lower() in {"none", "null", ""}:
            return None
        seconds = parse_duration(text, what="value")
        if nullable and seconds == 0:
            return None  # 0 means no limit
        if seconds < 0.001:
            raise ValueError("must be at least 1ms")
        if seconds > most:
            raise ValueError(f"must be at most {most / 86400:g}d")
        return seconds

    return parse


def _allowed_commands(text: str) -> object:
    from queuectl import allowlist  # only a call that meets a list pays for the module

    return allowlist.parse(text)


class PolicyKey(NamedTuple):
    # a NamedTuple, not a dataclass: defining a dataclass costs every CLI call ~1 ms
    key: str
    attr: str  # the models.Policy field
    parse: Callable[[str], object]
    help: str


POLICY_KEYS: dict[str, PolicyKey] = {
    k.key: k
    for k in (
        PolicyKey(
            "max-retries",
            "max_retries",
            _int_at_least(0, high=1000),
            "retries after the first attempt; snapshotted on each job at enqueue",
        ),
        PolicyKey(
            "backoff-base",
            "backoff_base",
            _number(1.0, 1000.0),
            "retry delay = backoff-base ^ attempts seconds, read when a failure happens",
        ),
        PolicyKey(
            "backoff-max",
            "backoff_max_s",
            _seconds(nullable=False, most=MAX_POLICY_SECONDS),
            "cap on one retry delay (seconds or 30s/5m/1h)",
        ),
        PolicyKey(
            "backoff-jitter",
            "backoff_jitter",
            _number(0.0, 1.0),
            "random spread of each delay as a fraction (0 = exact)",
        ),
        PolicyKey(
            "job-timeout",
            "job_timeout_s",
            _seconds(nullable=True, most=MAX_POLICY_SECONDS),
            "default wall-clock limit of one attempt (none = no limit)",
        ),
        PolicyKey(
            "output-limit",
            "output_limit",
            # a worker holds up to this much of each running job's output in memory and
            # stores it every heartbeat: 64 MiB is already far past what anyone reads
            _int_at_least(1024, high=64 * 1024 * 1024),
            "bytes of each attempt's output kept (the tail)",
        ),
        PolicyKey(
            "retention-completed",
            "retention_completed_s",
            _seconds(nullable=True, most=10 * MAX_POLICY_SECONDS),
            "completed and cancelled jobs are deleted this long after finishing (none = keep)",
        ),
        PolicyKey(
            "retention-dead",
            "retention_dead_s",
            _seconds(nullable=True, most=10 * MAX_POLICY_SECONDS),
            "dead jobs (the DLQ) are purged this long after dying (none = keep)",
        ),
        PolicyKey(
            "allowed-commands",
            "allowed_commands",
            _allowed_commands,
            'JSON array of command patterns workers may run, e.g. ["echo *"] (none = any)',
        ),
    )
}


def policy_key(key: str) -> PolicyKey:
    spec = POLICY_KEYS.get(key)
    if spec is None:
        raise errors.UsageError(
            f"unknown config key {key!r} (known: {', '.join(sorted(POLICY_KEYS))})"
        )
    return spec


def parse_policy_value(key: str, text: str) -> object:
    """The typed value for `config set`; UsageError naming the key on bad input."""
    spec = policy_key(key)
    try:
        return spec.parse(text)
    except (ValueError, errors.UsageError) as exc:
        raise errors.UsageError(f"bad value for {key}: {exc}") from None


def policy_from_rows(rows: Mapping[str, str]) -> models.Policy:
    """Stored text values over the defaults; a value that no longer parses is ignored."""
    policy = models.Policy()
    changes: dict[str, object] = {}
    for key, text in rows.items():
        spec = POLICY_KEYS.get(key)
        if spec is None:
            continue
        try:
            changes[spec.attr] = spec.parse(text)
        except (ValueError, errors.UsageError):
            if key == "allowed-commands":
                # fail closed: a list someone broke by hand must not become "run anything"
                changes[spec.attr] = ()
            continue
    return policy.replace(**changes)


def value_text(value: object) -> str:
    """A value given in Python (5, 0.5, a timedelta, None, a list of patterns) as the text
    `config set` takes."""
    if value is None:
        return "none"
    if isinstance(value, timedelta):
        return f"{value.total_seconds()}s"
    if isinstance(value, list | tuple):
        import json

        return json.dumps(list(value))
    return str(value)


def policy_text(value: object) -> str:
    """How a typed policy value is stored and printed."""
    if value is None:
        return "none"
    if isinstance(value, tuple):  # allowed-commands
        from queuectl import allowlist

        return allowlist.text(value)
    if isinstance(value, float):
        # fixed notation: "1e-05" would not parse back as a duration
        return str(int(value)) if value.is_integer() else f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


# the keys whose values are seconds: shown to people as 7d, 1h, 30s
DURATION_KEYS = frozenset({"backoff-max", "job-timeout", "retention-completed", "retention-dead"})


def shown(key: str, text: str) -> str:
    """A stored value as a person reads it: a duration key's seconds as `7d`; the rest (and
    `none`) as stored. `config get` and `--json` keep the stored text, for scripts."""
    if key not in DURATION_KEYS:
        return text
    try:
        seconds = float(text)
    except ValueError:
        return text
    from queuectl.durations import unit_duration

    return unit_duration(seconds)


class Entry(NamedTuple):
    """One key as `config list` shows it."""

    key: str
    value: str  # as stored and printed
    source: str  # "database" or "default"
    help: str


def entries(stored: Mapping[str, str]) -> list[Entry]:
    """Every key with its value: the stored text, else the default's."""
    defaults = models.Policy()
    out = []
    for key, spec in POLICY_KEYS.items():
        if key in stored:
            out.append(Entry(key, stored[key], "database", spec.help))
        else:
            out.append(Entry(key, policy_text(getattr(defaults, spec.attr)), "default", spec.help))
    return out
