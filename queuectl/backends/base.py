"""The storage contract by role, and Backend, their union: what SQLite and Postgres both pass.

pgqueuer's `ports/repository.py` is the model: a caller that only enqueues and reads jobs
can ask for a JobStore, the orchestrator's leader election for a LeaderStore, and a test
fake implements only the role it stands in for. Every method is one transaction. Times
compared across processes use the database clock (Postgres now(); SQLite is single-host, so
the Python clock). backends/store.py implements the one-query methods once for both
dialects; postgres.py and sqlite.py add what really differs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from queuectl import models

# Called by recover_expired for each expired lease with (job, the host it ran on, its session
# tag): True to recover the job now (the callable has killed what is left of the run on this
# host), False to leave it for a later sweep (its owner may be alive; see recovery.py).
Reap = Callable[[models.Job, str | None, str | None], bool]
# one job as enqueue_bulk inserted it, every default resolved:
# id, command, queue, priority, run_at, timeout_s (None: no limit), max_retries, expires_at
JobRow = tuple[str, str, str, int, datetime, float | None, int, datetime | None]
JOB_ROW = ("id", "command", "queue", "priority", "run_at", "timeout_s", "max_retries", "expires_at")
# argument types named so that signatures fit one line
Names = Sequence[str]
if TYPE_CHECKING:  # at run time, models.WorkerInfo would import records (a CLI call's cost)
    Workers = Sequence[models.WorkerInfo]
    Running = Sequence[models.RunningJob]
OnNotify = Callable[[str, str], None]  # (channel, payload)
OnError = Callable[[str], None] | None


class Unset:
    """The type of UNSET: a keyword not given (None means "remove the limit")."""

    __slots__ = ()


UNSET = Unset()


class Enqueued:
    """What enqueue_bulk inserted. Every row is a pending job with 0 attempts, unless `jobs`
    says otherwise."""

    # a plain class: a NamedTuple or dataclass costs every CLI call compiling at import
    __slots__ = ("jobs", "now", "rows")

    def __init__(
        self, now: datetime, rows: list[JobRow], jobs: list[models.Job] | None = None
    ) -> None:
        self.now = now  # the transaction's time: each job's created_at and updated_at
        self.rows = rows  # in input order
        # with dependencies or unique keys (flow.py): every input's job as stored, in input
        # order (blocked, cancelled, or an existing job whose unique key it named: conflict)
        self.jobs = jobs

    @property
    def count(self) -> int:
        """How many jobs were inserted."""
        return len(self.rows)


class JobStore(Protocol):
    """Jobs as users see them: enqueue, read, cancel, retry, purge."""

    def enqueue(self, specs: Sequence[models.JobSpec]) -> list[models.Job]:
        """Insert every spec in one transaction (all or nothing). Unset max_retries and
        timeout are snapshotted from the settings table. DuplicateJob on a taken id."""

    def enqueue_bulk(self, specs: Sequence[models.JobSpec]) -> Enqueued:
        """`enqueue` for many jobs (same checks, one transaction, all or nothing) that
        returns the rows it inserted instead of reading every job back."""

    def get_job(self, job_id: str) -> models.Job:
        """JobNotFound when absent."""

    def list_jobs(
        self,
        *,
        state: models.JobState | None = None,
        queue: str | None = None,
        limit: int = 100,
        search: str | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> list[models.Job]:
        """Newest first. `search` matches an id exactly or a substring of the command;
        `before` (a job id) continues a listing after that job; `after` (a job id) gives
        the `limit` jobs just newer than that one (the page above it), still newest first."""

    def runs(self, job_id: str) -> list[models.Run]:
        """Every attempt of a job, oldest first (JobNotFound when the job is absent)."""

    def cancel_many(self, job_ids: Sequence[str]) -> list[models.Job]:
        """`cancel` for several jobs in one transaction, all or nothing."""

    def cancel(self, job_id: str) -> models.Job:
        """pending/failed -> cancelled at once; processing -> cancel requested (its worker
        kills it at the next heartbeat); InvalidTransition for finished jobs."""

    def retry(self, job_ids: Sequence[str], *, dead_only: bool = False) -> list[models.Job]:
        """failed/dead/cancelled -> pending now; dead and cancelled restart at attempts 0.
        All or nothing: one bad id and nothing changes."""

    def retry_all_dead(self) -> int: ...

    def purge_dead(self, *, queue: str | None = None, older_than_s: float | None = None) -> int:
        """Delete dead jobs (of one queue, dead longer than older_than_s); how many."""

    def count_dead(self, *, queue: str | None = None, older_than_s: float | None = None) -> int:
        """How many dead jobs purge_dead would delete now."""


class WorkerStore(Protocol):
    """What workers do with jobs: claim, finish, renew, recover; and the workers table."""

    def claim(
        self,
        slot_ids: Sequence[str],
        queues: Sequence[str],
        *,
        host: str,
        lease_ttl_s: float,
    ) -> list[models.Job]:
        """Atomically move up to len(slot_ids) due jobs to PROCESSING under fresh leases; the
        i-th job goes to slot_ids[i]. An empty `queues` means every queue."""

    def finish(self, job: models.Job, outcome: models.Outcome, retry_in: timedelta | None) -> bool:
        """SUCCEEDED -> completed; CANCELLED -> cancelled; INTERRUPTED -> pending now; else
        failed until now+retry_in, or dead when retry_in is None; but a job whose cancel was
        requested while it ran ends cancelled unless it succeeded, and an INTERRUPTED attempt
        does not count against max_retries. False (and nothing written) when the job's lease
        token moved on."""

    def finish_many(self, items: Sequence[models.Finish]) -> list[bool]:
        """`finish` for many jobs in one transaction; per item, whether it applied."""

    def heartbeat(
        self,
        workers: Sequence[models.WorkerInfo],
        running: Sequence[models.RunningJob],
        *,
        lease_ttl_s: float,
    ) -> models.WorkerControl:
        """Upsert the workers' rows, renew the leases of their jobs, store output so far."""

    def sweep_turn(self, holder: str, *, every_s: float) -> tuple[bool, str | None]:
        """(whether `holder` sweeps now, the settings' version). Postgres: the fleet takes
        turns, one sweep per `every_s` whatever its size; SQLite: always this process's turn.
        A version of None means unknown: re-read the policy."""

    def recover_expired(self, reap: Reap, *, lease_ttl_s: float) -> list[models.Job]:
        """Fail (retry or DLQ) PROCESSING jobs whose lease expired, as 'worker lost', each one
        only when `reap(job, host, session)` says so; forget workers silent for a few leases.
        `reap` runs outside any transaction (it may scan /proc and kill processes): the
        candidates are read first, and the chosen ones are then recovered in one write
        transaction only if each is still processing under the same lease token and still
        expired; a finish or a renewal that came in meanwhile wins."""

    def deregister_workers(self, worker_ids: Sequence[str]) -> None: ...

    def list_workers(self, *, lease_ttl_s: float) -> list[models.WorkerInfo]:
        """Workers whose last heartbeat is younger than the lease."""

    def request_stop(
        self, *, lease_ttl_s: float, worker_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Ask every live worker (or the named ones) to drain; returns their ids."""

    def stop_requested_within(self, seconds: float) -> bool:
        """Whether a whole-fleet request_stop happened in the last `seconds`."""

    def has_work(self, queues: Sequence[str]) -> bool:
        """Whether jobs in these queues are due now or waiting out a retry backoff."""

    def work_outlook(self, queues: Sequence[str]) -> tuple[int, datetime | None]:
        """What has_work sees: how many such jobs, and the earliest one's run_at."""


class SettingsStore(Protocol):
    """The settings table: the queue policy every worker shares."""

    def get_settings(self) -> dict[str, str]: ...

    def set_setting(self, key: str, value: str) -> None: ...

    def policy(self) -> models.Policy: ...


class LeaderStore(Protocol):
    """Named leases: at most one holder each (the orchestrator's election)."""

    def acquire_leadership(self, name: str, holder: str, *, ttl_s: float) -> bool:
        """Take the named lease when free or expired, or renew it when `holder` has it."""

    def release_leadership(self, name: str, holder: str) -> None: ...

    def leader(self, name: str) -> str | None:
        """The holder of an unexpired lease, if any."""


class ScheduleStore(Protocol):
    """Recurring jobs (cron schedules) and firing their slots."""

    def add_schedule(self, schedule: models.Schedule) -> models.Schedule:
        """DuplicateSchedule when the name is taken."""

    def list_schedules(self) -> list[models.Schedule]: ...

    def remove_schedule(self, name: str) -> None:
        """NotFound when absent; jobs it already enqueued stay."""

    def pause_schedule(
        self, name: str, *, paused: bool, skip_to: datetime | None = None
    ) -> models.Schedule:
        """Pause or resume; `skip_to` marks slots up to it as done (no backlog on resume)."""

    def fire_schedule(self, name: str, slot: datetime) -> bool:
        """Enqueue the schedule's job for `slot` unless that slot (or a later one) already
        fired or the schedule is paused; True when a job was enqueued. Exactly once per slot,
        however many orchestrators call it."""


class InsightsStore(Protocol):
    """Read models and sweeps over the whole queue: counts, samples, ages, retention."""

    def stats(self, *, lease_ttl_s: float) -> models.QueueStats: ...

    def run_samples(self, *, since_s: float, queue: str | None = None) -> list[models.RunSample]:
        """Attempts that finished in the last `since_s` seconds (in one queue, or all)."""

    def run_history(self, *, since_s: float, width_s: int) -> list[models.HistoryBucket]:
        """Attempts that finished in the last `since_s` seconds, counted per slice of
        `width_s` seconds aligned to the Unix epoch (so to UTC midnight when it divides a
        day), oldest first; slices with none are left out. Counted in the database: a
        week of attempts is not read into memory."""

    def expire_jobs(self) -> int:
        """Pending jobs that never started, past their expires_at -> dead ('expired before it
        ran'); a job that ran once is past its TTL's reach, even waiting out a backoff."""

    def prune_finished(self, state: models.JobState, *, older_than_s: float) -> int:
        """Delete jobs in a final state that finished longer ago than `older_than_s`."""

    def notify_due(self, *, window_s: float) -> int:
        """Wake workers for jobs that fell due in the last `window_s` (Postgres NOTIFY)."""

    def oldest_due(self) -> dict[str, float]:
        """Per queue: seconds the oldest due, unclaimed job has waited."""


class Waiter(Protocol):
    """What `wait` waits on between looks at the jobs."""

    def __enter__(self) -> Waiter: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def wait(self, timeout_s: float) -> bool:
        """Until some awaited job may have ended (True) or `timeout_s` passed (False)."""


class FlowStore(Protocol):
    """Flow control and workflows (DESIGN §8): queue pause and limits, dependencies, waits."""

    def queue_controls(self) -> list[models.QueueControl]:
        """Every queue with settings (paused or limited), by name."""

    def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        concurrency: int | Unset | None = ...,
        rate: tuple[int, float] | Unset | None = ...,
    ) -> models.QueueControl:
        """Change a queue's settings (None: no limit; not given: unchanged); a queue left
        with none has no row."""

    def refresh_flow(self) -> list[models.QueueControl]:
        """Re-read which queues are limited (the claim's second step takes their jobs)."""

    def running_by_queue(self) -> dict[str, int]:
        """Jobs processing now, per queue."""

    def dependencies(self, job_id: str) -> list[models.Dependency]:
        """A job's dependencies and dependents with their states; JobNotFound."""

    def watch(self, job_ids: Sequence[str]) -> None:
        """Flag unfinished jobs as awaited, so that their end wakes `done_listener`s."""

    def done_listener(self) -> AbstractContextManager[Waiter]:
        """Something to wait on for awaited jobs' ends (Postgres: LISTEN; SQLite: commits)."""

    def settle_blocked(self) -> int:
        """The sweep behind the prompt paths: unblock blocked jobs whose dependencies all
        completed (or were purged), cancel those with one dead or cancelled; how many moved."""


class Backend(
    JobStore,
    WorkerStore,
    SettingsStore,
    LeaderStore,
    ScheduleStore,
    InsightsStore,
    FlowStore,
    Protocol,
):
    """Every role, plus the connection's own life: schema, closing, suspending, wake-ups."""

    url: str
    notifies: bool  # LISTEN/NOTIFY wake-ups (Postgres); otherwise workers poll
    # every writer shares one lock on this host (SQLite): when this process cannot write,
    # nobody can, so nobody can recover its jobs meanwhile either
    single_host: bool

    def migrate(self) -> int:
        """Create or upgrade the schema; idempotent. Returns the schema version. SchemaTooNew
        when the database was migrated by a newer queuectl."""

    def close(self) -> None: ...

    def hold_writes(self) -> AbstractContextManager[None]:
        """While inside, no transaction of this process is open and none starts (it waits):
        what a process holds before it lets itself be suspended."""

    def listen(
        self,
        on_notify: Callable[[str, str], None],
        stop: threading.Event,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> bool:
        """Block delivering notifications (channel, payload) until `stop`; False at once
        when the backend has none (SQLite)."""
