"""Client: queuectl's public Python API. The CLI and the dashboard are thin layers over it.

    from queuectl import Client

    with Client() as q:                     # the database the CLI would use
        job = q.enqueue("echo hello", queue="mail", delay="5m")
        done = q.wait([job.id], timeout=60)

Every method validates its input before it writes anything, and raises the classes in
queuectl.errors the CLI's exit codes come from (UsageError -> 2, NotFound -> 3, ...).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from queuectl import config, errors, models

if TYPE_CHECKING:
    from types import TracebackType

    from queuectl.backends.base import Backend, Enqueued
    from queuectl.policy import Entry
    from queuectl.specs import Duration

JobInput = str | models.JobSpec | Mapping[str, Any]  # a command, a spec, or a JSON-shaped dict
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
        client = cls.__new__(cls)
        client.settings = settings or config.Settings(database_url=backend.url)
        client._backend = backend
        client._owned = False
        client._closed = False
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
    ) -> models.Job:
        """Add one job and return it as stored (pending, defaults filled in).

        `command` is a shell command (run with /bin/sh -c), or a whole job: a JobSpec or a
        dict in the JSON shape `queuectl enqueue` takes; the keyword arguments override its
        fields. Durations (`delay`, `timeout`, `ttl`) are a timedelta, seconds, or text like
        "30s" or "5m"; `run_at` is a datetime (naive means UTC) or an RFC 3339 string.
        `timeout=0` means no limit; None keeps the configured default (config job-timeout),
        as does `max_retries=None` (config max-retries). `ttl`: dead-letter the job if it
        has not started that long after it is due.

        UsageError on bad input or a command outside allowed-commands, DuplicateJob on a
        taken id; nothing is written then."""
        from queuectl import specs

        spec = _spec(command)
        overrides = specs.Overrides(
            id=id,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            timeout=timeout,
            max_retries=max_retries,
            ttl=ttl,
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
        checked = []
        for number, job in enumerate(jobs, start=1):
            try:
                checked.append(_spec(job))
            except errors.UsageError as exc:
                raise errors.UsageError(f"job {number}: {exc}") from None
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
    ) -> builtins.list[models.Job]:
        """Jobs, newest first: in one state and/or queue, whose id is `search` or whose
        command contains it; `before` (a job id) continues a listing after that job."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise errors.UsageError(f"limit must be a whole number >= 1, not {limit!r}")
        return self.backend.list_jobs(
            state=_state(state), queue=queue, limit=limit, search=search, before=before
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

    def retry(self, id: str) -> models.Job:
        """Run a failed, dead or cancelled job again now (dead and cancelled jobs start over
        at 0 attempts). InvalidTransition for a pending, running or completed job."""
        (job,) = self.backend.retry([id])
        return job

    def retry_many(self, ids: Iterable[str]) -> builtins.list[models.Job]:
        """`retry` for several jobs, all or nothing: one bad id and nothing changes."""
        return self.backend.retry(_ids(ids))

    def wait(
        self,
        ids: str | Iterable[str],
        timeout: Duration | None = None,
        *,
        poll: float = 0.05,
    ) -> builtins.list[models.Job]:
        """Block until every job is finished (completed, dead or cancelled) and return them
        in the order given. WaitTimeout (exit code 124) when `timeout` passes first; None
        waits for ever. JobNotFound at once for an unknown id (or one pruned meanwhile)."""
        from queuectl import specs

        wanted = _ids([ids] if isinstance(ids, str) else ids)
        deadline = None
        if timeout is not None:
            deadline = time.monotonic() + specs.seconds(timeout, "timeout")
        done: dict[str, models.Job] = {}
        while True:
            for job_id in wanted:
                if job_id not in done:
                    job = self.backend.get_job(job_id)
                    if job.state in models.TERMINAL_STATES:
                        done[job_id] = job
            if len(done) == len(set(wanted)):
                return [done[job_id] for job_id in wanted]
            # polling, backing off to 1 s: a Postgres NOTIFY could cut this short
            if deadline is not None and (left := deadline - time.monotonic()) <= 0:
                unfinished = [job_id for job_id in dict.fromkeys(wanted) if job_id not in done]
                raise errors.WaitTimeout(
                    f"timed out waiting for {len(unfinished)} of {len(set(wanted))} jobs "
                    f"({', '.join(unfinished[:5])}{', …' if len(unfinished) > 5 else ''})",
                    unfinished=unfinished,
                )
            time.sleep(poll if deadline is None else max(0.0, min(poll, left)))
            poll = min(poll * 1.5, 1.0)

    # --- status and stats ---------------------------------------------------------------------
    def status(self) -> models.QueueStats:
        """Job counts per state and per queue, live and busy workers, DLQ size."""
        return self.backend.stats(lease_ttl_s=self.settings.lease_ttl_s)

    def run_samples(
        self, since: Duration = "1h", *, queue: str | None = None
    ) -> builtins.list[models.RunSample]:
        """The attempts that finished within `since`: the raw data behind `stats`."""
        return self.backend.run_samples(since_s=_window(since), queue=queue)

    def stats(self, since: Duration = "1h", *, queue: str | None = None) -> dict[str, Any]:
        """Throughput, success rate, run and wait percentiles of the attempts finished
        within `since`, overall and per queue (the JSON `queuectl stats --json` prints)."""
        from queuectl import stats as stats_mod

        window_s = _window(since)
        samples = self.backend.run_samples(since_s=window_s, queue=queue)
        return stats_mod.summarize(samples, window_s=window_s)

    def oldest_due(self) -> dict[str, float]:
        """Per queue: seconds the oldest due, unclaimed job has waited."""
        return self.backend.oldest_due()

    def workers(self) -> builtins.list[models.WorkerInfo]:
        """Live workers (heartbeat younger than the lease)."""
        return self.backend.list_workers(lease_ttl_s=self.settings.lease_ttl_s)

    def stop_workers(self, ids: Iterable[str] | None = None) -> builtins.list[str]:
        """Ask every live worker (or the named ones) to drain; returns the ids asked."""
        return self.backend.request_stop(
            lease_ttl_s=self.settings.lease_ttl_s,
            worker_ids=None if ids is None else _ids(ids),
        )

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
        return self.backend.retry(_ids(ids), dead_only=True)

    def dlq_retry_all(self) -> int:
        """Every dead job back to pending; how many."""
        return self.backend.retry_all_dead()

    def dlq_purge(self) -> int:
        """Delete every dead job and its attempts; how many."""
        return self.backend.purge_dead()

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
    ) -> models.Schedule:
        """A recurring job: `command` (or a JobSpec's command, queue, priority, timeout and
        max_retries) enqueued once per slot of a 5-field cron expression (UTC).
        DuplicateSchedule when the name is taken."""
        from queuectl import specs
        from queuectl.cron import Cron

        Cron.parse(cron)  # reject a bad expression before storing it
        spec = specs.apply_overrides(
            _spec(command),
            specs.Overrides(
                queue=queue, priority=priority, timeout=timeout, max_retries=max_retries
            ),
            python=True,
        )
        self._check_allowed([spec.command])  # its jobs would all be refused by the workers
        if not isinstance(name, str) or len(name) > 64:
            raise errors.UsageError(
                f"schedule name {str(name)[:20]!r}… is longer than 64 characters"
            )
        return self.backend.add_schedule(
            models.Schedule(
                name=specs.check_id(name),
                cron=cron.strip(),
                command=spec.command,
                queue=spec.queue,
                priority=spec.priority,
                timeout_s=spec.timeout_s,
                max_retries=spec.max_retries,
            )
        )

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
        return Cron.parse(schedule.cron).next_after(after or models.utcnow())

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

        text = policy.policy_text(policy.parse_policy_value(key, _policy_input(value)))
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

    def policy(self) -> models.Policy:
        """The typed policy every worker applies now."""
        return self.backend.policy()

    def migrate(self) -> int:
        """Create or upgrade the schema (idempotent); the schema version."""
        return self.backend.migrate()


