"""Execution statistics from finished attempts: throughput, success rate, latency quantiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from queuectl import models


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def _group(samples: Sequence[models.RunSample], window_s: float) -> dict[str, Any]:
    runs = sorted(s.run_s for s in samples)
    waits = sorted(s.wait_s for s in samples)
    succeeded = sum(1 for s in samples if s.outcome == models.OutcomeKind.SUCCEEDED)
    outcomes: dict[str, int] = {}
    for s in samples:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "finished": len(samples),
        "succeeded": succeeded,
        "failed": len(samples) - succeeded,
        "outcomes": dict(sorted(outcomes.items())),
        "success_rate": round(succeeded / len(samples), 4) if samples else None,
        "throughput_per_min": round(len(samples) / (window_s / 60), 3),
        "run_s": {
            "p50": rounded(quantile(runs, 0.5)),
            "p95": rounded(quantile(runs, 0.95)),
            "max": rounded(runs[-1] if runs else None),
        },
        "wait_s": {"p50": rounded(quantile(waits, 0.5)), "p95": rounded(quantile(waits, 0.95))},
    }


def summarize(samples: Iterable[models.RunSample], *, window_s: float) -> dict[str, Any]:
    """The `stats --json` document: every queue together, then each queue."""
    all_samples = list(samples)
    by_queue: dict[str, list[models.RunSample]] = {}
    for s in all_samples:
        by_queue.setdefault(s.queue, []).append(s)
    return {
        "window_s": window_s,
        "all": _group(all_samples, window_s),
        "queues": {q: _group(by_queue[q], window_s) for q in sorted(by_queue)},
    }


@dataclass(frozen=True)
class Range:
    """A history range the dashboard offers: its length, slice width and tick spacing."""

    key: str
    label: str
    window_s: int
    width_s: int  # one bar
    tick_s: int  # one labelled tick on the time axis
    tick_format: str  # strftime, UTC
    per: str  # the bar's width, in words


# the slices divide a day, so every bar and tick starts at a round UTC time
RANGES = {
    r.key: r
    for r in (
        Range("1h", "1 h", 3600, 120, 600, "%H:%M", "2 min"),
        Range("24h", "24 h", 86400, 1800, 3 * 3600, "%H:%M", "30 min"),
        Range("7d", "7 d", 7 * 86400, 4 * 3600, 86400, "%a %d", "4 h"),
    )
}


def history(
    buckets: Iterable[models.HistoryBucket], *, rng: Range, now: float
) -> list[tuple[int, int, int]]:
    """(slice start, succeeded, failed) for every slice of `rng` up to the one holding
    `now`, oldest first, empty slices included; slices outside the range are dropped."""
    last = int(now // rng.width_s) * rng.width_s
    count = rng.window_s // rng.width_s
    first = last - (count - 1) * rng.width_s
    seen = {b.start: b for b in buckets}
    out = []
    for start in range(first, last + 1, rng.width_s):
        b = seen.get(start)
        out.append((start, 0, 0) if b is None else (start, b.succeeded, b.finished - b.succeeded))
    return out
