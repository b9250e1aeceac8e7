"""An in-memory model of a job's life (DESIGN.md §2), what the stateful backend test expects."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from queuectl.models import JobState, OutcomeKind

S = JobState
RETRYABLE = frozenset({S.FAILED, S.DEAD, S.CANCELLED})
CANCELLABLE = frozenset({S.PENDING, S.FAILED, S.PROCESSING})
CLAIMABLE = frozenset({S.PENDING, S.FAILED})
LOST_ERROR = "worker lost"


class Rejected(Exception):
    """The operation must fail as a whole; `kind` names the queuectl error expected."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "not_found" | "invalid_transition" | "duplicate"


@dataclass
class ModelRun:
    """One attempt as `Backend.runs` must report it."""

    attempt: int
    worker_id: str
    outcome: str | None = None  # None while it runs
    exit_code: int | None = None
    error: str | None = None
    output: str = ""
    output_bytes: int = 0


@dataclass
class ModelJob:
    id: str
    seq: int  # insertion order: the FIFO tie-break of the claim order
    queue: str
    priority: int
    max_retries: int
    # run_at is the database's clock, so an operation only knows a window for it: [lo, hi]
    # (its start and end, plus any delay). The test pins the exact value from the database
    # after checking it lies in the window; None means pinned.
    run_at: float
    run_at_window: tuple[float, float] | None = None
    state: JobState = S.PENDING
    attempts: int = 0  # of this "life": `dlq retry` and a retry of a cancelled job reset it
    run_count: int = 0  # every claim ever
    token: int = 0  # lease_token: one more per claim
    worker_id: str | None = None
    cancel_requested: bool = False
    last_error: str | None = None
    exit_code: int | None = None
    # while processing: the latest moment the lease can run out (math.inf: a long lease that
    # cannot expire during a test)
    lease_deadline: float = math.inf
    runs: list[ModelRun] = field(default_factory=list)

    def set_run_at(self, lo: float, hi: float) -> None:
        self.run_at = lo
        self.run_at_window = (lo, hi)


@dataclass
class Finish:
    """One finish request: the outcome a worker reports and the backoff it chose."""

    kind: OutcomeKind
    exit_code: int | None
    error: str | None
    output: str
    retry_in: float | None  # seconds; None: no retry (or none needed)


