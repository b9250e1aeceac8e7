"""Client: queuectl's public Python API; the CLI and the dashboard are layers over it. Every
method checks its input before it writes anything, and raises the classes in queuectl.errors
the CLI's exit codes come from (UsageError -> 2, NotFound -> 3, ...)."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from queuectl import config, errors, models

if TYPE_CHECKING:
    from queuectl.backends.base import Backend, Enqueued
    from queuectl.policy import Entry
    from queuectl.specs import Duration

JobInput = str | models.JobSpec | Mapping[str, Any]  # a command, a spec, or a JSON-shaped dict
_WAIT_RECHECK_S = 2.0  # `wait` looks at least this often, woken or not
STATES = ", ".join(s.value for s in models.JobState)


class Client:
    """A handle on one queuectl database: enqueue, inspect, cancel, retry and wait on jobs.

    `Client()` resolves the database exactly as the CLI does: `url` (the CLI's --db), else
    QUEUECTL_DATABASE_URL, else the config file, else the default SQLite file in the user
    data dir. `settings` passes process settings already loaded (load_settings); `pool_size`
    keeps that many Postgres connections for use from several threads. The database is
    opened on first use, and every method checks its arguments before it touches it. Close
    the client when done (or use it as a context manager)."""

    # a plain class: a dataclass costs every CLI call ~1 ms to define
    def __init__(
        self,
        url: str | None = None,
        *,
        settings: config.Settings | None = None,
        pool_size: int = 0,
    ) -> None:
        if settings is None:
            settings = config.load_settings({"database_url": url})
        elif url is not None:
            raise errors.UsageError("give a url or settings, not both")
        self.settings = settings
        self._pool_size = pool_size
        self._backend: Backend | None = None
        self._owned = True
        self._closed = False

    @classmethod
    def over(cls, backend: Backend, settings: config.Settings | None = None) -> Client:
        """A client over a backend the caller opened (and closes: `close()` leaves it open)."""
        client = cls(settings=settings or config.Settings(database_url=backend.url))
        client._backend, client._owned = backend, False
        return client

    @property
    def backend(self) -> Backend:
        """The storage underneath (opened on first use), for what composes workers and
        orchestrators."""
        if self._backend is None:
            if self._closed:
                raise errors.UsageError("this Client is closed")
            from queuectl.backends import open_backend

            url = self.settings.database_url
            # only the default location is created on first use; a directory in a URL the
            # user gave must exist
            default = url == config.default_db_url(os.environ)
            self._backend = open_backend(url, pool_size=self._pool_size, create_dir=default)
        return self._backend

    def close(self) -> None:
        """Release the database connection(s); idempotent."""
        backend, self._backend = self._backend, None
        self._closed = True
        if backend is not None and self._owned:
            backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- enqueue ------------------------------------------------------------------------------
    def enqueue(
        self,
        command: JobInput,
        *,
        id: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay: Duration | None = None,
        run_at: datetime | str | None = None,
        timeout: Duration | None = None,
        max_retries: int | None = None,
        ttl: Duration | None = None,
        after: Iterable[str] | None = None,
        unique_key: str | None = None,
        unique_for: Duration | None = None,
    ) -> models.Job:
        """Add one job and return it as stored (pending, defaults filled in).

        `command` is a shell command (run with /bin/sh -c), or a whole job: a JobSpec or a
        dict in the JSON shape `queuectl enqueue` takes; the keyword arguments override its
        fields. Durations (`delay`, `timeout`, `ttl`) are a timedelta, seconds, or text like
        "30s" or "5m"; `run_at` is a datetime (naive means UTC) or an RFC 3339 string.
        `timeout=0` means no limit; None keeps the configured default (config job-timeout),
        as does `max_retries=None` (config max-retries). `ttl`: dead-letter the job if it
        has not started that long after it is due.

        `after`: job ids this job waits for; it is `blocked` until every one completed, and
        cancelled when one ends dead or cancelled (JobNotFound for an unknown id).
        `unique_key`: when an unfinished job (blocked, pending, processing, failed) holds the
        key, nothing is inserted and that job is returned with `conflict=True`; `unique_for`
        (a duration) also counts jobs with the key finished within it.

        UsageError on bad input or a command outside allowed-commands, DuplicateJob on a
        taken id; nothing is written then."""
        from queuectl import specs

        spec = specs.as_spec(command)
        overrides = specs.Overrides(
            id,
            queue,
            priority,
            delay,
            run_at,
            timeout,
            max_retries,
            ttl,
            None if after is None else tuple(specs.check_after(list(after), "after")),
            unique_key,
            unique_for,
        )
        if overrides != specs.Overrides():
            spec = specs.apply_overrides(spec, overrides, python=True)
        self._check_allowed([spec.command])
        (job,) = self.backend.enqueue([spec])
        return job

    def enqueue_many(self, jobs: Iterable[JobInput]) -> builtins.list[models.Job]:
        """Add every job in one transaction (all or nothing) and return them in order. Each
        is a JobSpec or a dict in the JSON shape of `queuectl enqueue --file` lines (a plain
        string is one command). A bad job raises UsageError naming its number (from 1)."""
        checked = self._checked(jobs)
        return self.backend.enqueue(checked) if checked else []

    def enqueue_bulk(self, jobs: Iterable[JobInput]) -> Enqueued:
        """`enqueue_many` for very large batches: returns the inserted rows (Enqueued.rows:
        id, command, queue, priority, run_at, timeout_s, max_retries, expires_at) instead of
        reading every job back. What `queuectl enqueue --file` uses."""
        checked = self._checked(jobs)
        if not checked:
            raise errors.UsageError("no jobs to enqueue")
        return self.backend.enqueue_bulk(checked)

    def _checked(self, jobs: Iterable[JobInput]) -> builtins.list[models.JobSpec]:
        from queuectl import specs

        checked = specs.as_specs(jobs)
        self._check_allowed([s.command for s in checked], numbered=True)
        return checked

    def _check_allowed(self, commands: builtins.list[str], *, numbered: bool = False) -> None:
        settings = self.backend.get_settings()
        if "allowed-commands" in settings:  # no list: the common case imports nothing
            from queuectl import allowlist

            allowlist.check_allowed(settings, commands, numbered=numbered)

    # --- jobs ---------------------------------------------------------------------------------
    def get(self, id: str) -> models.Job:
        """The job as stored now; JobNotFound when there is none."""
        return self.backend.get_job(id)

    def list(
        self,
        *,
        state: models.JobState | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        search: str | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> builtins.list[models.Job]:
        """Jobs, newest first: in one state and/or queue, whose id is `search` or whose
        command contains it; `before` (a job id) continues a listing after that job, and
        `after` (a job id) gives the `limit` jobs just newer than it (the previous page)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise errors.UsageError(f"limit must be a whole number >= 1, not {limit!r}")
        if before is not None and after is not None:
            raise errors.UsageError("give before or after, not both")
        return self.backend.list_jobs(
            state=_state(state),
            queue=queue,
            limit=limit,
            search=search,
            before=before,
            after=after,
        )

    def runs(self, id: str) -> builtins.list[models.Run]:
        """Every attempt of a job, oldest first (numbered from 1); JobNotFound."""
        return self.backend.runs(id)

    def run(self, id: str, attempt: int | None = None) -> models.Run | None:
        """One attempt (from 1; default the latest), or None when the job has not run yet
        (or not that often); NotFound for an attempt past the job's last one."""
        runs = self.backend.runs(id)
        if attempt is None:
            return runs[-1] if runs else None
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise errors.UsageError(f"attempt must be a whole number >= 1, not {attempt!r}")
        if attempt > len(runs):
            if runs:
                raise errors.NotFound(f"job {id} has {len(runs)} attempts, no attempt {attempt}")
            return None
        return runs[attempt - 1]

    def logs(self, id: str, attempt: int | None = None) -> str:
        """The captured stdout and stderr of an attempt (default: the latest), as stored:
        its tail, up to config output-limit bytes. "" when the job has not run yet."""
        run = self.run(id, attempt)
        return "" if run is None else run.output

    def cancel(self, id: str) -> models.Job:
        """Cancel a pending or failed job; a running one is killed by its worker within
        seconds (the job returned is still processing then). InvalidTransition when the job
        is finished, JobNotFound."""
        return self.backend.cancel(id)

    def cancel_many(self, ids: Iterable[str]) -> builtins.list[models.Job]:
        """`cancel` for several jobs, all or nothing: one bad id and nothing changes."""
        from queuectl import specs

        return self.backend.cancel_many(specs.check_ids(ids))

    def retry(self, id: str) -> models.Job:
        """Run a failed, dead or cancelled job again now (dead and cancelled jobs start over
        at 0 attempts). InvalidTransition for a pending, running or completed job."""
        (job,) = self.backend.retry([id])
        return job

    def retry_many(self, ids: Iterable[str]) -> builtins.list[models.Job]:
        """`retry` for several jobs, all or nothing: one bad id and nothing changes."""
        from queuectl import specs

        return self.backend.retry(specs.check_ids(ids))

    def wait(
        self, ids: str | Iterable[str], timeout: Duration | None = None, *, poll: float = 0.05
    ) -> builtins.list[models.Job]:
        """Block until every job is finished (completed, dead or cancelled) and return them
        in the order given. WaitTimeout (exit code 124) when `timeout` passes first; None
        waits for ever. JobNotFound at once for an unknown id (or one pruned meanwhile)."""
        from queuectl import specs

        wanted = specs.check_ids(ids)
        deadline = None if timeout is None else time.monotonic() + specs.seconds(timeout, "timeout")
        done: dict[str, models.Job] = {}
        # Woken by the database (Postgres: a NOTIFY when an awaited job ends; SQLite: any
        # commit), listening before the jobs are flagged and read, so no end is missed; a
        # look every `_WAIT_RECHECK_S` regardless, in case a wake-up was lost.
        with self.backend.done_listener() as listener:
            self.backend.watch(list(dict.fromkeys(wanted)))
            while True:
                for job_id in wanted:
                    if job_id not in done:
                        job = self.backend.get_job(job_id)
                        if job.state in models.TERMINAL_STATES:
                            done[job_id] = job
                if len(done) == len(set(wanted)):
                    return [done[job_id] for job_id in wanted]
                if deadline is not None and (left := deadline - time.monotonic()) <= 0:
                    unfinished = [i for i in dict.fromkeys(wanted) if i not in done]
                    raise errors.WaitTimeout(
                        f"timed out waiting for {len(unfinished)} of {len(set(wanted))} jobs "
                        f"({', '.join(unfinished[:5])}{', …' if len(unfinished) > 5 else ''})",
                        unfinished=unfinished,
                    )
                listener.wait(poll if deadline is None else max(0.0, min(poll, left)))
                poll = min(poll * 1.5, _WAIT_RECHECK_S)

    def dependencies(self, id: str) -> builtins.list[models.Dependency]:
        """The jobs `id` runs after (side "after") and the jobs that run after it (side
        "dependent"), each with its state; JobNotFound."""
        return self.backend.dependencies(id)

    # --- queues (DESIGN §8) -------------------------------------------------------------------
    def queues(self) -> builtins.list[dict[str, Any]]:
        """Every queue that has jobs or settings: name, paused, concurrency, rate, running,
        counts per state, age of the oldest due job (the `queue list --json` objects)."""
        from queuectl import queues

        return queues.overview(self.backend, lease_ttl_s=self.settings.lease_ttl_s)

    def pause_queues(self, names: Iterable[str]) -> builtins.list[models.QueueControl]:
        """Stop claiming these queues' jobs (running ones finish); idempotent, and fine for
        a queue without jobs yet."""
        return [self.backend.set_queue(n, paused=True) for n in _queue_names(names)]

    def resume_queues(self, names: Iterable[str]) -> builtins.list[models.QueueControl]:
        """Claim these queues' jobs again; idempotent."""
        return [self.backend.set_queue(n, paused=False) for n in _queue_names(names)]

    def set_queue(
        self, name: str, *, concurrency: object = ..., rate: object = ...
    ) -> models.QueueControl:
        """Limit a queue fleet-wide: `concurrency` jobs processing at once (an int >= 0),
        `rate` attempts started in any window (`"100/1m"` or `(100, 60.0)`); None (or
        "none") removes a limit, a keyword not given keeps it."""
        from queuectl import queues
        from queuectl.backends.base import UNSET

        (queue,) = _queue_names([name])
        changes: dict[str, Any] = {}
        if concurrency is not ...:
            changes["concurrency"] = queues.parse_concurrency(concurrency)
        if rate is not ...:
            changes["rate"] = queues.parse_rate(rate)
        if not changes:
            raise errors.UsageError("give a limit to set: concurrency or rate")
        return self.backend.set_queue(
            queue,
            concurrency=changes.get("concurrency", UNSET),
            rate=changes.get("rate", UNSET),
        )

    # --- status and stats ---------------------------------------------------------------------
    def status(self) -> models.QueueStats:
        """Job counts per state and per queue, live and busy workers, DLQ size."""
        return self.backend.stats(lease_ttl_s=self.settings.lease_ttl_s)

    def run_samples(
        self, since: Duration = "1h", *, queue: str | None = None
    ) -> builtins.list[models.RunSample]:
        """The attempts that finished within `since`: the raw data behind `stats`."""
        from queuectl import specs

        return self.backend.run_samples(since_s=specs.window(since), queue=queue)

    def run_history(
        self, since: Duration = "1h", *, width_s: int = 300
    ) -> builtins.list[models.HistoryBucket]:
        """The attempts that finished within `since`, counted per `width_s` seconds (slices
        aligned to the Unix epoch), oldest first; slices with none left out."""
        from queuectl import specs

        if isinstance(width_s, bool) or not isinstance(width_s, int) or width_s < 1:
            raise errors.UsageError(f"width_s must be a whole number >= 1, not {width_s!r}")
        return self.backend.run_history(since_s=specs.window(since), width_s=width_s)

    def stats(self, since: Duration = "1h", *, queue: str | None = None) -> dict[str, Any]:
        """Throughput, success rate, run and wait percentiles of the attempts finished
        within `since`, overall and per queue (the JSON `queuectl stats --json` prints)."""
        from queuectl import specs
        from queuectl import stats as stats_mod

        window_s = specs.window(since)
        return stats_mod.summarize(self.run_samples(window_s, queue=queue), window_s=window_s)

    def oldest_due(self) -> dict[str, float]:
        """Per queue: seconds the oldest due, unclaimed job has waited."""
        return self.backend.oldest_due()

    def workers(self) -> builtins.list[models.WorkerInfo]:
        """Live workers (heartbeat younger than the lease)."""
        return self.backend.list_workers(lease_ttl_s=self.settings.lease_ttl_s)

    def stop_workers(self, ids: Iterable[str] | None = None) -> builtins.list[str]:
        """Ask every live worker (or the named ones) to drain; returns the ids asked."""
        from queuectl import specs

        named = None if ids is None else specs.check_ids(ids)
        return self.backend.request_stop(lease_ttl_s=self.settings.lease_ttl_s, worker_ids=named)

    def ping(self) -> None:
        """One round trip; BackendUnavailable (or SchemaMissing) when the database is not
        usable."""
        self.backend.get_settings()

    # --- the dead letter queue ----------------------------------------------------------------
    def dlq(self, *, queue: str | None = None, limit: int = 100) -> builtins.list[models.Job]:
        """Dead jobs, newest first."""
        return self.list(state=models.JobState.DEAD, queue=queue, limit=limit)

    def dlq_retry(self, ids: Iterable[str]) -> builtins.list[models.Job]:
        """Dead jobs back to pending with attempts reset to 0 (max_retries kept); all or
        nothing, InvalidTransition for a job that is not dead."""
        from queuectl import specs

        return self.backend.retry(specs.check_ids(ids), dead_only=True)

    def dlq_retry_all(self) -> int:
        """Every dead job back to pending; how many."""
        return self.backend.retry_all_dead()

    def dlq_purge(self, *, queue: str | None = None, older_than: Duration | None = None) -> int:
        """Delete dead jobs and their attempts: every one, or those of `queue`, or those dead
        longer than `older_than` (a duration); how many."""
        return self.backend.purge_dead(**self._dead_filter(queue, older_than))

    def dlq_count(self, *, queue: str | None = None, older_than: Duration | None = None) -> int:
        """How many dead jobs `dlq_purge` with the same filters would delete now."""
        return self.backend.count_dead(**self._dead_filter(queue, older_than))

    @staticmethod
    def _dead_filter(queue: str | None, older_than: Duration | None) -> dict[str, Any]:
        from queuectl import specs

        return {
            "queue": None if queue is None else specs.check_queue(queue),
            "older_than_s": None if older_than is None else specs.seconds(older_than, "older_than"),
        }

    # --- schedules ----------------------------------------------------------------------------
    def add_schedule(
        self,
        name: str,
        *,
        cron: str,
        command: str | models.JobSpec,
        queue: str | None = None,
        priority: int | None = None,
        timeout: Duration | None = None,
        max_retries: int | None = None,
        tz: str | None = None,
    ) -> models.Schedule:
        """A recurring job: `command` (or a JobSpec's command, queue, priority, timeout and
        max_retries) enqueued once per slot of a 5-field cron expression, read in the IANA
        zone `tz` (default UTC). DuplicateSchedule when the name is taken."""
        from queuectl import specs

        job = specs.Overrides(
            queue=queue, priority=priority, timeout=timeout, max_retries=max_retries
        )
        schedule = specs.schedule(
            name, cron, specs.apply_overrides(specs.as_spec(command), job, python=True), tz
        )
        self._check_allowed([schedule.command])  # its jobs would all be refused by the workers
        return self.backend.add_schedule(schedule)

    def schedules(self) -> builtins.list[models.Schedule]:
        """Every schedule."""
        return self.backend.list_schedules()

    def next_slot(
        self, schedule: models.Schedule, after: datetime | None = None
    ) -> datetime | None:
        """When a schedule fires next (None while paused)."""
        from queuectl.cron import Cron

        if schedule.paused:
            return None
        return Cron.parse(schedule.cron, schedule.tz).next_after(after or models.utcnow())

    def run_schedule(self, name: str) -> models.Job:
        """Enqueue a schedule's job now, as a slot would (its command, queue, priority,
        timeout and max_retries), paused or not; its cron slots are untouched. The job's id
        is `NAME:now-<new id>` (a slot's is `NAME:<slot>`). NotFound; UsageError when the
        command is outside allowed-commands."""
        from queuectl import ids

        found = {s.name: s for s in self.backend.list_schedules()}.get(name)
        if found is None:
            raise errors.NotFound(f"no schedule named {name!r}")
        spec = models.JobSpec(
            command=found.command,
            id=f"{found.name}:now-{ids.new_id()}",
            queue=found.queue,
            priority=found.priority,
            timeout_s=found.timeout_s,
            max_retries=found.max_retries,
        )
        self._check_allowed([spec.command])
        (job,) = self.backend.enqueue([spec])
        return job

    def slot_job(
        self, schedule: models.Schedule, slot: datetime | None = None
    ) -> models.Job | None:
        """The job a schedule's slot enqueued (default: its last fired slot), found by the
        id the slot gave it; None when there is none (no slot fired yet, the job was pruned,
        or the slot was one a resume skipped)."""
        from queuectl.backends.common import cron_job_id

        slot = slot or schedule.last_slot
        if slot is None:
            return None
        try:
            return self.backend.get_job(cron_job_id(schedule.name, slot))
        except errors.JobNotFound:
            return None

    def remove_schedule(self, name: str) -> None:
        """Delete a schedule (jobs it already enqueued stay); NotFound."""
        self.backend.remove_schedule(name)

    def pause_schedule(self, name: str) -> models.Schedule:
        """Stop firing until resumed; slots passed while paused are skipped."""
        return self.backend.pause_schedule(name, paused=True)

    def resume_schedule(self, name: str) -> models.Schedule:
        """Fire again from the next slot (no backlog of the slots missed)."""
        from queuectl.schedules import resume_schedule

        return resume_schedule(self.backend, name)

    # --- queue policy (the database's settings table) -----------------------------------------
    def config_set(self, key: str, value: object) -> str:
        """Validate and store a policy key (`max-retries`, `job-timeout`, ...) for every
        worker; returns the value as stored. UsageError for an unknown key or bad value."""
        from queuectl import policy

        text = policy.policy_text(policy.parse_policy_value(key, policy.value_text(value)))
        self.backend.set_setting(key, text)
        return text

    def config_get(self, key: str) -> str:
        """A policy key's value as stored (or its default), e.g. "3"; UsageError."""
        from queuectl import policy

        policy.policy_key(key)
        return next(e.value for e in self.config_list() if e.key == key)

    def config_list(self) -> builtins.list[Entry]:
        """Every policy key: (key, value, source "database" or "default", help)."""
        from queuectl import policy

        return policy.entries(self.backend.get_settings())

    def migrate(self) -> int:
        """Create or upgrade the schema (idempotent); the schema version."""
        return self.backend.migrate()


def _queue_names(names: Iterable[str]) -> builtins.list[str]:
    from queuectl import specs

    out = [names] if isinstance(names, str) else builtins.list(names)
    if not out:
        raise errors.UsageError("give one or more queue names")
    return [specs.check_queue(name) for name in out]


def _state(value: models.JobState | str | None) -> models.JobState | None:
    if value is None:
        return None
    try:
        return models.JobState(value.lower())
    except (ValueError, AttributeError):
        raise errors.UsageError(f"unknown state {value!r} (one of: {STATES})") from None