def _spec(job: object) -> models.JobSpec:
    from queuectl import specs

    if isinstance(job, str):
        return models.JobSpec(command=specs.check_command(job))
    if isinstance(job, Mapping):
        return specs.spec_from_object(dict(job))
    return specs.check_spec(job)


def _state(value: models.JobState | str | None) -> models.JobState | None:
    if value is None:
        return None
    try:
        return models.JobState(value.lower())
    except (ValueError, AttributeError):
        raise errors.UsageError(f"unknown state {value!r} (one of: {STATES})") from None


def _ids(ids: Iterable[str]) -> builtins.list[str]:
    out = [ids] if isinstance(ids, str) else builtins.list(ids)
    if not out:
        raise errors.UsageError("no job ids given")
    for job_id in out:
        if not isinstance(job_id, str):
            raise errors.UsageError(f"a job id must be a string, not {type(job_id).__name__}")
    return out


def _window(since: Duration) -> float:
    from queuectl import specs

    window_s = specs.seconds(since, "since")
    if window_s <= 0:
        raise errors.UsageError("since must be longer than 0s")
    return window_s


def _policy_input(value: object) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds()}s"
    if value is None:
        return "none"
    if isinstance(value, builtins.list | tuple):
        import json

        return json.dumps(builtins.list(value))
    return str(value)
