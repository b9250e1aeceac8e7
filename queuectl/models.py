"""Value types shared by every layer: jobs, specs, stats, policy; the rest lazily, from records."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # what __getattr__ at the bottom hands out, spelled out for the type checker
    from queuectl import records

    Outcome = records.Outcome
    Finish = records.Finish
    Run = records.Run
    WorkerInfo = records.WorkerInfo
    RunningJob = records.RunningJob
    WorkerControl = records.WorkerControl
    Schedule = records.Schedule
    RunSample = records.RunSample


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
    REFUSED = "refused"  # not run: outside allowed-commands; the job goes straight to dead


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
    """A job as stored: its spec with the defaults filled in, its state, its latest attempt."""

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
class QueueStats:
    """Job counts per state and per queue, and live workers: `status`, dashboard, metrics."""

    by_state: dict[str, int]
    by_queue: dict[str, dict[str, int]]
    workers: int
    busy_workers: int
    # slots whose heartbeat stopped without a goodbye (killed, host lost), until they are
    # forgotten a few leases later: what a "worker down" alert can rely on under DNS discovery
    lost_workers: int = 0

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
            "lost_workers": self.lost_workers,
            "dlq": self.dlq,
        }


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
    # command patterns workers may run (queuectl/allowlist.py); None: any command, and
    # () (a stored list that no longer parses): none at all
    allowed_commands: tuple[str, ...] | None = None

    def replace(self, **changes: Any) -> Policy:
        return dataclasses.replace(self, **changes)


# Built on first use (PEP 562), from queuectl/records.py: each frozen dataclass costs about a
# millisecond to build, and the quick CLI calls (enqueue, status, list) need none of these.
_RECORDS = frozenset(
    [
        "Outcome",
        "Finish",
        "Run",
        "WorkerInfo",
        "RunningJob",
        "WorkerControl",
        "Schedule",
        "RunSample",
    ]
)


def __getattr__(name: str) -> Any:
    if name not in _RECORDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from queuectl import records

    value = getattr(records, name)
    globals()[name] = value  # later lookups find it without calling here
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, millisecond precision."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
