"""queuectl.stats: quantiles and the `stats --json` document."""

from __future__ import annotations

import pytest

from queuectl import models
from queuectl.stats import quantile, summarize


def sample(
    queue: str = "q", outcome: str = "succeeded", run: float = 1.0, wait: float = 0.0
) -> models.RunSample:
    return models.RunSample(queue=queue, outcome=outcome, run_s=run, wait_s=wait)


def test_quantile_interpolates_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0]
    assert quantile(values, 0.5) == 2.5
    assert quantile(values, 0.0) == 1.0
    assert quantile(values, 1.0) == 4.0
    assert quantile(values, 0.95) == pytest.approx(3.85)
    assert quantile([7.0], 0.95) == 7.0
    assert quantile([], 0.5) is None


def test_summary_counts_rates_and_times_per_queue():
    samples = [
        sample("a", run=1.0, wait=0.5),
        sample("a", run=3.0, wait=1.5),
        sample("a", "failed", run=2.0, wait=1.0),
        sample("b", "timed_out", run=10.0, wait=4.0),
    ]
    doc = summarize(samples, window_s=120)
    assert doc["window_s"] == 120
    a = doc["queues"]["a"]
    assert (a["finished"], a["succeeded"], a["failed"]) == (3, 2, 1)
    assert a["success_rate"] == pytest.approx(0.6667, abs=1e-4)
    assert a["throughput_per_min"] == 1.5
    assert a["run_s"] == {"p50": 2.0, "p95": 2.9, "max": 3.0}
    assert a["wait_s"]["p50"] == 1.0
    assert doc["queues"]["b"]["outcomes"] == {"timed_out": 1}
    assert doc["all"]["finished"] == 4
    assert doc["all"]["outcomes"] == {"failed": 1, "succeeded": 2, "timed_out": 1}


def test_an_empty_window_has_no_rates():
    doc = summarize([], window_s=3600)
    assert doc["all"]["finished"] == 0
    assert doc["all"]["success_rate"] is None
    assert doc["all"]["run_s"] == {"p50": None, "p95": None, "max": None}
    assert doc["queues"] == {}
