"""Dialect-free pieces both backends share: row mapping, finish parameters, job defaults, checks."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from queuectl import errors, ids, models, retry
from queuectl.backends.base import JobRow

RUN_COLUMNS = (
    "job_id, attempt, worker_id, started_at, finished_at, exit_code, outcome, error, "
    "output, output_bytes"
)
LOST_ERROR = "worker lost"
# a worker silent for this many lease periods is dropped from the workers table; it left
# `worker list` after one period, and its jobs were recovered when their leases expired
FORGET_AFTER_LEASES = 3
PRUNE_BATCH = 1000  # jobs deleted per transaction by retention sweeps

ToTime = Callable[[Any], datetime]


def job_from_row(row: Mapping[str, Any], ts: ToTime) -> models.Job:
    def opt(value: Any) -> datetime | None:
        return None if value is None else ts(value)

    return models.Job(
        id=row["id"],
        command=row["command"],
        state=models.JobState(row["state"]),
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
        queue=row["queue"],
        priority=row["priority"],
        run_at=ts(row["run_at"]),
        timeout_s=row["timeout_s"],
        last_error=row["last_error"],
        exit_code=row["exit_code"],
        started_at=opt(row["started_at"]),
        finished_at=opt(row["finished_at"]),
        worker_id=row["worker_id"],
        lease_token=row["lease_token"],
        run_count=row["run_count"],
        expires_at=opt(row["expires_at"]),
        cancel_requested=bool(row["cancel_requested"]),
        unique_key=row["unique_key"],
    )


def queue_from_row(row: Mapping[str, Any]) -> models.QueueControl:
    return models.QueueControl(
        name=row["name"],
        paused=bool(row["paused"]),
        concurrency=row["concurrency"],
        rate_limit=row["rate_limit"],
        rate_period_s=row["rate_period_s"],
    )


def run_from_row(row: Mapping[str, Any], ts: ToTime) -> models.Run:
    return models.Run(
        job_id=row["job_id"],
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        started_at=ts(row["started_at"]),
        finished_at=None if row["finished_at"] is None else ts(row["finished_at"]),
        exit_code=row["exit_code"],
        outcome=row["outcome"],
        error=row["error"],
        output=row["output"],
        output_bytes=row["output_bytes"],
    )


def worker_from_row(
    row: Mapping[str, Any], ts: ToTime, strings: Callable[[Any], tuple[str, ...]]
) -> models.WorkerInfo:
    return models.WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        queues=strings(row["queues"]),
        started_at=ts(row["started_at"]),
        heartbeat_at=ts(row["heartbeat_at"]),
        stopping=bool(row["stop_requested"]),
        current_jobs=strings(row["current_jobs"]),
        heartbeat_age_s=max(0.0, float(row["age_s"])),
        connections=row["connections"],
        jobs_done=row["jobs_done"],
        rss_bytes=row["rss_bytes"],
    )


def sample_from_row(row: Mapping[str, Any]) -> models.RunSample:
    return models.RunSample(
        queue=row["queue"],
        outcome=row["outcome"] or "unknown",
        run_s=max(0.0, float(row["run_s"] or 0.0)),
        wait_s=max(0.0, float(row["wait_s"] or 0.0)),
        ago_s=max(0.0, float(row["ago_s"] or 0.0)),
    )


def finish_params(
    job: models.Job, outcome: models.Outcome, retry_in: timedelta | None
) -> dict[str, Any]:
    state = retry.next_state(outcome, retry_in)
    return {
        "id": job.id,
        "token": job.lease_token,
        "state": str(state),
        # only a FAILED job waits; INTERRUPTED goes back to pending due at once
        "retry_s": retry_in.total_seconds()
        if retry_in and state is models.JobState.FAILED
        else 0.0,
        "exit_code": outcome.exit_code,
        "error": outcome.error,
        "outcome": str(outcome.kind),
        "output": outcome.output,
        "output_bytes": outcome.output_bytes,
    }


def finish_columns(items: Sequence[models.Finish]) -> dict[str, list[Any]]:
    """finish_params of many jobs as column arrays (Postgres unnest), sorted by id: two
    batches touching the same rows lock them in the same order."""
    rows = sorted((finish_params(f.job, f.outcome, f.retry_in) for f in items), key=_by_id)
    due = {f.job.id: f.job.run_at for f in items}
    return {
        "ids": [r["id"] for r in rows],
        "tokens": [r["token"] for r in rows],
        "states": [r["state"] for r in rows],
        "retry_s": [r["retry_s"] for r in rows],
        "exit_codes": [r["exit_code"] for r in rows],
        "errors": [r["error"] for r in rows],
        "outcomes": [r["outcome"] for r in rows],
        "outputs": [r["output"] for r in rows],
        "output_bytes": [r["output_bytes"] for r in rows],
        # the job's run_at when it was claimed (the queue wait in stats), for the run row
        "due_ats": [due[r["id"]] for r in rows],
    }


def _by_id(row: dict[str, Any]) -> str:
    return str(row["id"])


def lost_outcome(job: models.Job) -> models.Outcome:
    if job.cancel_requested:
        return models.Outcome(models.OutcomeKind.CANCELLED, error="cancelled (worker lost)")
    return models.Outcome(models.OutcomeKind.LOST, error=LOST_ERROR)


def recovery_plan(
    job: models.Job, policy: models.Policy
) -> tuple[models.Outcome, timedelta | None]:
    outcome = lost_outcome(job)
    return outcome, retry.retry_in(job, outcome, policy)


class Gate:
    """Counts this process's open database calls; `hold()` waits until none is open and lets
    none start until it ends. A process about to be suspended (Ctrl-Z) holds it, so that it
    never sleeps inside a transaction whose locks would stop everybody else."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = 0
        self._held = False

    @contextlib.contextmanager
    def passage(self) -> Iterator[None]:
        with self._cond:
            while self._held:
                self._cond.wait()
            self._open += 1
        try:
            yield
        finally:
            with self._cond:
                self._open -= 1
                if not self._open:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._cond:
            while self._held:
                self._cond.wait()
            self._held = True
            while self._open:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()


