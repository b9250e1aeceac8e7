"""Value types shared by every layer: jobs, attempts, workers, outcomes, stats."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    PENDING = "pending"  # waiting; a future run_at means scheduled
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"  # waiting out its backoff, claimable again at run_at
    DEAD = "dead"  # the DLQ
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})


class OutcomeKind(StrEnum):
    """How one attempt ended; recorded on the attempt as `outcome`."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # non-zero exit, including 127 (command not found)
    TIMED_OUT = "timed_out"
    LOST = "lost"  # the worker's lease expired: crash, SIGKILL, host gone
    CANCELLED = "cancelled"  # a user cancelled it while it ran
    INTERRUPTED = "interrupted"  # the worker was force-stopped; the job goes back to pending


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    exit_code: int | None = None
    error: str | None = None
    output: str = ""
    output_bytes: int = 0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SUCCEEDED


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a user asks for; None means 'use the configured default'."""

    command: str
    id: str | None = None
    queue: str = "default"
    priority: int = 0
    run_at: datetime | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    expires_at: datetime | None = None  # not run by then: dead-lettered instead


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    command: str
    state: JobState
    attempts: int
    max_retries: int
    created_at: datetime
    updated_at: datetime
    queue: str
    priority: int
    run_at: datetime
    timeout_s: float | None
    last_error: str | None
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    lease_token: int = 0
    run_count: int = 0  # runs ever started; numbers the attempts in `show` and `logs`
    cancel_requested: bool = False
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON shape (DESIGN.md §1): snake_case, RFC 3339 UTC times."""
        return {
            "id": self.id,
            "command": self.command,
            "state": str(self.state),
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "queue": self.queue,
            "priority": self.priority,
            "run_at": iso(self.run_at),
            "timeout": self.timeout_s,
            "last_error": self.last_error,
            "exit_code": self.exit_code,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "worker_id": self.worker_id,
            "expires_at": iso(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt of a job, numbered from 1."""

    job_id: str
    attempt: int
    worker_id: str | None
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    outcome: str | None  # None while it runs
    error: str | None
    output: str
    output_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "exit_code": self.exit_code,
            "outcome": self.outcome or "running",
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: tuple[str, ...]  # empty: every queue
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    stopping: bool = False
    current_jobs: tuple[str, ...] = ()
    heartbeat_age_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues) or ["*"],
            "state": "stopping" if self.stopping else ("busy" if self.current_jobs else "idle"),
            "current_jobs": list(self.current_jobs),
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "heartbeat_age_s": None
            if self.heartbeat_age_s is None
            else round(self.heartbeat_age_s, 3),
        }


@dataclass(frozen=True, slots=True)
class RunningJob:
    """What a heartbeat reports of one job a worker runs: its lease and its output so far."""

    job: Job
    output: str | None = None  # None: unchanged since the last beat
    output_bytes: int = 0


@dataclass(frozen=True, slots=True)
class WorkerControl:
    """What a heartbeat tells the worker back."""

    stop: bool = False  # `worker stop` asked this process to drain
    cancel: frozenset[str] = frozenset()  # ids of running jobs a user cancelled
    lost: frozenset[str] = frozenset()  # ids whose lease moved on: stop running them


@dataclass(frozen=True, slots=True)
class QueueStats:
    by_state: dict[str, int]
    by_queue: dict[str, dict[str, int]]
    workers: int
    busy_workers: int

    @property
    def dlq(self) -> int:
        return self.by_state.get(JobState.DEAD, 0)

    def to_json(self) -> dict[str, Any]:
        states = {s.value: self.by_state.get(s, 0) for s in JobState}
        return {
            "jobs": states,
            "total": sum(states.values()),
            "queues": self.by_queue,
            "workers": self.workers,
            "busy_workers": self.busy_workers,
            "dlq": self.dlq,
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring job: `command` enqueued once per slot of the `cron` expression."""

    name: str
    cron: str
    command: str
    queue: str = "default"
    priority: int = 0
    timeout_s: float | None = None
    max_retries: int | None = None
    paused: bool = False
    created_at: datetime | None = None
    last_slot: datetime | None = None
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "command": self.command,
            "queue": self.queue,
            "priority": self.priority,
            "timeout": self.timeout_s,
            "max_retries": self.max_retries,
            "paused": self.paused,
            "created_at": iso(self.created_at),
            "last_slot": iso(self.last_slot),
            "fired": self.fired,
        }


@dataclass(frozen=True, slots=True)
class RunSample:
    """One finished attempt, as `queuectl stats` sees it."""

    queue: str
    outcome: str
    run_s: float
    wait_s: float
    ago_s: float = 0.0  # how long ago it finished


@dataclass(frozen=True, slots=True)
class Policy:
    """Queue policy from the database's settings table, shared by every worker."""

    max_retries: int = 3
    backoff_base: float = 2.0
    backoff_max_s: float = 3600.0
    backoff_jitter: float = 0.0
    job_timeout_s: float | None = None
    output_limit: int = 65536
    retention_completed_s: float | None = 7 * 86400.0
    retention_dead_s: float | None = 30 * 86400.0

    def replace(self, **changes: Any) -> Policy:
        return dataclasses.replace(self, **changes)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, millisecond precision."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
