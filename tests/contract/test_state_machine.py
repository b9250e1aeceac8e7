"""Stateful model test: random job histories on both backends, checked against a model.

Besides a job's own life (DESIGN.md §2) the histories use flow control (§8): jobs `after`
others (blocked, unblocked, cancelled with their dependencies, blocked again by a retry),
unique keys, paused queues and concurrency limits."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from queuectl import errors, models
from queuectl.backends.base import Backend
from tests.contract.model import (
    CLAIMABLE,
    RETRYABLE,
    EnqueuePlan,
    Finish,
    Line,
    Model,
    ModelJob,
    Rejected,
)

S = models.JobState
K = models.OutcomeKind
HOST = "model-host"
QUEUES = ("default", "mail", "batch")
# Two lease lengths, so expiry is never a matter of timing: a short lease has run out a few
# milliseconds after it was granted (the expiry rule sleeps that long), a long one never
# runs out during a test.
SHORT_LEASE_S = 0.001
LONG_LEASE_S = 3600.0
# Delays (enqueue, retry backoff): due at once, due within the example, or never in it.
SOON_S = 0.03
LATER_S = 3600.0
DELAYS = {"now": 0.0, "soon": SOON_S, "later": LATER_S}
# recovery's backoff comes from the settings: base 1000 puts every 'worker lost' retry
# 1000 s (or backoff-max, 3600 s) away, so recovered jobs never fall due by themselves
BACKOFF_BASE = 1000.0
BACKOFF_MAX = 3600.0
DEFAULT_MAX_RETRIES = 3
EPS = 1e-3  # slack for µs rounding when a stored time is checked against its window
MISSING = "no-such-job"
MAX_JOBS = 12  # enough to fill claims and chain a few; few enough to go into each job's life
# flow control: a small pool of unique keys (so that they clash), a window longer than any
# example (so that it counts every finished job with the key), concurrency limits
UNIQUE_KEYS = ("k1", "k2")
UNIQUE_FOR_S = 3600.0
LIMITS = (None, 0, 1, 2)
EXAMPLES = 200
STEPS = 50
# MODEL_TEST_EXAMPLES=2000: a long random search instead of the suite's fixed histories
SEARCH_ENV = "MODEL_TEST_EXAMPLES"

REJECTIONS: dict[str, type[errors.QueuectlError]] = {
    "not_found": errors.JobNotFound,
    "invalid_transition": errors.InvalidTransition,
    "duplicate": errors.DuplicateJob,
    "usage": errors.UsageError,
}
T = TypeVar("T")


class Harness:
    """One backend for the whole run, emptied before each example (a fresh database per
    example would cost Postgres a CREATE DATABASE each time)."""

    def __init__(self, url: str, backend: Backend) -> None:
        self.url = url
        self.backend = backend
        self.events: collections.Counter[str] = collections.Counter()
        self.examples = 0
        self.steps = 0
        self._pg: Any = None
        backend.set_setting("backoff-base", str(BACKOFF_BASE))
        backend.set_setting("backoff-max", str(BACKOFF_MAX))

    def reset(self) -> None:
        # plain DELETEs on a connection of its own: the Backend has no "delete everything"
        # (purge_queue keeps running jobs), and settings stay as __init__ set them. The
        # dependency edges go first: this SQLite connection does not enforce foreign keys,
        # so deleting the jobs would not cascade to them.
        tables = ("deps", "runs", "jobs", "workers", "queues", "queue_starts")
        statements = [f"DELETE FROM queuectl_{t}" for t in tables]
        if self.url.startswith("sqlite:"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                with conn:
                    for sql in statements:
                        conn.execute(sql)
            finally:
                conn.close()
        else:
            if self._pg is None:
                import psycopg

                self._pg = psycopg.connect(self.url, autocommit=True)
            for sql in statements:
                self._pg.execute(sql.encode())
        self.backend.refresh_flow()  # the backend's cache of the limited queues

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()


@dataclass(frozen=True)
class SpecChoice:
    given_id: str  # "no" (generated), "fresh", "purged" (the id of a purged job, if any)
    queue: str
    priority: int
    max_retries: int | None
    delay: str  # "now" (unset), "past", "soon", "later"
    after: int  # at most this many dependencies, drawn from the known jobs and earlier lines
    bad_after: str | None  # "missing", "self", "later": one dependency that must be refused
    unique_key: str | None
    unique_for: float | None


@dataclass(frozen=True)
class FinishChoice:
    kind: models.OutcomeKind
    exit_code: int
    output: str
    delay: str  # of a retry, when the outcome retries and retries are left


specs = st.builds(
    SpecChoice,
    given_id=st.sampled_from(["no", "no", "fresh", "fresh", "purged"]),
    queue=st.sampled_from(QUEUES),
    priority=st.integers(-1, 2),
    # mostly small budgets, so histories reach the DLQ (and come back) within a few steps
    max_retries=st.sampled_from([None, 0, 0, 1, 1, 2, 3]),
    delay=st.sampled_from(["now", "now", "past", "soon", "later"]),
    after=st.sampled_from([0, 0, 0, 0, 0, 1, 1, 2, 3]),
    bad_after=st.sampled_from([*[None] * 16, "missing", "self", "later"]),
    unique_key=st.sampled_from([None, None, None, *UNIQUE_KEYS]),
    unique_for=st.sampled_from([None, None, UNIQUE_FOR_S]),
)
finishes = st.builds(
    FinishChoice,
    kind=st.sampled_from(
        [K.SUCCEEDED, K.SUCCEEDED, K.FAILED, K.FAILED, K.TIMED_OUT, K.CANCELLED, K.INTERRUPTED]
    ),
    exit_code=st.integers(1, 255),
    output=st.sampled_from(["", "done\n", "ünïcode ✓"]),
    delay=st.sampled_from(list(DELAYS)),
)
lease_ttls = st.sampled_from([SHORT_LEASE_S, LONG_LEASE_S])


def ts(value: datetime) -> float:
    return value.timestamp()


class JobMachine(RuleBasedStateMachine):
    """Drives one backend through random operations; after every step the whole database
    must equal the model (tests/contract/model.py)."""

    harness: ClassVar[Harness]

    job_ids = Bundle("job_ids")
    leases = Bundle("leases")  # every Job a claim handed out: current and stale lease tokens

    def __init__(self) -> None:
        super().__init__()
        self.h = self.harness
        self.h.reset()
        self.h.examples += 1
        self.db = self.h.backend
        self.model = Model(backoff_base=BACKOFF_BASE, backoff_max=BACKOFF_MAX)
        self.current: dict[str, models.Job] = {}  # the lease a running job's worker holds
        self.max_token: dict[str, int] = {}
        self.claims = 0
        self.named = 0

    # --- helpers ----------------------------------------------------------------------------
    def timed(self, call: Callable[[], T]) -> tuple[T, tuple[float, float]]:
        """The call's result and the window the database's `now` fell in."""
        start = time.time()
        result = call()
        return result, (start, time.time())

    def expect_rejection(self, kind: str, call: Callable[[], object]) -> None:
        with pytest.raises(REJECTIONS[kind]):
            call()
        self.h.events[f"rejected_{kind}"] += 1

    def wait_until_due_or_never(self) -> None:
        """Sleep past the run_at of every job due in the next moments, so a claim finds
        each job either clearly due or clearly not (only far-future run_ats remain)."""
        now = time.time()
        soon = [j.run_at for j in self.model.in_state(*CLAIMABLE) if now - EPS < j.run_at < now + 1]
        if soon:
            time.sleep(max(soon) + 2 * EPS - now)
            self.h.events["waited_for_due"] += 1

    def outcome(self, lease: models.Job, choice: FinishChoice) -> tuple[models.Outcome, Finish]:
        """The Outcome a worker reports, and the retry delay it asks for: like the worker,
        none once the attempt that failed was the last one (retry.delay_for)."""
        kind = choice.kind
        exit_code: int | None = None
        error: str | None = None
        retry_in: float | None = None
        if kind is K.SUCCEEDED:
            exit_code = 0
        elif kind is K.FAILED:
            exit_code, error = choice.exit_code, f"exit code {choice.exit_code}"
        elif kind is K.TIMED_OUT:
            error = "timed out"
        elif kind is K.CANCELLED:
            error = "cancelled"
        else:
            error = "interrupted: worker shut down"
        if kind in (K.FAILED, K.TIMED_OUT) and lease.attempts <= lease.max_retries:
            retry_in = DELAYS[choice.delay]
        data = choice.output.encode()
        outcome = models.Outcome(
            kind, exit_code=exit_code, error=error, output=choice.output, output_bytes=len(data)
        )
        return outcome, Finish(kind, exit_code, error, choice.output, retry_in)

    def finish_all(self, items: Sequence[tuple[models.Job, FinishChoice]], *, batch: bool) -> None:
        plans = [(lease, *self.outcome(lease, choice)) for lease, choice in items]
        if batch:
            applied, window = self.timed(
                lambda: self.db.finish_many(
                    [
                        models.Finish(
                            lease,
                            outcome,
                            None if f.retry_in is None else timedelta(seconds=f.retry_in),
                        )
                        for lease, outcome, f in plans
                    ]
                )
            )
        else:
            ((lease, outcome, f),) = plans
            retry_in = None if f.retry_in is None else timedelta(seconds=f.retry_in)
            one, window = self.timed(lambda: self.db.finish(lease, outcome, retry_in))
            applied = [one]
        # the batch means the same as these finishes one after the other, and then what
        # the ended jobs set off (their dependents), once for the batch
        expected = []
        for lease, _, f in plans:
            current = self.model.lease_is_current(lease.id, lease.lease_token)
            expected.append(current)
            if current:
                self.model.finish(lease.id, f, window=window)
                self.current.pop(lease.id, None)
                self.h.events[f"finished_{f.kind}"] += 1
            else:
                self.h.events["stale_finish_refused"] += 1
        assert applied == expected
        ended = [lease.id for lease, ok in zip((p[0] for p in plans), applied, strict=True) if ok]
        self.settled(self.model.settle(ended, window=window))

    def settled(self, moved: list[str]) -> None:
        for job_id in moved:
            job = self.model.jobs[job_id]
            self.h.events["unblocked" if job.state is S.PENDING else "dependency_cancelled"] += 1

    # --- rules ------------------------------------------------------------------------------
    @initialize(target=job_ids, choices=st.lists(specs, min_size=2, max_size=6), data=st.data())
    def seed(self, choices: list[SpecChoice], data: st.DataObject) -> Any:
        # every example starts with jobs: no dependency here that must be refused
        return self.do_enqueue([dataclasses.replace(c, bad_after=None) for c in choices], data)

    @precondition(lambda self: len(self.model.jobs) < MAX_JOBS)
    @rule(
        target=job_ids,
        choices=st.lists(specs, min_size=1, max_size=3),
        duplicate=st.sampled_from([None, None, None, "taken", "twice"]),
        data=st.data(),
    )
    def enqueue(self, choices: list[SpecChoice], duplicate: str | None, data: st.DataObject) -> Any:
        if duplicate is not None and self.model.jobs:
            self.enqueue_duplicate(data, within_batch=duplicate == "twice")
            return multiple()
        return self.do_enqueue(choices, data)

    def line_ids(self, choices: list[SpecChoice], data: st.DataObject) -> list[str | None]:
        ids: list[str | None] = []
        for c in choices:
            self.named += 1
            job_id = None if c.given_id == "no" else f"j{self.named}"
            if c.given_id == "purged" and (free := sorted(self.model.purged - set(ids))):
                job_id = data.draw(st.sampled_from(free), label="purged id")
            ids.append(job_id)
        return ids

    def line_after(
        self, choices: list[SpecChoice], ids: list[str | None], data: st.DataObject
    ) -> list[tuple[str, ...]]:
        """Each line's dependencies: known jobs (some maybe purged since) and earlier lines;
        now and then one that must be refused (unknown, itself, a later line)."""
        out: list[tuple[str, ...]] = []
        for i, c in enumerate(choices):
            known = sorted(self.model.jobs) + [j for j in ids[:i] if j is not None]
            after: list[str] = []
            if c.after and known:
                after = data.draw(
                    st.lists(st.sampled_from(known), min_size=1, max_size=c.after, unique=True),
                    label="after",
                )
            later = [j for j in ids[i + 1 :] if j is not None]
            if c.bad_after == "missing":
                after.append(min(self.model.purged, default=MISSING))
            elif c.bad_after == "self" and ids[i] is not None:
                after.append(ids[i] or "")
            elif c.bad_after == "later" and later:
                after.append(later[0])
            out.append(tuple(after))
        return out

    def do_enqueue(self, choices: list[SpecChoice], data: st.DataObject) -> Any:
        now = time.time()
        ids = self.line_ids(choices, data)
        afters = self.line_after(choices, ids, data)
        given: list[models.JobSpec] = []
        lines: list[Line] = []
        for n, (c, job_id, after) in enumerate(zip(choices, ids, afters, strict=True)):
            run_at = {
                "now": None,
                "past": now - 10,
                "soon": now + SOON_S,
                "later": now + LATER_S,
            }[c.delay]
            spec = models.JobSpec(
                command=f"echo {self.named}.{n}",
                id=job_id,
                queue=c.queue,
                priority=c.priority,
                run_at=None if run_at is None else datetime.fromtimestamp(run_at, UTC),
                max_retries=c.max_retries,
                after=after,
                unique_key=c.unique_key,
                unique_for_s=c.unique_for if c.unique_key else None,
            )
            given.append(spec)
            retries = DEFAULT_MAX_RETRIES if c.max_retries is None else c.max_retries
            lines.append(
                Line(
                    job_id,
                    c.queue,
                    c.priority,
                    retries,
                    None if spec.run_at is None else ts(spec.run_at),
                    after,
                    spec.unique_key,
                    spec.unique_for_s,
                )
            )
        try:
            plan = self.model.plan_enqueue(lines)
        except Rejected as exc:
            self.expect_rejection(exc.kind, lambda: self.db.enqueue(given))
            return multiple()
        jobs, window = self.timed(lambda: self.db.enqueue(given))
        self.check_enqueued(plan, jobs)
        inserted = [jobs[i].id for i in plan.insert]
        expected = self.model.enqueue(plan, inserted, window=window)
        assert [j.id for j in jobs] == expected
        for job in jobs:
            assert job.state is self.model.jobs[job.id].state
        self.h.events["enqueued"] += len(inserted)
        self.h.events["unique_conflict"] += len(plan.holders)
        for i in plan.insert:
            self.h.events[f"enqueued_{plan.states[i][0]}"] += 1
        return multiple(*inserted)

    def check_enqueued(self, plan: EnqueuePlan, jobs: list[models.Job]) -> None:
        assert len(jobs) == len(plan.lines)
        for i, (line, job) in enumerate(zip(plan.lines, jobs, strict=True)):
            assert job.conflict is (i in plan.holders), f"line {i}: conflict {job.conflict}"
            if i in plan.holders:
                continue  # the job that holds the key, as it is now (checked by the caller)
            if line.id is not None:
                assert job.id == line.id
            assert job.id not in self.model.jobs
            state, error = plan.states[i]
            got = (job.state, job.last_error, job.attempts, job.lease_token, job.run_count)
            assert got == (state, error, 0, 0, 0)
            assert job.unique_key == line.unique_key

    def enqueue_duplicate(self, data: st.DataObject, within_batch: bool) -> None:
        """A batch with one taken id (or the same id twice) is rejected as a whole."""
        self.named += 1
        fresh = models.JobSpec(command="echo dup", id=f"j{self.named}")
        if within_batch:
            batch = [fresh, fresh]
        else:
            taken = data.draw(st.sampled_from(sorted(self.model.jobs)), label="taken id")
            batch = [fresh, models.JobSpec(command="echo dup", id=taken)]
        self.expect_rejection("duplicate", lambda: self.db.enqueue(batch))

    @rule(
        target=leases,
        slots=st.integers(1, 4),
        queues=st.sets(st.sampled_from(QUEUES), max_size=2),
        ttl=lease_ttls,
    )
    def claim(self, slots: int, queues: set[str], ttl: float) -> Any:
        self.wait_until_due_or_never()
        self.claims += 1
        slot_ids = [f"c{self.claims}s{i}" for i in range(slots)]
        claimed, (start, end) = self.timed(
            lambda: self.db.claim(slot_ids, sorted(queues), host=HOST, lease_ttl_s=ttl)
        )
        unsure = [
            j.id for j in self.model.in_state(*CLAIMABLE) if start - EPS < j.run_at <= end + EPS
        ]
        assert not unsure, f"run_at too close to the claim to predict it: {unsure}"
        expected = self.model.claim_order(queues, slots, now=start)
        assert [j.id for j in claimed] == [j.id for j in expected]
        for job in claimed:
            assert not self.model.paused(job.queue), f"{job.id}: claimed from a paused queue"
        for slot, job, before in zip(slot_ids, claimed, expected, strict=False):
            assert job.id not in self.model.ever_completed  # a completed job never runs again
            assert job.worker_id == slot  # the i-th job in claim order goes to slot i
            assert job.state is S.PROCESSING and not job.cancel_requested
            assert job.attempts == before.attempts + 1 <= before.max_retries + 1
            assert job.lease_token == before.token + 1
            self.model.claim(before, slot, lease_deadline=end + ttl if ttl < 1 else math.inf)
            self.current[job.id] = job
        for queue in {j.queue for j in claimed}:
            limit = self.model.limit(queue)
            if limit is not None:  # a claim never takes a limited queue over its limit
                assert self.model.running(queue) <= limit, f"{queue}: over its limit {limit}"
                self.h.events["claimed_limited"] += 1
        # due jobs the claim had to pass over, their queue being paused
        due = {j.queue for j in self.model.in_state(*CLAIMABLE) if j.run_at <= start}
        wanted = due if not queues else due & queues
        self.h.events["claim_passed_paused"] += any(self.model.paused(q) for q in wanted)
        self.h.events["claimed"] += len(claimed)
        self.h.events["claim_empty" if not claimed else "claim_some"] += 1
        return multiple(*claimed)

    @precondition(lambda self: bool(self.current))
    @rule(data=st.data(), choice=finishes)
    def finish_running(self, data: st.DataObject, choice: FinishChoice) -> None:
        """A worker reports the attempt it runs, with its current lease."""
        job_id = data.draw(st.sampled_from(sorted(self.current)), label="running job")
        self.finish_all([(self.current[job_id], choice)], batch=False)

    @rule(lease=leases, choice=finishes)
    def finish_any_lease(self, lease: models.Job, choice: FinishChoice) -> None:
        """A report from any worker that ever held the job: a stale token changes nothing."""
        self.finish_all([(lease, choice)], batch=False)

    @rule(items=st.lists(st.tuples(leases, finishes), min_size=1, max_size=4))
    def finish_batch(self, items: list[tuple[models.Job, FinishChoice]]) -> None:
        """The completer's batched write: per item, as if written one after the other."""
        self.finish_all(items, batch=True)

    @precondition(lambda self: bool(self.current))
    @rule(data=st.data(), stale=st.lists(leases, max_size=2), ttl=lease_ttls, output=st.booleans())
    def heartbeat(
        self, data: st.DataObject, stale: list[models.Job], ttl: float, output: bool
    ) -> None:
        ids = data.draw(st.sets(st.sampled_from(sorted(self.current)), min_size=1), label="beat")
        sent: dict[str, models.Job] = {i: self.current[i] for i in sorted(ids)}
        for lease in stale:
            sent.setdefault(lease.id, lease)  # a worker reports each of its jobs once
        running = []
        for job in sent.values():
            text = f"so far {job.lease_token}" if output else None
            size = 0 if text is None else len(text.encode())
            running.append(models.RunningJob(job, output=text, output_bytes=size))
        workers = [
            models.WorkerInfo(id=j.worker_id or "", host=HOST, pid=1, queues=())
            for j in sent.values()
        ]
        control, (_, end) = self.timed(lambda: self.db.heartbeat(workers, running, lease_ttl_s=ttl))
        renewed = {i for i, j in sent.items() if self.model.lease_is_current(i, j.lease_token)}
        assert control.lost == set(sent) - renewed
        assert control.cancel == {i for i in renewed if self.model.jobs[i].cancel_requested}
        assert not control.stop
        for r in running:
            if r.job.id in renewed:
                deadline = end + ttl if ttl < 1 else math.inf
                self.model.heartbeat(r.job.id, r.output, lease_deadline=deadline)
        self.h.events["heartbeat_renewed"] += len(renewed)
        self.h.events["heartbeat_lost"] += len(control.lost)
        self.h.events["heartbeat_cancel"] += len(control.cancel)

    @rule()
    def expire_leases(self) -> None:
        """Recovery after the short leases ran out: exactly those jobs fail as 'worker lost'
        (or end cancelled when a cancel was asked); long leases are left alone."""
        deadlines = [j.lease_deadline for j in self.model.in_state(S.PROCESSING)]
        short = [d for d in deadlines if d < math.inf]
        if short:
            time.sleep(max(0.0, max(short) + 2 * EPS - time.time()))
        killed: list[tuple[str, str | None, int]] = []

        def note(job: models.Job, host: str | None, session: str | None) -> bool:
            killed.append((job.id, host, job.lease_token))
            return True  # everything expired: the sweeper's judgement is recovery.py's

        recovered, window = self.timed(lambda: self.db.recover_expired(note, lease_ttl_s=30))
        expected = self.model.expired(now=window[0])
        assert sorted(j.id for j in recovered) == sorted(j.id for j in expected)
        assert sorted(killed) == sorted((j.id, HOST, j.token) for j in expected)
        for job in expected:
            self.model.recover(job.id, window=window)
            self.current.pop(job.id, None)
        self.settled(self.model.settle([j.id for j in expected], window=window))
        self.h.events["recovered"] += len(expected)

    @rule(
        job_id=st.one_of(job_ids, st.just(MISSING)),
        which=st.sampled_from(["any", "running", "blocked"]),
        data=st.data(),
    )
    def cancel(self, job_id: str, which: str, data: st.DataObject) -> None:
        """`cancel` of any job (or of none); of a running one, only a request its worker
        hears of by heartbeat; of a blocked one (it and its dependents end cancelled)."""
        if which == "running" and self.current:
            job_id = data.draw(st.sampled_from(sorted(self.current)), label="running job")
        elif which == "blocked" and (blocked := self.model.in_state(S.BLOCKED)):
            job_id = data.draw(st.sampled_from([j.id for j in blocked]), label="blocked job")
        self.do_cancel(job_id)

    def do_cancel(self, job_id: str) -> None:
        blocked = {j.id for j in self.model.in_state(S.BLOCKED)}
        try:
            expected = self.model.cancel(job_id)
        except Rejected as exc:
            self.expect_rejection(exc.kind, lambda: self.db.cancel(job_id))
            return
        job = self.db.cancel(job_id)
        assert (job.state, job.cancel_requested) == (expected.state, expected.cancel_requested)
        self.h.events["cancel_requested" if job.state is S.PROCESSING else "cancelled"] += 1
        self.h.events["cancelled_blocked"] += job_id in blocked
        cascade = blocked - {job_id} - {j.id for j in self.model.in_state(S.BLOCKED)}
        self.h.events["dependency_cancelled"] += len(cascade)

    @rule(
        ids=st.lists(job_ids, min_size=1, max_size=3).flatmap(
            lambda ids: st.sampled_from([ids, ids, ids, [*ids, MISSING]])
        ),
        dead_only=st.booleans(),
        retryable=st.sampled_from(["yes", "yes", "dependent", "any"]),
        data=st.data(),
    )
    def retry(self, ids: list[str], dead_only: bool, retryable: str, data: st.DataObject) -> None:
        """`retry ID…` / `dlq retry ID…` (dead_only): of any jobs, or of one that may be
        retried (so that most of these succeed), or of a dependent its dependency cancelled
        (blocked again, unless that dependency came back and completed meanwhile)."""
        dependents = [
            j.id
            for j in self.model.in_state(S.CANCELLED)
            if (j.last_error or "").startswith("dependency ")
        ]
        if retryable == "dependent" and dependents:
            ids, dead_only = [data.draw(st.sampled_from(dependents), label="dependent")], False
        elif retryable != "any" and self.model.in_state(*RETRYABLE):
            states = (S.DEAD,) if dead_only and self.model.in_state(S.DEAD) else RETRYABLE
            ids = [data.draw(st.sampled_from([j.id for j in self.model.in_state(*states)]))]
        self.do_retry(ids, dead_only)

    def do_retry(self, ids: list[str], dead_only: bool) -> None:
        before = {i: (j.state, j.attempts) for i, j in self.model.jobs.items()}
        try:
            self.model.check_retry(ids, dead_only=dead_only)
        except Rejected as exc:
            self.expect_rejection(exc.kind, lambda: self.db.retry(ids, dead_only=dead_only))
            return
        if self.model.unique_clash(ids):
            # a second unfinished holder of a unique key: refused, nothing changes
            self.expect_rejection(
                "invalid_transition", lambda: self.db.retry(ids, dead_only=dead_only)
            )
            self.h.events["retry_refused_unique_clash"] += 1
            return
        start = time.time()
        # the window ends after the call; the model only needs its start to decide
        expected = self.model.retry(ids, dead_only=dead_only, window=(start, math.inf))
        jobs = self.db.retry(ids, dead_only=dead_only)
        end = time.time()
        for job, model_job in zip(jobs, expected, strict=True):
            model_job.set_run_at(start, end)
            # pending, or blocked again on a dependency that has not completed
            assert job.id == model_job.id and job.state is model_job.state
            assert job.attempts == model_job.attempts
            state, attempts = before[job.id]
            self.h.events[f"retried_{state}"] += 1
            self.h.events["reblocked"] += job.state is S.BLOCKED
            if state is not S.FAILED:
                assert job.attempts == 0, "a new life starts with the whole retry budget"
            else:
                assert job.attempts == attempts

    @precondition(lambda self: bool(self.model.in_state(S.DEAD)))
    @rule(purge=st.sampled_from([False, False, False, True]))
    def dlq_all(self, purge: bool) -> None:
        """`dlq retry --all` or `dlq purge`, of a DLQ that holds something."""
        dead = self.model.in_state(S.DEAD)
        if purge:
            for job in dead:
                self.check_runs(job)  # their last chance: the purge deletes the attempts too
                self.max_token.pop(job.id)  # its id is free: a new job may take it
            stranded = len(self.model.stranded)
            assert self.db.purge_dead() == self.model.purge_dead()
            self.h.events["purged"] += 1
            self.h.events["stranded_by_purge"] += len(self.model.stranded) - stranded
            return
        count, window = self.timed(self.db.retry_all_dead)
        assert count == self.model.retry_all_dead(window=window)
        self.h.events["dlq_retry_all"] += count

    @rule(
        queue=st.sampled_from(QUEUES),
        change=st.sampled_from(["pause", "resume", "resume", "limit", "limit"]),
        limit=st.sampled_from(LIMITS),
    )
    def set_queue(self, queue: str, change: str, limit: int | None) -> None:
        """`queue pause` / `queue resume` (idempotent; of a queue with no jobs too), `queue
        set Q --concurrency N` (None: `none`, no limit). Resumes outnumber pauses, so that
        queues are not paused most of the time."""
        if change == "limit":
            control = self.db.set_queue(queue, concurrency=limit)
            setting = self.model.set_limit(queue, limit)
            self.h.events["limit_set" if limit is not None else "limit_cleared"] += 1
        else:
            control = self.db.set_queue(queue, paused=change == "pause")
            setting = self.model.pause(queue, change == "pause")
            self.h.events[change] += 1
        assert control.name == queue
        assert (control.paused, control.concurrency) == (setting.paused, setting.concurrency)

    @precondition(lambda self: bool(self.model.in_state(S.BLOCKED)))
    @rule()
    def sweep_blocked(self) -> None:
        """The orchestrator's sweep behind the prompt paths: blocked jobs whose dependencies
        all ended (a retried dependent of a dead job, one a purge left waiting on nothing)."""
        moved, window = self.timed(self.db.settle_blocked)
        assert moved == self.model.settle_blocked(window=window)
        self.h.events["swept"] += moved

    # --- invariants -------------------------------------------------------------------------
    @invariant()
    def database_matches_model(self) -> None:
        self.h.steps += 1
        model = self.model
        rows = self.db.list_jobs(limit=100_000)
        by_id = {j.id: j for j in rows}
        assert len(by_id) == len(rows)
        assert set(by_id) == set(model.jobs)  # no job lost, none made up
        # newest first: the reverse of insertion order
        assert [j.id for j in rows] == [
            j.id for j in sorted(model.jobs.values(), key=_seq, reverse=True)
        ]
        for job in rows:
            expect = model.jobs[job.id]
            self.pin_run_at(expect, job)
            got = (
                job.state,
                job.attempts,
                job.run_count,
                job.lease_token,
                job.max_retries,
                job.queue,
                job.priority,
                job.cancel_requested,
                job.last_error,
                job.exit_code,
                job.unique_key,
            )
            want = (
                expect.state,
                expect.attempts,
                expect.run_count,
                expect.token,
                expect.max_retries,
                expect.queue,
                expect.priority,
                expect.cancel_requested,
                expect.last_error,
                expect.exit_code,
                expect.unique_key,
            )
            assert got == want, f"{job.id}: database {got} != model {want}"
            assert job.attempts <= job.max_retries + 1
            assert job.lease_token >= self.max_token.get(job.id, 0)  # tokens only grow
            self.max_token[job.id] = job.lease_token
            if job.state is S.PROCESSING:
                assert job.worker_id == expect.worker_id and job.worker_id is not None
                assert job.started_at is not None and job.finished_at is None
            elif job.run_count:
                assert job.finished_at is not None
            if job.state is not S.PROCESSING:
                assert not job.cancel_requested
        for job_id in model.ever_completed:  # completed is for good
            assert by_id[job_id].state is S.COMPLETED
        stats = self.db.stats(lease_ttl_s=30)
        assert stats.by_state == model.counts()
        assert stats.by_queue == model.counts_by_queue()
        self.check_flow(rows)
        # the attempts are compared at the end of the example (and before a purge): a run
        # row is written once its attempt ends and never again, so nothing wrong in one can
        # go unnoticed, and Postgres is spared a query per job and step

    def check_flow(self, rows: list[models.Job]) -> None:
        """DESIGN §8's rules, on the database's rows (equal to the model's by now)."""
        model = self.model
        for job in rows:
            if job.state is not S.BLOCKED:
                continue
            after = {d.id: d.state for d in self.db.dependencies(job.id) if d.side == "after"}
            assert set(after) == model.jobs[job.id].after, f"{job.id}: dependencies differ"
            # blocked while some dependency has not completed; else only when a purge took
            # that dependency away (the sweep lets it go then)
            assert any(state != S.COMPLETED for state in after.values()) or (
                job.id in model.stranded
            ), f"{job.id}: blocked, its dependencies {after} all completed"
        holders = collections.Counter(
            j.unique_key for j in rows if j.unique_key and j.state in models.UNFINISHED_STATES
        )
        assert all(n == 1 for n in holders.values()), f"a unique key held twice: {holders}"
        running = collections.Counter(j.queue for j in rows if j.state is S.PROCESSING)
        for queue in QUEUES:
            limit = model.limit(queue)
            if limit is None or running[queue] <= limit:
                model.over_limit.discard(queue)
            else:  # only when the limit was set below what already ran
                assert queue in model.over_limit, f"{queue}: {running[queue]} > limit {limit}"

    def pin_run_at(self, expect: ModelJob, job: models.Job) -> None:
        stored = ts(job.run_at)
        if expect.run_at_window is None:
            assert abs(stored - expect.run_at) <= EPS, f"{job.id}: run_at moved"
        else:
            lo, hi = expect.run_at_window
            assert lo - EPS <= stored <= hi + EPS, f"{job.id}: run_at {stored} not in [{lo}, {hi}]"
            expect.run_at, expect.run_at_window = stored, None

    def check_runs(self, expect: ModelJob) -> None:
        runs = self.db.runs(expect.id)
        got = [
            (r.attempt, r.worker_id, r.outcome, r.exit_code, r.error, r.output, r.output_bytes)
            for r in runs
        ]
        want = [
            (r.attempt, r.worker_id, r.outcome, r.exit_code, r.error, r.output, r.output_bytes)
            for r in expect.runs
        ]
        assert got == want, f"{expect.id}: runs differ"
        for r in runs:
            assert (r.finished_at is None) == (r.outcome is None)

    def teardown(self) -> None:
        """At the end of each example: every attempt of every job, and each job in exactly
        one state (the per-state listings partition the jobs; the listing and the counts
        were compared after every step)."""
        for job in self.model.jobs.values():
            self.check_runs(job)
            edges = sorted(
                [("after", d, self.model.jobs[d].state) for d in job.after]
                + [("dependent", d.id, d.state) for d in self.model.dependents(job.id)]
            )
            got = sorted((d.side, d.id, d.state) for d in self.db.dependencies(job.id))
            assert got == edges, f"{job.id}: dependencies differ"
        controls = {q.name: (q.paused, q.concurrency) for q in self.db.queue_controls()}
        assert controls == {n: (q.paused, q.concurrency) for n, q in self.model.queues.items()}
        seen: list[str] = []
        for state in S:
            listed = self.db.list_jobs(state=state, limit=100_000)
            assert {j.id for j in listed} == {j.id for j in self.model.in_state(state)}
            seen += [j.id for j in listed]
        assert sorted(seen) == sorted(self.model.jobs)


