"""A job as stored, its states and how an attempt ends: the pieces models and records share.

models and records both import this module, and records never imports models (models
imports records lazily), so the value types have no import cycle; `models` re-exports every
name here, and other code keeps spelling them `models.Job`, `models.OutcomeKind`, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    BLOCKED = "blocked"  # waiting for its dependencies (`enqueue --after`) to complete


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})
# what a unique key counts (DESIGN §8): every state a job can still run from
UNFINISHED_STATES = frozenset(
    {JobState.BLOCKED, JobState.PENDING, JobState.PROCESSING, JobState.FAILED}
)


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
    unique_key: str | None = None
    # not stored: True when an enqueue found an unfinished job with the same unique key and
    # returned it instead of inserting one (Oban's `conflict?`)
    conflict: bool = field(default=False, compare=False)

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
            "unique_key": self.unique_key,
        }


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, millisecond precision."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
