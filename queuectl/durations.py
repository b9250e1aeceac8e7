"""Parsing of the durations and times users type: `30s`, `5m`, `1.5h`, RFC 3339 stamps."""

import math
import re
from datetime import UTC, datetime

from queuectl import errors

_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*", re.IGNORECASE)


def parse_duration(text: str, *, what: str) -> float:
    """Seconds from `30`, `30s`, `5m`, `2h`, `1d`, `250ms`; a clear UsageError otherwise."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise errors.UsageError(f"{what}: {text!r} is not a duration (e.g. 30s, 5m, 2h, 1d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(seconds):
        raise errors.UsageError(f"{what}: {text!r} is too large")
    return seconds


def parse_time(text: str, *, what: str, local: bool = False) -> datetime:
    """An ISO 8601 / RFC 3339 time; one without a zone is taken as UTC, or with `local` as
    this machine's local time (DST included)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise errors.UsageError(
            f"{what}: {text!r} is not a time (use RFC 3339, e.g. 2026-01-31T09:00:00Z)"
        ) from None
    try:
        if value.tzinfo is None:
            value = value.astimezone() if local else value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except OverflowError:
        raise errors.UsageError(f"{what}: {text!r} is out of range") from None


def format_duration(seconds: float) -> str:
    """Short human form for tables: 850ms, 12s, 4m05s, 3h10m, 2d4h."""
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f}ms"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f}s"
    if round(seconds) < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def unit_duration(seconds: float) -> str:
    """The largest whole unit as a user would type it back: 1m, 2h, 7d, 90s, 1.5s, 250ms."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        count = seconds / size
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"