def _seq(job: ModelJob) -> int:
    return job.seq


@pytest.fixture
def harness(db_url: str, backend: Backend) -> Iterator[Harness]:
    h = Harness(db_url, backend)
    yield h
    h.close()


@pytest.mark.timeout(120)
def test_backend_follows_the_model(harness: Harness) -> None:
    class Machine(JobMachine):
        pass

    Machine.harness = harness
    search = int(os.environ.get(SEARCH_ENV) or 0)
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=search or EXAMPLES,
            stateful_step_count=STEPS,
            # the suite runs the same histories each time (its time and coverage are known;
            # Hypothesis varies its mix of rules a lot between random runs); a search is
            # random, to find new ones
            derandomize=not search,
            deadline=None,
            database=None,
            # no explain phase: its line tracing makes a failure take minutes to report
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    events = harness.events
    print(
        f"\n{harness.examples} examples, {harness.steps} checked steps; "
        + ", ".join(f"{k}={v}" for k, v in sorted(events.items()))
    )
    # not vacuous: the main transitions happened in this run (each typically dozens of times)
    covered = {
        "claims": events["claimed"],
        "successes": events["finished_succeeded"],
        "failures": events["finished_failed"] + events["finished_timed_out"],
        "stale reports refused": events["stale_finish_refused"] + events["heartbeat_lost"],
        "recoveries": events["recovered"],
        "cancels of running jobs": events["cancel_requested"],
        "dead jobs brought back": events["retried_dead"] + events["dlq_retry_all"],
        "jobs blocked at enqueue": events["enqueued_blocked"],
        "jobs cancelled at enqueue": events["enqueued_cancelled"],
        # released or cancelled once their dependency ended: which of the two a history
        # holds depends on timing (the model runs on the wall clock, and a slow machine
        # changes which jobs are due at each claim: one full-suite run had 56 cancels and
        # no release). tests/contract/test_flow.py pins each down on its own.
        "settled after a dependency ended": events["unblocked"] + events["dependency_cancelled"],
        "blocked again by a retry": events["reblocked"],
        # the sweep moves a job here only after a purge stranded it (every cascade runs
        # with its finish in the model): rare in these histories, so tests/contract/
        # test_flow.py covers the sweep on its own
        "unique key conflicts": events["unique_conflict"],
        "claims passing a paused queue over": events["claim_passed_paused"],
        "claims from a limited queue": events["claimed_limited"],
    }
    if not search:
        assert all(covered.values()), covered


