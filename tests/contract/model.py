"""An in-memory model of a job's life (DESIGN.md §2 and §8), what the stateful backend test
expects: states and attempts, dependencies (`blocked`), unique keys, paused and limited
queues."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from queuectl.models import UNFINISHED_STATES, JobState, OutcomeKind

S = JobState
RETRYABLE = frozenset({S.FAILED, S.DEAD, S.CANCELLED})
CANCELLABLE = frozenset({S.PENDING, S.FAILED, S.PROCESSING, S.BLOCKED})
CLAIMABLE = frozenset({S.PENDING, S.FAILED})
ENDED_BADLY = frozenset({S.DEAD, S.CANCELLED})  # a dependency ending so cancels its dependents
LOST_ERROR = "worker lost"


class Rejected(Exception):
    """The operation must fail as a whole; `kind` names the queuectl error expected."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "not_found" | "invalid_transition" | "duplicate" | "usage"


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
    # flow control (DESIGN §8): the jobs it runs after (a purged one drops out), its key
    after: set[str] = field(default_factory=set)
    unique_key: str | None = None

    def set_run_at(self, lo: float, hi: float) -> None:
        self.run_at = lo
        self.run_at_window = (lo, hi)

    def not_before(self, window: tuple[float, float]) -> None:
        """run_at = max(run_at, now): what an unblocked job's run_at becomes."""
        lo, hi = self.run_at_window or (self.run_at, self.run_at)
        self.set_run_at(max(lo, window[0]), max(hi, window[1]))


@dataclass
class Finish:
    """One finish request: the outcome a worker reports and the backoff it chose."""

    kind: OutcomeKind
    exit_code: int | None
    error: str | None
    output: str
    retry_in: float | None  # seconds; None: no retry (or none needed)


@dataclass(frozen=True)
class Line:
    """One line of an enqueue, as far as the model cares."""

    id: str | None
    queue: str
    priority: int
    max_retries: int
    run_at: float | None  # None: now
    after: tuple[str, ...] = ()
    unique_key: str | None = None
    unique_for: float | None = None  # seconds; the test uses None or more than a run lasts


@dataclass
class EnqueuePlan:
    """What an enqueue must do: insert these lines (in order, each with its initial state
    and error and the ids it waits for); the others return the job holding their key (an
    id, or the index of an earlier line of the batch)."""

    lines: Sequence[Line]
    insert: list[int] = field(default_factory=list)
    holders: dict[int, str | int] = field(default_factory=dict)
    deps: dict[int, list[str]] = field(default_factory=dict)
    states: dict[int, tuple[JobState, str | None]] = field(default_factory=dict)


@dataclass
class QueueSetting:
    paused: bool = False
    concurrency: int | None = None