def check_schema_version(found: int, known: int) -> None:
    """A database migrated by a newer queuectl may mean anything to this one: refuse it."""
    if found > known:
        raise errors.SchemaTooNew(
            f"the database schema is version {found}, newer than this queuectl knows"
            f" ({known}): upgrade queuectl"
        )


def check_ids(specs: Sequence[models.JobSpec]) -> list[str]:
    """Fill in generated ids; reject a duplicate inside one batch before touching the db."""
    fresh = iter(ids.new_ids(sum(1 for spec in specs if not spec.id)))
    out = [spec.id or next(fresh) for spec in specs]
    if len(set(out)) < len(out):
        seen: set[str] = set()
        for job_id in out:
            if job_id in seen:
                raise errors.DuplicateJob(f"job id {job_id!r} appears twice in the input")
            seen.add(job_id)
    return out


def job_rows(
    specs: Sequence[models.JobSpec], job_ids: Sequence[str], policy: models.Policy, now: datetime
) -> list[JobRow]:
    """The row each spec becomes: unset run_at is `now`; unset max_retries and timeout come
    from the policy (a timeout of 0 is 'no limit', stored as NULL). The one place a job's
    defaults are filled: enqueue, enqueue_bulk and fire_schedule on both dialects, so the
    SQL only ever receives resolved values."""
    retries, timeout = policy.max_retries, policy.job_timeout_s
    return [
        (
            job_id,
            spec.command,
            spec.queue,
            spec.priority,
            spec.run_at or now,
            timeout if spec.timeout_s is None else (spec.timeout_s or None),
            retries if spec.max_retries is None else spec.max_retries,
            spec.expires_at,
        )
        for job_id, spec in zip(job_ids, specs, strict=True)
    ]


def unique_violation(table: str | None, key: str | None) -> errors.QueuectlError:
    """What a taken unique key means, whichever dialect's driver reported it (each connector's
    error translation calls this, and so does add_schedule's ON CONFLICT): a job id taken ->
    DuplicateJob, a schedule name taken -> DuplicateSchedule. `key` None: the driver did not
    say which value (SQLite's messages name only the column)."""
    if table == "queuectl_schedules":
        name = "of that name" if key is None else f"named {key!r}"
        return errors.DuplicateSchedule(f"a schedule {name} already exists")
    if table == "queuectl_jobs":
        return errors.DuplicateJob(
            "duplicate job id" if key is None else f"duplicate job id: {key!r} already exists"
        )
    return errors.BackendError(f"unique constraint failed: {table}")


def check_transition(job: models.Job, *, action: str, allowed: frozenset[models.JobState]) -> None:
    if job.state not in allowed:
        wanted = "/".join(sorted(allowed))
        raise errors.InvalidTransition(
            f"cannot {action} job {job.id!r}: it is {job.state} (only {wanted} jobs)"
        )


# the states `queuectl retry` restarts (not retry.RETRYABLE, the outcomes a retry can help)
RETRYABLE_STATES = frozenset(
    {models.JobState.FAILED, models.JobState.DEAD, models.JobState.CANCELLED}
)
CANCELLABLE = frozenset(
    {
        models.JobState.PENDING,
        models.JobState.FAILED,
        models.JobState.PROCESSING,
        models.JobState.BLOCKED,
    }
)


def stats_from_counts(
    rows: Sequence[Mapping[str, Any]], workers: Mapping[str, Any]
) -> models.QueueStats:
    by_state: dict[str, int] = {}
    by_queue: dict[str, dict[str, int]] = {}
    for row in rows:
        state, n = str(row["state"]), int(row["n"])
        by_state[state] = by_state.get(state, 0) + n
        by_queue.setdefault(row["queue"], {})[state] = n
    return models.QueueStats(
        by_state=by_state,
        by_queue={q: by_queue[q] for q in sorted(by_queue)},
        workers=int(workers["alive"] or 0),
        busy_workers=int(workers["busy"] or 0),
        lost_workers=int(workers["lost"] or 0),
    )


def schedule_from_row(row: Mapping[str, Any], ts: ToTime) -> models.Schedule:
    return models.Schedule(
        name=row["name"],
        cron=row["cron"],
        command=row["command"],
        queue=row["queue"],
        priority=row["priority"],
        timeout_s=row["timeout_s"],
        max_retries=row["max_retries"],
        paused=bool(row["paused"]),
        created_at=ts(row["created_at"]),
        last_slot=None if row["last_slot"] is None else ts(row["last_slot"]),
        fired=row["fired"],
        tz=row["tz"],
    )


def cron_job_id(name: str, slot: datetime) -> str:
    """One id per schedule and slot: the unique key that makes each slot fire once."""
    return f"{name}:{slot.strftime('%Y%m%dT%H%MZ')}"


def schedule_params(schedule: models.Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "command": schedule.command,
        "queue": schedule.queue,
        "priority": schedule.priority,
        "timeout_s": schedule.timeout_s,
        "max_retries": schedule.max_retries,
        "tz": schedule.tz,
    }