# --- the bugs the model found, pinned down as plain regression tests ------------------------
def _claim(backend: Backend, n: int = 1, ttl: float = 30.0) -> list[models.Job]:
    return backend.claim([f"w{i}" for i in range(n)], (), host=HOST, lease_ttl_s=ttl)


def _failed(code: int = 1) -> models.Outcome:
    return models.Outcome(K.FAILED, exit_code=code, error=f"exit code {code}")


def test_a_cancel_asked_while_running_wins_over_a_retry_or_the_dlq(backend: Backend) -> None:
    """The attempt ends by itself before its worker hears of the cancel: the job still ends
    cancelled, and never runs again. Only a success stands."""
    backend.enqueue(
        [
            models.JobSpec("false", id="retry", max_retries=3),
            models.JobSpec("false", id="last", max_retries=0),
            models.JobSpec("sleep 9", id="released"),
            models.JobSpec("true", id="ok"),
        ]
    )
    jobs = {j.id: j for j in _claim(backend, 4)}
    for job_id in jobs:
        assert backend.cancel(job_id).cancel_requested
    interrupted = models.Outcome(K.INTERRUPTED, error="interrupted: worker shut down")
    assert backend.finish(jobs["retry"], _failed(), timedelta(0))
    assert backend.finish(jobs["last"], _failed(), None)
    assert backend.finish(jobs["released"], interrupted, None)
    assert backend.finish(jobs["ok"], models.Outcome(K.SUCCEEDED, exit_code=0), None)
    states = {j: backend.get_job(j).state for j in jobs}
    assert states == {
        "retry": S.CANCELLED,
        "last": S.CANCELLED,
        "released": S.CANCELLED,
        "ok": S.COMPLETED,
    }
    assert _claim(backend, 4) == []
    assert backend.runs("retry")[0].outcome == "failed"  # the attempt keeps how it ended


