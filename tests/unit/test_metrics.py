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


def families(metrics: Metrics) -> set[str]:
    return {family.name for family in metrics.registry.collect()}


WORKER = {
    "queuectl_jobs_claimed",
    "queuectl_jobs_completed",
    "queuectl_job_run_duration_seconds",
    "queuectl_job_queue_wait_seconds",
    "queuectl_claim_duration_seconds",
    "queuectl_worker_busy_slots",
    "queuectl_worker_slots",
    "queuectl_db_errors",
    "queuectl_jobs_recovered",
}
ORCHESTRATOR = {
    "queuectl_schedules_fired",
    "queuectl_sweep_runs",
    "queuectl_orchestrator_leader",
    "queuectl_jobs_recovered",
}


def test_each_role_registers_only_the_series_it_owns() -> None:
    assert families(Metrics("dashboard")) == {"queuectl_build"}
    assert families(Metrics("worker")) == {"queuectl_build"} | WORKER
    assert families(Metrics("orchestrator")) == {"queuectl_build"} | ORCHESTRATOR
    both = Metrics("worker")
    both.add_orchestrator_metrics()  # a SQLite worker embedding the orchestrator
    assert families(both) == {"queuectl_build"} | WORKER | ORCHESTRATOR
    # what a process does not own counts into nothing, and exports nothing
    dashboard = Metrics("dashboard")
    dashboard.claimed.labels(queue="mail").inc()
    dashboard.busy_slots.set(3)
    dashboard.leader.set(1)
    assert families(dashboard) == {"queuectl_build"}


def test_no_created_series_are_exported() -> None:
    from prometheus_client import generate_latest

    metrics = Metrics("worker")
    metrics.add_orchestrator_metrics()
    metrics.claimed.labels(queue="mail").inc()
    metrics.run_duration.labels(queue="mail").observe(0.3)
    metrics.recovered.inc()
    text = generate_latest(metrics.registry).decode()
    assert 'queuectl_jobs_claimed_total{queue="mail"} 1.0' in text
    assert "_created" not in text


def test_a_standby_exports_db_up_alone_until_it_leads(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", queue="mail")])
    leading = [False]
    metrics = Metrics("worker")
    metrics.add_queue_collector(backend, lease_ttl_s=10, when=lambda: leading[0])
    registry = metrics.registry
    assert registry.get_sample_value("queuectl_db_up") == 1.0
    pending = {"queue": "mail", "state": "pending"}
    assert registry.get_sample_value("queuectl_queue_jobs", pending) is None
    assert "queuectl_workers_alive" not in families(metrics)
    leading[0] = True
    assert registry.get_sample_value("queuectl_queue_jobs", pending) == 1.0
    assert registry.get_sample_value("queuectl_db_up") == 1.0


def test_a_standby_that_cannot_read_the_database_says_db_down(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "gone.db"
    with contextlib.closing(open_backend(f"sqlite:///{path}")) as b:
        b.migrate()
        metrics = Metrics("orchestrator")
        metrics.add_queue_collector(b, lease_ttl_s=10, when=lambda: False)
        with contextlib.closing(sqlite3.connect(path)) as raw:
            raw.execute("DROP TABLE queuectl_settings")  # the standby's one read now fails
            raw.commit()
        assert metrics.registry.get_sample_value("queuectl_db_up") == 0.0
