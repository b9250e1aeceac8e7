"""A Job to build on in unit tests that need one without a database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from queuectl import models

T0 = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


def make_job(**changes: Any) -> models.Job:
    job = models.Job(
        id="job-1",
        command="true",
        state=models.JobState.PROCESSING,
        attempts=1,
        max_retries=3,
        created_at=T0,
        updated_at=T0,
        queue="default",
        priority=0,
        run_at=T0,
        timeout_s=None,
        last_error=None,
        exit_code=None,
        started_at=T0,
        finished_at=None,
        worker_id="w-1",
        lease_token=1,
    )
    return dataclasses.replace(job, **changes)