def test_an_interrupted_attempt_does_not_use_up_a_retry(backend: Backend) -> None:
    backend.enqueue([models.JobSpec("true", id="a", max_retries=0)])
    (job,) = _claim(backend)
    assert backend.finish(job, models.Outcome(K.INTERRUPTED, error="interrupted"), None)
    assert (backend.get_job("a").state, backend.get_job("a").attempts) == (S.PENDING, 0)
    (again,) = _claim(backend)
    assert again.attempts == 1 <= again.max_retries + 1
    assert backend.finish(again, _failed(), None)
    assert backend.get_job("a").state is S.DEAD
    assert [(r.attempt, r.outcome) for r in backend.runs("a")] == [
        (1, "interrupted"),
        (2, "failed"),
    ]


def test_finish_many_with_a_job_twice_applies_like_one_finish_after_the_other(
    backend: Backend,
) -> None:
    backend.enqueue([models.JobSpec("true", id="a"), models.JobSpec("true", id="b")])
    a, b = _claim(backend, 2, ttl=SHORT_LEASE_S)
    ok = models.Outcome(K.SUCCEEDED, exit_code=0)
    assert backend.finish_many([models.Finish(a, ok), models.Finish(a, _failed())]) == [
        True,
        False,
    ]
    assert backend.get_job("a").state is S.COMPLETED
    assert [r.outcome for r in backend.runs("a")] == ["succeeded"]
    # a stale report and the current one of the same job, in one batch
    time.sleep(10 * SHORT_LEASE_S)
    assert [j.id for j in backend.recover_expired(lambda j, h, s: True, lease_ttl_s=30)] == ["b"]
    backend.retry(["b"])
    (b2,) = _claim(backend)
    assert backend.finish_many([models.Finish(b, _failed()), models.Finish(b2, ok)]) == [
        False,
        True,
    ]
    assert [r.outcome for r in backend.runs("b")] == ["lost", "succeeded"]


@pytest.mark.parametrize("how", ["retry", "dlq_retry_all"])
def test_a_retry_keeps_one_unfinished_job_per_unique_key(backend: Backend, how: str) -> None:
    """DESIGN §8: at most one unfinished job holds a key, whatever made it unfinished."""
    backend.enqueue([models.JobSpec("false", id="a", unique_key="K", max_retries=0)])
    (a,) = _claim(backend)
    assert backend.finish(a, _failed(), None)  # dead: the key is free
    (b,) = backend.enqueue([models.JobSpec("true", id="b", unique_key="K")])
    assert (b.id, b.state, b.conflict) == ("b", S.PENDING, False)
    # refused, or brought back some other way: the fix's choice
    with contextlib.suppress(errors.QueuectlError):
        if how == "retry":
            backend.retry(["a"])
        else:
            backend.retry_all_dead()
    holders = [j.id for j in backend.list_jobs() if j.state in models.UNFINISHED_STATES]
    assert holders == ["b"], f"key K held by {holders}"
