"""SqlBackend: every Backend method that is "run named queries, map the rows", written once.

Procrastinate's `JobManager` over its `BaseConnector` is the model: this class speaks only
to a Connector (backends/connector.py), which runs the dialect's SQL of the same name.
postgres.py and sqlite.py subclass it with what really differs between the dialects, as the
hooks below: the bulk insert (`_insert`), the claim, the finish batch, the heartbeat's
statements (`_beat`), LISTEN (`_watch`) and Postgres's wake-ups (`_notify`, `_signal`); and,
outside this class, connections, error translation and migrations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from queuectl import config, errors, models
from queuectl.backends import common, flow
from queuectl.backends.base import JOB_ROW, UNSET, Enqueued, Names, OnError, OnNotify, Reap, Unset
from queuectl.backends.connector import Connector, Row, Session

if TYPE_CHECKING:
    from queuectl.backends.base import Running, Workers


class Listener:
    """Waits for a sign that awaited jobs may have ended (`wait`); the caller then re-reads
    them. This one only sleeps: the caller polls."""

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def wait(self, timeout_s: float) -> bool:
        time.sleep(timeout_s)
        return False


# what the heartbeat's statements found: whether a stop was asked; {renewed job id: whether
# its cancel was requested}
Beat = tuple[bool, dict[str, bool]]


class SqlBackend:
    """The shared half of both backends (the docstrings are on the protocols in base.py)."""

    url: str
    notifies: bool
    single_host: bool
    idle_beat_is_one_statement = False  # `_beat` with no running job sends one statement

    def __init__(self, connector: Connector) -> None:
        self.c = connector
        # the limited queues (concurrency or rate), as last read: the claim's second step
        # takes their jobs (refresh_flow); None until first read
        self._limited: frozenset[str] | None = None
        # whether any queue is paused or limited: then a claim for every queue goes queue
        # by queue (active_queues), not down the any-queue order past their backlogs
        self._any_flow = False

    # --- what each dialect provides -------------------------------------------------------------
    def _insert(self, s: Session, specs: Sequence[models.JobSpec]) -> Enqueued:
        """Insert the specs' rows (defaults resolved by common.job_rows) inside `s`."""
        raise NotImplementedError

    def _claim(self, slots: Names, queues: Names, host: str, lease_s: float) -> list[Row]:
        """Claim up to len(slots) due jobs in one transaction (or one statement); their rows."""
        raise NotImplementedError

    def _finish_in(self, s: Session, items: Sequence[models.Finish]) -> list[bool]:
        """Write finished attempts inside `s` (each job at most once); whether each applied.
        What the ended jobs set off (dependents, waiters: flow.settle) is settled in `s`."""
        raise NotImplementedError

    def _beat(self, s: Session, workers: Workers, running: Running, lease_s: float) -> Beat:
        """Upsert the workers' rows, renew the running jobs' leases and store their output
        inside `s`: whether any worker was asked to stop, and per renewed job whether its
        cancel was requested."""
        raise NotImplementedError

    def _watch(self, on_notify: OnNotify, stop: threading.Event, on_error: OnError) -> bool:
        """`listen` in this dialect."""
        raise NotImplementedError

    def _notify(self, s: Session, queues: Mapping[str, int]) -> None:
        """Wake idle workers of these queues ('*': all) when `s` commits, saying how many
        jobs fell due in each (0: unknown); a worker weighs its wake-up by it (worker.py).
        Postgres NOTIFYs; SQLite workers watch the file's commit counter instead, so this
        does nothing."""

    def _done(self, s: Session, job_ids: Sequence[str]) -> None:
        """Tell `wait`ers that these jobs ended, when `s` commits (Postgres NOTIFY; SQLite
        waiters watch the file's commit counter instead, so this does nothing)."""

    def _settle(self, s: Session, rows: Sequence[Row]) -> None:
        """What ended jobs (rows with id, queue, state, has_dependents, watched) set off."""
        if ended := flow.flagged(rows):
            flow.settle(s, self.c, ended, self._notify, self._done)

    def _signal(self, s: Session, payload: str) -> None:
        """Tell workers on the control channel when `s` commits (a worker id: heartbeat now;
        'stop': drain). SQLite workers hear it at their next heartbeat instead."""

    # --- helpers --------------------------------------------------------------------------------
    def _job(self, row: Row) -> models.Job:
        return common.job_from_row(row, self.c.to_time)

    def _read(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        with self.c.single() as s:
            return s.all(name, params)

    def _write(self, name: str, params: dict[str, Any] | None = None) -> int:
        with self.c.transaction() as s:
            return s.run(name, params)

    def _locked(self, s: Session, job_ids: Sequence[str]) -> list[models.Job]:
        """The jobs, locked until `s` ends (Postgres FOR UPDATE; SQLite holds the write lock
        already); JobNotFound for the first id that does not exist."""
        rows = s.all("lock_jobs", {"ids": self.c.param_ids(list(job_ids))})
        found = {r["id"]: self._job(r) for r in rows}
        for job_id in job_ids:
            if job_id not in found:
                raise errors.JobNotFound(job_id)
        return [found[i] for i in job_ids]

    @staticmethod
    def _settings(s: Session) -> dict[str, str]:
        return {r["key"]: r["value"] for r in s.all("get_settings")}

    # --- jobs -------------------------------------------------------------------------------------
    def enqueue(self, specs: Sequence[models.JobSpec]) -> list[models.Job]:
        with self.c.transaction() as s:
            enqueued = self._enqueue_in(s, specs)
            if enqueued.jobs is not None:
                return enqueued.jobs
            job_ids = [row[0] for row in enqueued.rows]
            rows = s.all("jobs_by_ids", {"ids": self.c.param_ids(job_ids)})
        by_id = {r["id"]: r for r in rows}
        return [self._job(by_id[i]) for i in job_ids]

    def enqueue_bulk(self, specs: Sequence[models.JobSpec]) -> Enqueued:
        with self.c.transaction() as s:
            return self._enqueue_in(s, specs)

    def _enqueue_in(self, s: Session, specs: Sequence[models.JobSpec]) -> Enqueued:
        if not flow.needs_plan(specs):
            return self._insert(s, specs)  # the common case: rows in, nothing read back
        plan = flow.plan(s, self.c, specs, self._job)
        inserted = self._insert(s, [specs[i] for i in plan.insert])
        flow.apply(s, plan, [row[0] for row in inserted.rows])
        ids = dict(zip(plan.insert, (row[0] for row in inserted.rows), strict=True))
        for i in sorted(plan.conflicts):
            other = plan.conflicts[i]
            ids[i] = other.id if isinstance(other, models.Job) else ids[other]
        rows = s.all("jobs_by_ids", {"ids": self.c.param_ids(sorted(set(ids.values())))})
        by_id = {r["id"]: self._job(r) for r in rows}
        jobs = [
            dataclasses.replace(by_id[ids[i]], conflict=True)
            if i in plan.conflicts
            else by_id[ids[i]]
            for i in range(len(specs))
        ]
        return Enqueued(inserted.now, inserted.rows, jobs)

    def get_job(self, job_id: str) -> models.Job:
        rows = self._read("get_job", {"id": job_id})
        if not rows:
            raise errors.JobNotFound(job_id)
        return self._job(rows[0])

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
        params = {
            "state": None if state is None else str(state),
            "queue": queue,
            "limit": limit,
            "search": search or None,
            "before": before,
            "after": after,
        }
        if after is not None:  # read upwards from the cursor, handed back newest first
            return [self._job(r) for r in reversed(self._read("list_jobs_after", params))]
        return [self._job(r) for r in self._read("list_jobs", params)]

    def runs(self, job_id: str) -> list[models.Run]:
        with self.c.snapshot() as s:
            if s.one("get_job", {"id": job_id}) is None:
                raise errors.JobNotFound(job_id)
            rows = s.all("runs", {"id": job_id})
        return [common.run_from_row(r, self.c.to_time) for r in rows]

    def cancel(self, job_id: str) -> models.Job:
        return self.cancel_many([job_id])[0]

    def cancel_many(self, job_ids: Sequence[str]) -> list[models.Job]:
        with self.c.transaction() as s:
            jobs = self._locked(s, job_ids)
            for job in jobs:  # all or nothing: every job is checked before any changes
                common.check_transition(job, action="cancel", allowed=common.CANCELLABLE)
            for job in {j.id: j for j in jobs}.values():
                if job.state is models.JobState.PROCESSING:
                    s.run("cancel_running", {"id": job.id})
                    # its worker heartbeats at once instead of within 2 s, and kills the job
                    self._signal(s, job.worker_id or "")
                    continue
                now = s.one("get_job", {"id": job.id})
                if now is not None and now["state"] == models.JobState.CANCELLED:
                    continue  # a dependent an earlier cancel of this call cascaded to
                ended = s.all("cancel_now", {"ids": self.c.param_ids([job.id])})
                self._settle(s, ended)  # its dependents are cancelled too
            # each job as it ended up (one may be another's dependent)
            ids = self.c.param_ids(list(dict.fromkeys(job_ids)))
            final = {r["id"]: r for r in s.all("jobs_by_ids", {"ids": ids})}
        return [self._job(final[i]) for i in job_ids]

    def retry(self, job_ids: Sequence[str], *, dead_only: bool = False) -> list[models.Job]:
        allowed = frozenset({models.JobState.DEAD}) if dead_only else common.RETRYABLE_STATES
        params = {"ids": self.c.param_ids(list(job_ids))}
        with self.c.transaction() as s:
            # unique keys first (the order enqueue takes them in: no deadlock between the two)
            keyed = {r["id"]: r["unique_key"] for r in s.all("jobs_by_ids", params)}
            for key in sorted({k for k in keyed.values() if k is not None}):
                s.one("unique_lock", {"key": key})
            jobs = self._locked(s, job_ids)
            for job in jobs:
                common.check_transition(job, action="retry", allowed=allowed)
            self._check_keys_free(s, jobs)
            rows = s.all("retry", params)
            # a dependent waits again for its dependencies (DESIGN §8)
            if reblocked := {r["id"] for r in s.all("reblock", params)}:
                rows = s.all("jobs_by_ids", params)
            self._notify(s, Counter(r["queue"] for r in rows if r["id"] not in reblocked))
        by_id = {r["id"]: self._job(r) for r in rows}
        return [by_id[i] for i in job_ids]

    def _check_keys_free(self, s: Session, jobs: Sequence[models.Job]) -> None:
        """A finished job retried must not become a second unfinished holder of its unique
        key (DESIGN §8): InvalidTransition naming the holder."""
        restarting = {j.id: j for j in jobs}  # an id named twice is one job
        taken: dict[str, str] = {}
        for job in restarting.values():
            key = job.unique_key
            if key is None or job.state in models.UNFINISHED_STATES:
                continue  # a failed job holds its key already
            row = s.one("find_unique", {"key": key, "window_s": None})
            holder = row["id"] if row is not None and row["id"] not in restarting else None
            holder = holder or taken.get(key)
            if holder is not None:
                raise errors.InvalidTransition(
                    f"cannot retry job {job.id!r}: unfinished job {holder!r} holds its unique "
                    f"key {key!r}"
                )
            taken[key] = job.id

    def retry_all_dead(self) -> int:
        with self.c.transaction() as s:
            count = s.run("retry_all_dead")
            if count:
                self._notify(s, {"*": 0})
            return count

    def purge_dead(self, *, queue: str | None = None, older_than_s: float | None = None) -> int:
        return self._write("purge_dead", {"queue": queue, "older_s": older_than_s})

    def count_dead(self, *, queue: str | None = None, older_than_s: float | None = None) -> int:
        rows = self._read("count_dead", {"queue": queue, "older_s": older_than_s})
        return int(rows[0]["n"])

    # --- workers ----------------------------------------------------------------------------------
    def claim(
        self, slot_ids: Names, queues: Names, *, host: str, lease_ttl_s: float
    ) -> list[models.Job]:
        if not slot_ids:
            return []
        rows = self._claim(slot_ids, queues, host, lease_ttl_s)
        # the limited queues' jobs in a second step, serialised per queue (the first one
        # passes them over): only when slots are left and this process serves such a queue
        if len(rows) < len(slot_ids) and (limited := self._limited_among(queues)):
            try:
                rows += self._claim_limited(slot_ids[len(rows) :], limited, host, lease_ttl_s)
            except errors.BackendError:
                if not rows:
                    raise
                # the first step's jobs are claimed (committed): hand them out, or they
                # would sit in processing until their leases expire; the next claim retries

        jobs = [self._job(r) for r in rows]
        order = {slot: i for i, slot in enumerate(slot_ids)}  # the i-th job to the i-th slot
        return sorted(jobs, key=lambda j: order[j.worker_id or ""])

    def finish(self, job: models.Job, outcome: models.Outcome, retry_in: timedelta | None) -> bool:
        return self.finish_many([models.Finish(job, outcome, retry_in)])[0]

    def finish_many(self, items: Sequence[models.Finish]) -> list[bool]:
        if not items:
            return []
        with self.c.transaction() as s:
            return self._finish_in(s, items)

    # --- flow control (DESIGN §8) -----------------------------------------------------------------
    def _claim_limited(self, slots: Names, queues: Names, host: str, lease_s: float) -> list[Row]:
        """Claim from limited queues, at most what their limits allow, each queue's claims
        taking turns (a dialect's own way)."""
        raise NotImplementedError

    def _limited_among(self, queues: Names) -> list[str]:
        if self._limited is None:
            self.refresh_flow()
        limited = self._limited or frozenset()
        return sorted(limited if not queues else limited.intersection(queues))

    def refresh_flow(self) -> list[models.QueueControl]:
        controls = self.queue_controls()
        self._limited = frozenset(q.name for q in controls if q.limited and not q.paused)
        self._any_flow = bool(controls)
        return controls

    def queue_controls(self) -> list[models.QueueControl]:
        return [common.queue_from_row(r) for r in self._read("list_queues")]

    def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        concurrency: int | Unset | None = UNSET,
        rate: tuple[int, float] | Unset | None = UNSET,
    ) -> models.QueueControl:
        set_rate = not isinstance(rate, Unset)
        limit, period = rate if isinstance(rate, tuple) else (None, None)
        params = {
            "name": name,
            "paused": paused,
            "set_concurrency": not isinstance(concurrency, Unset),
            "concurrency": None if isinstance(concurrency, Unset) else concurrency,
            "set_rate": set_rate,
            "rate_limit": limit,
            "rate_period_s": period,
        }
        with self.c.transaction() as s:
            row = s.one("upsert_queue", params)
            if set_rate:
                s.run("clear_starts", {"name": name})  # a new rate starts a fresh window
            assert row is not None  # an upsert returns its row
            s.run("drop_idle_queue", {"name": name})
            if paused is False:
                self._notify(s, {name: 0})  # its jobs are claimable again: wake the workers
        self.refresh_flow()
        return common.queue_from_row(row)

    def running_by_queue(self) -> dict[str, int]:
        return {r["queue"]: int(r["n"]) for r in self._read("running_by_queue")}

    def dependencies(self, job_id: str) -> list[models.Dependency]:
        with self.c.snapshot() as s:
            if s.one("get_job", {"id": job_id}) is None:
                raise errors.JobNotFound(job_id)
            rows = s.all("dependencies", {"id": job_id})
        return [models.Dependency(r["side"], r["id"], r["state"]) for r in rows]

    def watch(self, job_ids: Sequence[str]) -> None:
        """Flag unfinished jobs as awaited: their end is announced (`_done`)."""
        self._write("mark_watched", {"ids": self.c.param_ids(list(job_ids))})

    def done_listener(self) -> contextlib.AbstractContextManager[Listener]:
        """What `wait` waits on between looks: a NOTIFY (Postgres) or a commit (SQLite)."""
        return Listener()

    def settle_blocked(self) -> int:
        with self.c.transaction() as s:
            return flow.settle_blocked(s, self.c, self._notify, self._done)

    def heartbeat(
        self, workers: Workers, running: Running, *, lease_ttl_s: float
    ) -> models.WorkerControl:
        # an idle Postgres worker's beat is one statement: autocommit, no BEGIN and COMMIT
        # (a third of what an idle fleet sends)
        one = not running and self.idle_beat_is_one_statement
        with self.c.single() if one else self.c.transaction() as s:
            stop, renewed = self._beat(s, workers, running, lease_ttl_s)
        return models.WorkerControl(
            stop=stop,
            cancel=frozenset(i for i, cancel in renewed.items() if cancel),
            lost=frozenset(r.job.id for r in running if r.job.id not in renewed),
        )

    def recover_expired(self, reap: Reap, *, lease_ttl_s: float) -> list[models.Job]:
        # Two phases, so that `reap` (a /proc scan, kills) runs outside any transaction: on
        # SQLite a transaction here would hold the only write lock meanwhile, and on Postgres
        # the rows' locks would stall their owners' heartbeats.
        with self.c.single() as s:
            rows = s.all("expired_leases")
        chosen = [
            job
            for job, row in ((self._job(r), r) for r in rows)
            if reap(job, row["host"], row["proc_session"])
        ]
        policy = self.policy() if chosen else models.Policy()
        forget = {"lease_s": common.FORGET_AFTER_LEASES * lease_ttl_s}
        with self.c.transaction() as s:
            recovered: list[models.Job] = []
            if chosen:
                # still processing under the same lease and still expired: a finish or a
                # renewal that came in while `reap` ran wins (Postgres locks the rows here)
                ids = self.c.param_ids([j.id for j in chosen])
                still = {r["id"]: r["lease_token"] for r in s.all("still_expired", {"ids": ids})}
                plans = [
                    models.Finish(job, *common.recovery_plan(job, policy))
                    for job in chosen
                    if still.get(job.id) == job.lease_token
                ]
                if plans:
                    applied = self._finish_in(s, plans)
                    recovered = [p.job for p, done in zip(plans, applied, strict=True) if done]
            s.run("forget_dead_workers", forget)
        return recovered

    def sweep_turn(self, holder: str, *, every_s: float) -> tuple[bool, str | None]:
        row = self._read("sweep_turn", {"holder": holder, "every_s": every_s})[0]
        version = row["settings_version"]
        return bool(row["mine"]), None if version is None else str(version)

    def deregister_workers(self, worker_ids: Sequence[str]) -> None:
        self._write("deregister_workers", {"ids": self.c.param_ids(list(worker_ids))})

    def list_workers(self, *, lease_ttl_s: float) -> list[models.WorkerInfo]:
        rows = self._read("list_workers", {"lease_s": lease_ttl_s})
        return [common.worker_from_row(r, self.c.to_time, self.c.strings) for r in rows]

    def request_stop(
        self, *, lease_ttl_s: float, worker_ids: Sequence[str] | None = None
    ) -> list[str]:
        ids = None if worker_ids is None else self.c.param_ids(list(worker_ids))
        with self.c.transaction() as s:
            stopped = [r["id"] for r in s.all("request_stop", {"lease_s": lease_ttl_s, "ids": ids})]
            if ids is None:
                s.run("mark_stop")
            if stopped:
                self._signal(s, "stop")
        return stopped

    def stop_requested_within(self, seconds: float) -> bool:
        return bool(self._read("stop_marked", {"within_s": seconds}))

    def has_work(self, queues: Sequence[str]) -> bool:
        rows = self._read("has_work", {"queues": self.c.param_ids(list(queues))})
        return bool(rows[0]["has_work"])

    def work_outlook(self, queues: Sequence[str]) -> tuple[int, datetime | None]:
        row = self._read("work_outlook", {"queues": self.c.param_ids(list(queues))})[0]
        next_at = row["next_at"]
        return int(row["n"]), None if next_at is None else self.c.to_time(next_at)

    # --- settings ---------------------------------------------------------------------------------
    def get_settings(self) -> dict[str, str]:
        with self.c.single() as s:
            return self._settings(s)

    def set_setting(self, key: str, value: str) -> None:
        self._write("set_setting", {"key": key, "value": value})

    def policy(self) -> models.Policy:
        return config.policy_from_rows(self.get_settings())

    # --- leadership -------------------------------------------------------------------------------
    def acquire_leadership(self, name: str, holder: str, *, ttl_s: float) -> bool:
        with self.c.transaction() as s:
            params = {"name": name, "holder": holder, "ttl_s": ttl_s}
            return s.one("acquire_leader", params) is not None

    def release_leadership(self, name: str, holder: str) -> None:
        self._write("release_leader", {"name": name, "holder": holder})

    def leader(self, name: str) -> str | None:
        rows = self._read("get_leader", {"name": name})
        return str(rows[0]["holder"]) if rows else None

    # --- schedules --------------------------------------------------------------------------------
    def add_schedule(self, schedule: models.Schedule) -> models.Schedule:
        with self.c.transaction() as s:
            row = s.one("add_schedule", common.schedule_params(schedule))
        if row is None:  # ON CONFLICT DO NOTHING: the name is taken
            raise common.unique_violation("queuectl_schedules", schedule.name)
        return common.schedule_from_row(row, self.c.to_time)

    def list_schedules(self) -> list[models.Schedule]:
        rows = self._read("list_schedules")
        return [common.schedule_from_row(r, self.c.to_time) for r in rows]

    def remove_schedule(self, name: str) -> None:
        with self.c.transaction() as s:
            if s.one("remove_schedule", {"name": name}) is None:
                raise errors.NotFound(f"no schedule named {name!r}")

    def pause_schedule(
        self, name: str, *, paused: bool, skip_to: datetime | None = None
    ) -> models.Schedule:
        params = {"name": name, "paused": paused, "skip_to": self.c.param_time(skip_to)}
        with self.c.transaction() as s:
            row = s.one("pause_schedule", params)
        if row is None:
            raise errors.NotFound(f"no schedule named {name!r}")
        return common.schedule_from_row(row, self.c.to_time)

    def fire_schedule(self, name: str, slot: datetime) -> bool:
        # The job id carries the slot (common.cron_job_id): firing a slot again inserts
        # nothing; schedule_to_fire locks the schedule's row (Postgres FOR UPDATE), so a second
        # orchestrator waits, then finds the slot taken.
        at = self.c.param_time(slot)
        with self.c.transaction() as s:
            row = s.one("schedule_to_fire", {"name": name, "slot": at})
            if row is None:
                return False
            spec = models.JobSpec(
                command=row["command"],
                queue=row["queue"],
                priority=row["priority"],
                timeout_s=row["timeout_s"],
                max_retries=row["max_retries"],
            )
            policy = config.policy_from_rows(self._settings(s))
            # the job's defaults filled as for every enqueue; the SQL's run_at is its now
            (job,) = common.job_rows([spec], [common.cron_job_id(name, slot)], policy, slot)
            inserted = s.run("fire_schedule", dict(zip(JOB_ROW, job, strict=True)))
            s.run("mark_schedule", {"name": name, "slot": at, "fired": inserted})
            if inserted:
                self._notify(s, {"*": 0})
        return inserted > 0

    # --- insights and sweeps ----------------------------------------------------------------------
    def stats(self, *, lease_ttl_s: float) -> models.QueueStats:
        with self.c.snapshot() as s:
            counts = s.all("count_by_queue_state")
            workers = s.one("count_workers", {"lease_s": lease_ttl_s})
        assert workers is not None  # an aggregate without GROUP BY: always one row
        return common.stats_from_counts(counts, workers)

    def run_samples(self, *, since_s: float, queue: str | None = None) -> list[models.RunSample]:
        rows = self._read("run_samples", {"since_s": since_s, "queue": queue})
        return [common.sample_from_row(r) for r in rows]

    def run_history(self, *, since_s: float, width_s: int) -> list[models.HistoryBucket]:
        rows = self._read("run_history", {"since_s": since_s, "width_s": width_s})
        return [
            models.HistoryBucket(int(r["slot"]), int(r["succeeded"]), int(r["finished"]))
            for r in rows
        ]

    def expire_jobs(self) -> int:
        with self.c.transaction() as s:
            rows = s.all("expire_jobs")
            self._settle(s, rows)  # a dead job's dependents are cancelled
        return len(rows)

    def prune_finished(self, state: models.JobState, *, older_than_s: float) -> int:
        # in batches, one transaction each: the locks are released between them
        params = {"state": str(state), "age_s": older_than_s, "batch": common.PRUNE_BATCH}
        total = 0
        while True:
            deleted = self._write("prune_finished", params)
            total += deleted
            if deleted < common.PRUNE_BATCH:
                return total

    def notify_due(self, *, window_s: float) -> int:
        return 0  # without notifications (SQLite) workers poll; postgres.py overrides this

    def oldest_due(self) -> dict[str, float]:
        return {r["queue"]: max(0.0, float(r["age_s"])) for r in self._read("oldest_due")}

    def listen(
        self, on_notify: OnNotify, stop: threading.Event, *, on_error: OnError = None
    ) -> bool:
        return self._watch(on_notify, stop, on_error)
