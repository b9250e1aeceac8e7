"""Execution statistics from finished attempts: throughput, success rate, latency quantiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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


def timeline(
    samples: Iterable[models.RunSample], *, window_s: float, buckets: int
) -> list[tuple[int, int]]:
    """(succeeded, failed) attempts per equal slice of the window, oldest slice first."""
    width = window_s / buckets
    counts = [[0, 0] for _ in range(buckets)]
    for s in samples:
        slot = buckets - 1 - int(s.ago_s // width)
        if 0 <= slot < buckets:
            counts[slot][0 if s.outcome == models.OutcomeKind.SUCCEEDED else 1] += 1
    return [(ok, bad) for ok, bad in counts]