class Model:
    """Every job the database must hold, with exactly the fields the backend must report."""

    def __init__(self, *, backoff_base: float, backoff_max: float) -> None:
        self.jobs: dict[str, ModelJob] = {}
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.ever_completed: set[str] = set()
        self._seq = 0

    # --- queries --------------------------------------------------------------------------
    def in_state(self, *states: JobState) -> list[ModelJob]:
        return sorted((j for j in self.jobs.values() if j.state in states), key=_by_seq)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for job in self.jobs.values():
            out[job.state] = out.get(job.state, 0) + 1
        return out

    def counts_by_queue(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for job in self.jobs.values():
            per = out.setdefault(job.queue, {})
            per[job.state] = per.get(job.state, 0) + 1
        return out

    def claim_order(self, queues: Iterable[str], *, now: float) -> list[ModelJob]:
        """Due jobs of these queues (none: every queue) in claim order: priority DESC,
        run_at, insertion order."""
        wanted = set(queues)
        due = [
            j
            for j in self.jobs.values()
            if j.state in CLAIMABLE and j.run_at <= now and (not wanted or j.queue in wanted)
        ]
        return sorted(due, key=lambda j: (-j.priority, j.run_at, j.seq))

    # --- transitions ----------------------------------------------------------------------
    def enqueue(
        self,
        job_id: str,
        *,
        queue: str,
        priority: int,
        max_retries: int,
        run_at: float | None,
        window: tuple[float, float],
    ) -> ModelJob:
        self._seq += 1
        job = ModelJob(job_id, self._seq, queue, priority, max_retries, run_at=0.0)
        if run_at is None:
            job.set_run_at(*window)  # now, by the database's clock
        else:
            job.run_at = run_at
        self.jobs[job_id] = job
        return job

    def claim(self, job: ModelJob, slot: str, *, lease_deadline: float) -> None:
        assert job.state in CLAIMABLE
        job.state = S.PROCESSING
        job.attempts += 1
        job.run_count += 1
        job.token += 1
        job.worker_id = slot
        job.exit_code = None  # last_error stays until the attempt ends
        job.lease_deadline = lease_deadline
        job.runs.append(ModelRun(job.run_count, slot))

    def lease_is_current(self, job_id: str, token: int) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.state is S.PROCESSING and job.token == token

    def finish(self, job_id: str, finish: Finish, *, window: tuple[float, float]) -> None:
        """A finish with the job's current lease token (Backend.finish)."""
        job = self.jobs[job_id]
        assert job.state is S.PROCESSING
        kind = finish.kind
        if kind is OutcomeKind.SUCCEEDED:
            state = S.COMPLETED
        elif kind is OutcomeKind.CANCELLED:
            state = S.CANCELLED
        elif kind is OutcomeKind.INTERRUPTED:
            state = S.PENDING
        else:
            state = S.DEAD if finish.retry_in is None else S.FAILED
        if job.cancel_requested and state is not S.COMPLETED:
            # the user cancelled the running job: whatever else ended it, it must not run
            # again (nor wait in the DLQ for a `dlq retry --all`)
            state = S.CANCELLED
        if kind is OutcomeKind.INTERRUPTED:
            job.attempts -= 1  # a released attempt (forced stop) does not use up a retry
        if state in (S.FAILED, S.PENDING):
            delay = (finish.retry_in or 0.0) if state is S.FAILED else 0.0
            job.set_run_at(window[0] + delay, window[1] + delay)
        job.state = state
        job.exit_code = finish.exit_code
        job.last_error = finish.error
        job.cancel_requested = False
        job.lease_deadline = math.inf
        run = job.runs[-1]
        run.outcome = str(kind)
        run.exit_code = finish.exit_code
        run.error = finish.error
        if finish.output:
            run.output = finish.output
        run.output_bytes = max(run.output_bytes, len(finish.output.encode()))
        if state is S.COMPLETED:
            self.ever_completed.add(job.id)

    def heartbeat(self, job_id: str, output: str | None, *, lease_deadline: float) -> None:
        job = self.jobs[job_id]
        job.lease_deadline = lease_deadline
        if output is not None:
            job.runs[-1].output = output
            job.runs[-1].output_bytes = len(output.encode())

    def expired(self, *, now: float) -> list[ModelJob]:
        return [j for j in self.in_state(S.PROCESSING) if j.lease_deadline < now]

    def recover(self, job_id: str, *, window: tuple[float, float]) -> None:
        """Recovery of an expired lease: the attempt fails as 'worker lost' under the policy
        (DESIGN.md §2); a job whose cancel was requested is cancelled instead."""
        job = self.jobs[job_id]
        if job.cancel_requested:
            finish = Finish(OutcomeKind.CANCELLED, None, "cancelled (worker lost)", "", None)
        else:
            delay = None
            if job.attempts <= job.max_retries:
                delay = min(self.backoff_base**job.attempts, self.backoff_max)
            finish = Finish(OutcomeKind.LOST, None, LOST_ERROR, "", delay)
        self.finish(job_id, finish, window=window)

    def cancel(self, job_id: str) -> ModelJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise Rejected("not_found")
        if job.state not in CANCELLABLE:
            raise Rejected("invalid_transition")
        if job.state is S.PROCESSING:
            job.cancel_requested = True  # its worker kills it at the next heartbeat
        else:
            job.state = S.CANCELLED
            job.last_error = "cancelled"
        return job

    def retry(
        self, job_ids: Sequence[str], *, dead_only: bool, window: tuple[float, float]
    ) -> list[ModelJob]:
        """All or nothing: an unknown id first, then a job in a state that cannot retry."""
        if any(i not in self.jobs for i in job_ids):
            raise Rejected("not_found")
        allowed = {S.DEAD} if dead_only else RETRYABLE
        if any(self.jobs[i].state not in allowed for i in job_ids):
            raise Rejected("invalid_transition")
        for job_id in dict.fromkeys(job_ids):
            self._restart(self.jobs[job_id], window)
        return [self.jobs[i] for i in job_ids]

    def retry_all_dead(self, *, window: tuple[float, float]) -> int:
        dead = self.in_state(S.DEAD)
        for job in dead:
            self._restart(job, window)
        return len(dead)

    def purge_dead(self) -> int:
        dead = self.in_state(S.DEAD)
        for job in dead:
            del self.jobs[job.id]
        return len(dead)

    def _restart(self, job: ModelJob, window: tuple[float, float]) -> None:
        # a failed job only skips the rest of its backoff; dead and cancelled ones start a
        # new life with the whole retry budget (DESIGN.md §2: `dlq retry` resets attempts)
        if job.state is not S.FAILED:
            job.attempts = 0
        job.state = S.PENDING
        job.set_run_at(*window)


def _by_seq(job: ModelJob) -> int:
    return job.seq
