"""Backend.enqueue_bulk on SQLite and on PostgreSQL: every field as stored, all or nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from queuectl import errors, models
from queuectl.backends.base import Backend
from queuectl.cli.enqueue import job_lines

T0 = datetime(2031, 5, 17, 8, 30, 12, 345678, tzinfo=UTC)
COMMANDS = [
    "true",
    "echo 'héllo — wörld ✓ 日本語 🚀'",
    'printf "%s\\n" "a\tb" \\\\ "quoted \\"x\\""',
    "line one\nline two\r\nend",
    "x" * 5000,
]


def varied_specs(count: int) -> list[models.JobSpec]:
    """Every optional field set and unset, in turn, across `count` jobs."""
    specs = []
    for i in range(count):
        specs.append(
            models.JobSpec(
                command=f"{COMMANDS[i % len(COMMANDS)]} #{i}",
                id=f"job.{i}:x-y_z" if i % 3 == 0 else None,
                queue=("default", "mail", "q.1:a-b_c")[i % 3],
                priority=(0, 5, -(2**31 - 1), 2**31 - 1)[i % 4],
                run_at=(None, T0 + timedelta(microseconds=i), T0 - timedelta(days=400))[i % 3],
                timeout_s=(None, 0.0, 1.5, 30.0, 0.001)[i % 5],
                max_retries=(None, 0, 1000)[i % 3],
                expires_at=None if i % 4 else T0 + timedelta(days=1, microseconds=i),
            )
        )
    return specs


def test_bulk_enqueue_stores_every_field_and_prints_what_it_stored(backend: Backend) -> None:
    backend.set_setting("max-retries", "7")
    backend.set_setting("job-timeout", "90")
    specs = varied_specs(5000)
    batch = backend.enqueue_bulk(specs)
    assert [row[0] for row in batch.rows][::3] == [f"job.{i}:x-y_z" for i in range(0, 5000, 3)]
    stored = {job.id: job for job in backend.list_jobs(limit=10_000)}
    assert len(stored) == 5000
    lines = list(job_lines(batch))
    for spec, row, line in zip(specs, batch.rows, lines, strict=True):
        job = stored[row[0]]
        assert (job.command, job.queue, job.priority) == (spec.command, spec.queue, spec.priority)
        assert job.state is models.JobState.PENDING and job.attempts == 0
        assert job.created_at == job.updated_at == batch.now
        assert job.run_at == (spec.run_at or batch.now)
        assert job.max_retries == (7 if spec.max_retries is None else spec.max_retries)
        assert job.timeout_s == (90.0 if spec.timeout_s is None else spec.timeout_s or None)
        assert job.expires_at == spec.expires_at
        # the CLI's fast printer writes exactly what `show --json` prints of the stored job
        assert line == json.dumps(job.to_json(), ensure_ascii=False)


def test_bulk_enqueue_keeps_input_order_for_fifo(backend: Backend) -> None:
    batch = backend.enqueue_bulk([models.JobSpec(command=f"echo {i}") for i in range(2000)])
    newest_first = [job.id for job in backend.list_jobs(limit=5000)]
    assert newest_first == [row[0] for row in reversed(batch.rows)]


def test_bulk_enqueue_of_a_taken_id_inserts_nothing(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", id="taken")])
    specs = [models.JobSpec(command=f"echo {i}") for i in range(3000)]
    with pytest.raises(errors.DuplicateJob, match="'taken' already exists"):
        backend.enqueue_bulk([*specs, models.JobSpec(command="true", id="taken")])
    twice = models.JobSpec(command="a", id="twice")
    with pytest.raises(errors.DuplicateJob, match="'twice' appears twice"):
        backend.enqueue_bulk([twice, *specs, twice])
    assert [job.id for job in backend.list_jobs(limit=10_000)] == ["taken"]


def test_bulk_and_single_enqueue_resolve_defaults_alike(backend: Backend) -> None:
    backend.set_setting("max-retries", "2")
    spec = models.JobSpec(command="true", queue="q", timeout_s=0.0)
    (single,) = backend.enqueue([spec])
    batch = backend.enqueue_bulk([spec])
    bulk = backend.get_job(batch.rows[0][0])
    assert (bulk.max_retries, bulk.timeout_s, bulk.queue) == (2, None, "q")
    assert (single.max_retries, single.timeout_s, single.queue) == (2, None, "q")
