"""Value types of running work: outcomes, attempts, workers, schedules (served via models,
which imports this module lazily; this one imports queuectl.jobs, never models)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from queuectl.jobs import Job, OutcomeKind, iso


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
class Finish:
    """One finished attempt waiting to be written: the job as claimed, how it ended, and
    the backoff before its next try (None: no retry left, or none needed)."""

    job: Job
    outcome: Outcome
    retry_in: timedelta | None = None


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
    connections: int | None = None  # server connections its process holds; None: SQLite
    jobs_done: int | None = None  # attempts this slot finished since its process started
    rss_bytes: int | None = None  # its process's resident memory (not its jobs'); None: unknown

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
            "connections": self.connections,
            "jobs_done": self.jobs_done,
            "rss_bytes": self.rss_bytes,
        }


@dataclass(frozen=True, slots=True)
class RunningJob:
    """What a heartbeat reports of one job a worker runs: its lease and its output so far."""

    job: Job
    output: str | None = None  # None: unchanged since the last beat
    output_bytes: int = 0
    # `PID:START` of the job's session (queuectl/sessions.py), so that a recovery sweep on
    # this host can kill what is left of the run even after it shed its environment
    session: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerControl:
    """What a heartbeat tells the worker back."""

    stop: bool = False  # `worker stop` asked this process to drain
    cancel: frozenset[str] = frozenset()  # ids of running jobs a user cancelled
    lost: frozenset[str] = frozenset()  # ids whose lease moved on: stop running them


@dataclass(frozen=True, slots=True)
class QueueControl:
    """A queue's flow settings (`queue pause/set`): enforced by every claim, fleet-wide."""

    name: str
    paused: bool = False
    concurrency: int | None = None  # at most this many of its jobs processing at once
    rate_limit: int | None = None  # at most this many attempts started ...
    rate_period_s: float | None = None  # ... in any window of this many seconds

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate_limit is not None


@dataclass(frozen=True, slots=True)
class Dependency:
    """One edge of a job's dependencies, as `show` lists them."""

    side: str  # "after": the job waits for this one; "dependent": this one waits for the job
    id: str
    state: str


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
    tz: str = "UTC"  # the IANA zone the cron fields are read in

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "tz": self.tz,
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
class HistoryBucket:
    """The attempts that finished in one slice of time (the dashboard's history chart)."""

    start: int  # the slice's start, in Unix seconds
    succeeded: int
    finished: int  # every end: succeeded, failed, timed out, lost, cancelled, ...


def megabytes(n: int | None) -> str:
    """A resident-memory figure (`WorkerInfo.rss_bytes`) as people read it: `37 MiB`."""
    return "-" if n is None else f"{n / 2**20:.0f} MiB"
