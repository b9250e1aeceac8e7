"""Value types shared by every layer: jobs, specs, stats, policy; the rest lazily, from records.

The job itself (Job, JobState, OutcomeKind, iso) is defined in queuectl/jobs.py, which
records.py imports too: models imports records (lazily, below), never the other way round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from queuectl.jobs import (
    TERMINAL_STATES,
    UNFINISHED_STATES,
    Job,
    JobState,
    OutcomeKind,
    iso,
    utcnow,
)

__all__ = [
    "TERMINAL_STATES",
    "UNFINISHED_STATES",
    "Job",
    "JobSpec",
    "JobState",
    "OutcomeKind",
    "Policy",
    "QueueStats",
    "iso",
    "utcnow",
]

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
    QueueControl = records.QueueControl
    Dependency = records.Dependency
    RunSample = records.RunSample
    HistoryBucket = records.HistoryBucket


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
    # flow control (DESIGN §8): run after these jobs completed; at most one unfinished job
    # per unique key (and, with unique_for_s, none finished within that many seconds)
    after: tuple[str, ...] = ()
    unique_key: str | None = None
    unique_for_s: float | None = None


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
        "HistoryBucket",
        "QueueControl",
        "Dependency",
    ]
)


def __getattr__(name: str) -> Any:
    if name not in _RECORDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from queuectl import records

    value = getattr(records, name)
    globals()[name] = value  # later lookups find it without calling here
    return value
