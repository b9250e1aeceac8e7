"""queuectl.metrics: the queue collector's gauges, read from a SQLite file at scrape time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from queuectl import models
from queuectl.backends import open_backend
from queuectl.backends.base import Backend
from queuectl.metrics import Metrics


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    with contextlib.closing(open_backend(f"sqlite:///{tmp_path}/m.db")) as b:
        b.migrate()
        yield b


def scrape(backend: Backend) -> Metrics:
    metrics = Metrics("test")
    metrics.add_queue_collector(backend, lease_ttl_s=10)
    return metrics


def test_every_job_state_is_exported_blocked_included(backend: Backend) -> None:
    later = models.utcnow() + timedelta(hours=1)
    backend.enqueue([models.JobSpec(command="true", id="a", queue="etl", run_at=later)])
    backend.enqueue([models.JobSpec(command="true", id="b", queue="etl", after=("a",))])
    registry = scrape(backend).registry
    values = {
        state: registry.get_sample_value("queuectl_queue_jobs", {"queue": "etl", "state": state})
        for state in models.JobState
    }
    assert values == {s: 1.0 if s in ("pending", "blocked") else 0.0 for s in models.JobState}


def test_flow_control_gauges_follow_queue_pause_and_set(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", queue="mail")])
    backend.set_queue("mail", paused=True)
    backend.set_queue("api", concurrency=5, rate=(100, 60.0))  # settings, no jobs yet
    registry = scrape(backend).registry

    def value(name: str, queue: str) -> float | None:
        return registry.get_sample_value(name, {"queue": queue})

    assert value("queuectl_queue_paused", "mail") == 1.0
    assert value("queuectl_queue_paused", "api") == 0.0
    assert value("queuectl_queue_concurrency_limit", "api") == 5.0
    assert value("queuectl_queue_rate_limit", "api") == pytest.approx(100 / 60)
    assert value("queuectl_queue_rate_period_seconds", "api") == 60.0
    # no limit: no series at all, rather than a sentinel a graph would draw as a limit
    for name in ("queuectl_queue_concurrency_limit", "queuectl_queue_rate_limit"):
        assert value(name, "mail") is None
    # a resumed, unlimited queue reads 0 again on the next scrape
    backend.set_queue("mail", paused=False)
    backend.set_queue("api", concurrency=None, rate=None)
    assert registry.get_sample_value("queuectl_queue_paused", {"queue": "mail"}) == 0.0
    assert registry.get_sample_value("queuectl_queue_concurrency_limit", {"queue": "api"}) is None