class Model:
    """Every job the database must hold, with exactly the fields the backend must report."""

    def __init__(self, *, backoff_base: float, backoff_max: float) -> None:
        self.jobs: dict[str, ModelJob] = {}
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.ever_completed: set[str] = set()
        self.queues: dict[str, QueueSetting] = {}  # only queues with a setting
        # limited queues that ran more jobs than their limit when it was set (a limit stops
        # claims, it does not stop running jobs): exempt until they are back under it
        self.over_limit: set[str] = set()
        self.purged: set[str] = set()  # ids purged from the DLQ (free again)
        # blocked jobs a purge left with no unfinished dependency: only the sweep
        # (settle_blocked) moves them on
        self.stranded: set[str] = set()
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

    def running(self, queue: str) -> int:
        return sum(1 for j in self.jobs.values() if j.queue == queue and j.state is S.PROCESSING)

    def paused(self, queue: str) -> bool:
        setting = self.queues.get(queue)
        return setting is not None and setting.paused

    def limit(self, queue: str) -> int | None:
        setting = self.queues.get(queue)
        return None if setting is None else setting.concurrency

    def dependents(self, job_id: str) -> list[ModelJob]:
        return [j for j in self.jobs.values() if job_id in j.after]

    def claim_order(self, queues: Iterable[str], slots: int, *, now: float) -> list[ModelJob]:
        """What a claim of `slots` jobs from these queues (none: every queue) takes, slot by
        slot. Claim order (priority DESC, run_at, insertion order) over the due jobs of the
        queues neither paused nor limited; then, when slots are left, the due jobs of the
        limited queues that are not paused, each queue at most its limit minus its running
        jobs, in claim order."""
        wanted = set(queues)
        due = [
            j
            for j in self.jobs.values()
            if j.state in CLAIMABLE
            and j.run_at <= now
            and (not wanted or j.queue in wanted)
            and not self.paused(j.queue)
        ]
        free = sorted((j for j in due if self.limit(j.queue) is None), key=_claim_key)[:slots]
        left = slots - len(free)
        picked: list[ModelJob] = []
        for queue in sorted({j.queue for j in due if self.limit(j.queue) is not None}):
            allowed = (self.limit(queue) or 0) - self.running(queue)
            in_queue = sorted((j for j in due if j.queue == queue), key=_claim_key)
            picked += in_queue[: max(allowed, 0)]
        return free + sorted(picked, key=_claim_key)[: max(left, 0)]

    def unique_holder(self, key: str, within: float | None) -> ModelJob | None:
        """The newest job that holds the key: an unfinished one, or with `within` (longer
        than any test runs) one that finished too."""
        holders = [
            j
            for j in self.jobs.values()
            if j.unique_key == key and (j.state in UNFINISHED_STATES or within is not None)
        ]
        return max(holders, key=_by_seq, default=None)

    def unique_clash(self, restarted: Iterable[str]) -> bool:
        """Whether restarting these jobs would leave two unfinished jobs with one key."""
        again = {i for i in restarted if self.jobs[i].state not in UNFINISHED_STATES}
        keys = [
            j.unique_key
            for j in self.jobs.values()
            if j.unique_key is not None and (j.state in UNFINISHED_STATES or j.id in again)
        ]
        return len(keys) != len(set(keys))

    def blocked_for_nothing(self, job: ModelJob) -> bool:
        """A blocked job none of whose (remaining) dependencies can still complete."""
        return all(self.jobs[d].state is S.COMPLETED for d in job.after)

    # --- enqueue ----------------------------------------------------------------------------
    def plan_enqueue(self, lines: Sequence[Line]) -> EnqueuePlan:
        """What an enqueue of these lines does (Rejected: nothing at all). A line may run
        after existing jobs and earlier lines of the batch (by their ids); a line whose
        unique key is held inserts nothing and returns the holder, and a line after it waits
        for the holder."""
        given = {line.id: i for i, line in enumerate(lines) if line.id}
        for i, line in enumerate(lines):
            if any(dep == line.id or given.get(dep, -1) > i for dep in line.after):
                raise Rejected("usage")  # after itself, or after a later line
        plan = EnqueuePlan(lines)
        self._plan_unique(plan)
        self._plan_deps(plan)
        states: dict[str, JobState] = {i: j.state for i, j in self.jobs.items()}
        for i in plan.insert:  # in order: an earlier line's state is known before a later's
            plan.states[i] = initial = _initial_state(plan.deps[i], states)
            if job_id := lines[i].id:
                states[job_id] = initial[0]
        return plan

    def _plan_unique(self, plan: EnqueuePlan) -> None:
        """Which lines insert: a line with a key an unfinished job (or, with its window,
        any job) or an earlier line holds gets that holder. A key's window is its first
        line's."""
        lines = plan.lines
        holder: dict[str, str | int] = {}
        for key in sorted({ln.unique_key for ln in lines if ln.unique_key is not None}):
            within = next(ln.unique_for for ln in lines if ln.unique_key == key)
            if (job := self.unique_holder(key, within)) is not None:
                holder[key] = job.id
        for i, line in enumerate(lines):
            if line.unique_key is not None and line.unique_key in holder:
                plan.holders[i] = holder[line.unique_key]
                continue
            if line.unique_key is not None:
                holder[line.unique_key] = i
            plan.insert.append(i)

    def _plan_deps(self, plan: EnqueuePlan) -> None:
        """The ids each inserted line waits for: after a line that inserted nothing, the job
        holding its key. Every one must exist or be inserted by this batch."""
        lines = plan.lines
        held = {lines[i].id: h for i, h in plan.holders.items() if lines[i].id}
        inserted = {lines[i].id for i in plan.insert if lines[i].id}
        for i in plan.insert:
            deps: list[str] = []
            for dep in lines[i].after:
                h = held.get(dep, dep)
                if isinstance(h, int):
                    if (h_id := lines[h].id) is None:
                        raise Rejected("usage")  # held by an earlier line without an id
                    h = h_id
                if h not in deps:
                    deps.append(h)
            plan.deps[i] = deps
        stored = {d for deps in plan.deps.values() for d in deps if d not in inserted}
        if stored - self.jobs.keys():
            raise Rejected("not_found")

    def enqueue(
        self, plan: EnqueuePlan, job_ids: Sequence[str], *, window: tuple[float, float]
    ) -> list[str]:
        """Insert the plan's lines, given the ids the database gave them (in the plan's
        insert order); what each line of the enqueue must return."""
        got: dict[int, str] = {}
        for i, job_id in zip(plan.insert, job_ids, strict=True):
            line = plan.lines[i]
            self._seq += 1
            job = ModelJob(job_id, self._seq, line.queue, line.priority, line.max_retries, 0.0)
            if line.run_at is None:
                job.set_run_at(*window)  # now, by the database's clock
            else:
                job.run_at = line.run_at
            job.state, job.last_error = plan.states[i]
            job.after = set(plan.deps[i])
            job.unique_key = line.unique_key
            self.jobs[job_id] = job
            self.purged.discard(job_id)
            got[i] = job_id
        for i, h in plan.holders.items():
            got[i] = got[h] if isinstance(h, int) else h
        return [got[i] for i in range(len(plan.lines))]

    # --- workers ------------------------------------------------------------------------------
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
        """A finish with the job's current lease token (Backend.finish). What the end sets
        off (dependents) is `settle`'s, once per transaction."""
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

    # --- what an ended job sets off (DESIGN §8) -----------------------------------------------
    def settle(self, ended: Iterable[str], *, window: tuple[float, float]) -> list[str]:
        """After jobs ended in one transaction: their blocked dependents whose dependencies
        all completed now are pending; a dependency that ended dead or cancelled cancels its
        blocked dependents, and theirs in turn, each naming the first (by id) of its
        dependencies that just ended so. The jobs it moved."""
        done = [self.jobs[i] for i in ended]
        completed = {j.id for j in done if j.state is S.COMPLETED}
        moved: list[str] = []
        for job in self.in_state(S.BLOCKED):
            if job.after & completed and self.blocked_for_nothing(job):
                job.state = S.PENDING
                job.not_before(window)
                moved.append(job.id)
        failed = {j.id: j.state for j in done if j.state in ENDED_BADLY}
        return moved + self._cancel_dependents(failed)

    def _cancel_dependents(self, failed: dict[str, JobState]) -> list[str]:
        moved: list[str] = []
        while failed:
            level: dict[str, JobState] = {}
            for job in self.in_state(S.BLOCKED):
                if causes := sorted(job.after & failed.keys()):
                    job.state = S.CANCELLED
                    job.last_error = f"dependency {causes[0]} {failed[causes[0]]}"
                    level[job.id] = job.state
            moved += level
            failed = level
        return moved

    def settle_blocked(self, *, window: tuple[float, float]) -> int:
        """The sweep (Backend.settle_blocked): a blocked job whose dependencies all completed
        (or were purged) is pending. It also cancels a blocked job whose dependency died
        after the job last changed (a cascade a crash lost), which never happens here: every
        cascade runs with its finish, so a blocked job with a dead or cancelled dependency
        was blocked again by a retry on purpose, and waits for that dependency's retry. How
        many it moved."""
        settled = [j for j in self.in_state(S.BLOCKED) if self.blocked_for_nothing(j)]
        for job in settled:
            job.state = S.PENDING
            job.not_before(window)
        return len(settled)

    # --- users ----------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> ModelJob:
        """`cancel`: of a running job, a request; else the job ends cancelled at once, and
        its blocked dependents with it."""
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
            self._cancel_dependents({job.id: job.state})
        return job

    def check_retry(self, job_ids: Sequence[str], *, dead_only: bool) -> None:
        """All or nothing: an unknown id first, then a job in a state that cannot retry."""
        if any(i not in self.jobs for i in job_ids):
            raise Rejected("not_found")
        allowed = {S.DEAD} if dead_only else RETRYABLE
        if any(self.jobs[i].state not in allowed for i in job_ids):
            raise Rejected("invalid_transition")

    def retry(
        self, job_ids: Sequence[str], *, dead_only: bool, window: tuple[float, float]
    ) -> list[ModelJob]:
        self.check_retry(job_ids, dead_only=dead_only)
        self._restart([self.jobs[i] for i in dict.fromkeys(job_ids)], window)
        return [self.jobs[i] for i in job_ids]

    def retry_all_dead(self, *, window: tuple[float, float]) -> int:
        """Every dead job, but a unique key comes back once: not while an unfinished job
        holds it, and of several dead jobs with one key only the newest."""
        held = {j.unique_key for j in self.in_state(*UNFINISHED_STATES) if j.unique_key}
        dead = self.in_state(S.DEAD)
        newest = {
            j.unique_key: max((d for d in dead if d.unique_key == j.unique_key), key=_by_seq)
            for j in dead
            if j.unique_key
        }
        back = [
            j
            for j in dead
            if j.unique_key is None or (j.unique_key not in held and newest[j.unique_key] is j)
        ]
        self._restart(back, window)
        return len(back)

    def purge_dead(self) -> int:
        dead = {j.id for j in self.in_state(S.DEAD)}
        for job_id in dead:
            del self.jobs[job_id]
        self.purged |= dead
        for job in self.jobs.values():  # a purged job takes its edges with it
            if job.after & dead:
                job.after -= dead
                if job.state is S.BLOCKED and self.blocked_for_nothing(job):
                    self.stranded.add(job.id)
        return len(dead)

    def _restart(self, jobs: Sequence[ModelJob], window: tuple[float, float]) -> None:
        # a failed job only skips the rest of its backoff; dead and cancelled ones start a
        # new life with the whole retry budget (DESIGN.md §2: `dlq retry` resets attempts)
        for job in jobs:
            if job.state is not S.FAILED:
                job.attempts = 0
            job.state = S.PENDING
            job.set_run_at(*window)
        # a dependent waits again for its dependencies (DESIGN §8), judged once all restarted
        for job in jobs:
            if not self.blocked_for_nothing(job):
                job.state = S.BLOCKED

    def pause(self, name: str, paused: bool) -> QueueSetting:
        return self._set_queue(name, paused=paused)

    def set_limit(self, name: str, concurrency: int | None) -> QueueSetting:
        setting = self._set_queue(name, concurrency=concurrency)
        if concurrency is not None and self.running(name) > concurrency:
            self.over_limit.add(name)
        return setting

    def _set_queue(self, name: str, **changes: bool | int | None) -> QueueSetting:
        """A queue's settings; a queue left with none has no row (and reads as the default)."""
        setting = self.queues.get(name, QueueSetting())
        for key, value in changes.items():
            setattr(setting, key, value)
        if setting.paused or setting.concurrency is not None:
            self.queues[name] = setting
        else:
            self.queues.pop(name, None)
        return setting


def _initial_state(deps: Sequence[str], states: dict[str, JobState]) -> tuple[JobState, str | None]:
    """A new job's state from its dependencies': cancelled when one ended dead or cancelled
    (naming the first by id), pending when all completed (or none), else blocked."""
    for dep in sorted(deps):
        if states[dep] in ENDED_BADLY:
            return S.CANCELLED, f"dependency {dep} {states[dep]}"
    if all(states[dep] is S.COMPLETED for dep in deps):
        return S.PENDING, None
    return S.BLOCKED, None


def _by_seq(job: ModelJob) -> int:
    return job.seq


def _claim_key(job: ModelJob) -> tuple[int, float, int]:
    return (-job.priority, job.run_at, job.seq)
