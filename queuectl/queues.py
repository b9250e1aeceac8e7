"""Queue flow settings as users write them (`--concurrency 3`, `--rate 100/1m`) and `queue list`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from queuectl import errors, models
from queuectl.durations import parse_duration, unit_duration

if TYPE_CHECKING:
    from queuectl.backends.base import Backend

MAX_CONCURRENCY = 1_000_000
MAX_RATE = 100_000  # starts per period: the rate limit logs each start within its period
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")
_NONE = frozenset({"none", "off", "unlimited"})


def parse_concurrency(value: object) -> int | None:
    """A whole number >= 0 (0 holds the queue like a pause, without pausing it), or None /
    "none" for no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.UsageError(f"concurrency must be a whole number >= 0 or none, not {value!r}")
    if not 0 <= value <= MAX_CONCURRENCY:
        raise errors.UsageError(
            f"concurrency must be between 0 and {MAX_CONCURRENCY} (or none), not {value}"
        )
    return value


def parse_rate(value: object) -> tuple[int, float] | None:
    """`N/PERIOD` (`100/1m`, `5/1s`, `20/2s`; a bare unit means one: `10/s`), or (N,
    seconds), or None / "none" for no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    if isinstance(value, tuple) and len(value) == 2:
        count, period = value
    elif isinstance(value, str) and (match := _RATE.fullmatch(value)):
        count, unit = int(match.group(1)), match.group(2)
        period = parse_duration(unit if unit[0].isdigit() else f"1{unit}", what="rate period")
    else:
        raise errors.UsageError(f"rate must look like 100/1m or 5/1s (or none), not {value!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_RATE:
        raise errors.UsageError(f"rate: the count must be between 1 and {MAX_RATE}, not {count!r}")
    if isinstance(period, bool) or not isinstance(period, int | float) or not period > 0:
        raise errors.UsageError(f"rate: the period must be longer than 0s, not {period!r}")
    if period > 86400 * 7:
        raise errors.UsageError("rate: the period must be at most 7d")
    return count, float(period)


def rate_text(control: models.QueueControl) -> str | None:
    """A queue's rate limit as a user writes it (`100/1m`), or None."""
    if control.rate_limit is None or control.rate_period_s is None:
        return None
    return f"{control.rate_limit}/{unit_duration(control.rate_period_s)}"


def overview(backend: Backend, *, lease_ttl_s: float) -> list[dict[str, Any]]:
    """Every queue with jobs or settings, by name: the `queue list --json` objects."""
    stats = backend.stats(lease_ttl_s=lease_ttl_s)
    controls = {q.name: q for q in backend.queue_controls()}
    oldest = backend.oldest_due()
    out = []
    for name in sorted(stats.by_queue.keys() | controls.keys()):
        control = controls.get(name) or models.QueueControl(name)
        counts = {str(s): stats.by_queue.get(name, {}).get(str(s), 0) for s in models.JobState}
        age = oldest.get(name)
        out.append(
            {
                "name": name,
                "paused": control.paused,
                "concurrency": control.concurrency,
                "rate": rate_text(control),
                "running": counts[models.JobState.PROCESSING],
                "jobs": counts,
                "oldest_due_age_s": None if age is None else round(age, 3),
            }
        )
    return out
