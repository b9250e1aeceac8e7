"""PostgresBackend: the Backend contract on PostgreSQL through psycopg 3."""

from __future__ import annotations

import contextlib
import re
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row

from queuectl import config, errors, models
from queuectl.backends import common, scrub, secrets_of
from queuectl.backends.base import Enqueued, Reap
from queuectl.backends.sqlfile import load_queries

Q = load_queries("postgres.sql")
MIGRATIONS = load_queries("postgres_schema.sql")
# the claim statement for every queue (False) and for a list of queues (True)
_CLAIM = {
    bool(named): Q["claim"].replace("/* pick */", Q["pick_queues" if named else "pick_any"])
    for named in (0, 1)
}
_MIGRATE_LOCK = 0x71756575  # pg_advisory_xact_lock key: one migrator at a time
# the longest a pooled call waits for a connection; short, because only a caller that
# arrives while none is left makes the pool try to connect again once it gave up (below)
_POOL_WAIT_S = 2.0
_POOL_RECONNECT_S = 2.0  # a pool's background reconnection gives up after this
_LISTEN_RETRY_S = (1.0, 8.0)  # the LISTEN session reconnects after 1, 2, 4, 8, 8 ... s


def _ts(value: datetime) -> datetime:
    return value


@contextlib.contextmanager
def _translated(secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Driver errors stop here and become queuectl errors (the CLI maps them to exit codes),
    without the password: libpq quotes a URL it cannot parse (`secrets`: secrets_of(url))."""
    try:
        yield
    except UnicodeEncodeError:
        # a lone surrogate: bytes that are not UTF-8 (an argument like $'\xff', which
        # Python decodes with surrogateescape) cannot name anything stored, nor be stored
        raise errors.UsageError("text must be valid UTF-8") from None
    except pgerrors.UndefinedTable:
        raise errors.SchemaMissing(
            "the database has no queuectl schema: run `queuectl db migrate`"
        ) from None
    except pgerrors.UniqueViolation as exc:
        raise errors.DuplicateJob(f"duplicate job id: {_detail(exc)}") from None
    except psycopg.OperationalError as exc:
        raise errors.BackendUnavailable(
            f"PostgreSQL unavailable: {_first_line(exc, secrets)}"
        ) from None
    except psycopg.DataError as exc:
        # Postgres text cannot hold a NUL (SQLite can, and simply matches nothing): a
        # dashboard search or id with %00 is bad input, not a database failure
        if "NUL" in str(exc):
            raise errors.UsageError("text must not contain a NUL character") from None
        raise errors.BackendError(f"PostgreSQL error: {_first_line(exc, secrets)}") from None
    except psycopg.Error as exc:
        raise errors.BackendError(f"PostgreSQL error: {_first_line(exc, secrets)}") from None


def _first_line(exc: Exception, secrets: tuple[str, ...] = ()) -> str:
    return scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0], secrets)


def _hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server already closed this idle connection. An idle connection has
    nothing to read, so a readable socket means a goodbye (FATAL: terminating connection)
    or end of file: one poll(2), no round trip. A silent network loss is not seen here."""
    if conn.closed:
        return True
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


def _detail(exc: psycopg.Error) -> str:
    match = re.search(r"\(id\)=\((.*)\)", exc.diag.message_detail or "")
    return f"{match.group(1)!r} already exists" if match else _first_line(exc)


class PostgresBackend:
    notifies = True
    single_host = False

    def __init__(self, url: str, *, pool_size: int = 0) -> None:
        self.url = url
        self._secrets = secrets_of(url)
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": 5,
            "application_name": "queuectl",
            "options": "-c timezone=UTC",
            # A database created with SQL_ASCII (a plain initdb without a UTF-8 locale)
            # makes the session encoding SQL_ASCII too, and psycopg then returns bytes:
            # `status` counted 0 of 170 jobs and named a queue b'default'. Text is UTF-8
            # on our side; SQL_ASCII stores the bytes as given, so asking for UTF-8 makes
            # such a database work like any other.
            "client_encoding": "utf8",
            # a half-open connection (partition, dead host) is noticed in ~25 s, not hours
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self._pool: Any = None
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._gate = common.Gate()
        self._version_checked = False
        if pool_size > 0:
            import logging

            from psycopg_pool import ConnectionPool  # only long-running processes need it

            # the pool would print multi-line warnings on its own; our callers log one event
            # per failed operation instead (claim_failed, heartbeat_failed, ...)
            logging.getLogger("psycopg.pool").propagate = False
            logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
            with _translated(self._secrets):
                psycopg.connect(self.url, **self._kwargs).close()  # fail fast, one clear line
                self._pool = ConnectionPool(
                    url,
                    min_size=1,
                    max_size=pool_size,
                    kwargs=self._kwargs,
                    open=False,
                    name="queuectl",
                    # while the server is down a call fails after this wait (and its caller
                    # logs and backs off) instead of blocking 30 s: a stuck claim would
                    # ignore SIGTERM and return a lease already most of its age old
                    timeout=_POOL_WAIT_S,
                    # the pool retries a lost connection at 1, 3, 7, 15 ... s, so after a
                    # long outage it would stay idle for as long again; giving up early lets
                    # the next caller's request start a fresh attempt at once
                    reconnect_timeout=_POOL_RECONNECT_S,
                )
                self._pool.open(wait=True, timeout=10)

    def hold_writes(self) -> contextlib.AbstractContextManager[None]:
        return self._gate.hold()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self._gate.passage(), _translated(self._secrets):
            if self._pool is not None:
                with self._pooled() as conn:
                    self._check_version(conn)
                    yield conn
                return
            with self._lock:
                if self._conn is not None and _hung_up(self._conn):
                    self._conn.close()
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.url, **self._kwargs)
                self._check_version(self._conn)
                yield self._conn

    def _check_version(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """Once per process: a schema that a newer queuectl migrated is refused before this
        one reads or writes anything (SQLite reads its version on open)."""
        if self._version_checked:
            return
        try:
            row = conn.execute("SELECT max(version) AS v FROM queuectl_schema").fetchone()
        except pgerrors.UndefinedTable:
            return  # no schema yet: `db migrate` creates it, anything else says so
        common.check_schema_version(int((row or {}).get("v") or 0), len(MIGRATIONS))
        self._version_checked = True

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection the server has not already hung up on. After a restart or a
        pg_terminate_backend every idle connection is dead, and each would fail the next
        statement sent on it (a claim, a heartbeat); they are replaced before use instead."""
        for _ in range(self._pool.max_size):
            with self._pool.connection() as conn:
                if not _hung_up(conn):
                    yield conn
                    return
                conn.close()  # the pool sees it closed and opens a replacement
        with self._pool.connection() as conn:  # every one was dead: a new one, or the error
            yield conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextlib.contextmanager
    def _one_statement(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """For a single statement: autocommit makes it atomic on its own, so there is no
        BEGIN and COMMIT, one round trip instead of three (claim and finish, the hot path)."""
        with self._connection() as conn, conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._conn is not None:
            self._conn.close()

    def migrate(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS queuectl_schema ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT coalesce(max(version), 0) AS v FROM queuectl_schema")
            current = _one(cur)["v"]
            common.check_schema_version(current, len(MIGRATIONS))
            for name, sql in MIGRATIONS.items():
                version = int(name.removeprefix("v"))
                if version > current:
                    cur.execute(sql.encode())
                    cur.execute("INSERT INTO queuectl_schema (version) VALUES (%s)", (version,))
                    current = version
            return int(current)

    # --- jobs ---------------------------------------------------------------------------------
    def enqueue(self, specs: Sequence[models.JobSpec]) -> list[models.Job]:
        job_ids = common.check_ids(specs)
        params = {
            "ids": job_ids,
            "commands": [s.command for s in specs],
            "queues": [s.queue for s in specs],
            "priorities": [s.priority for s in specs],
            "run_ats": [s.run_at for s in specs],
            "timeouts": [s.timeout_s for s in specs],
            "max_retries": [s.max_retries for s in specs],
            "expires": [s.expires_at for s in specs],
        }
        with self._tx() as cur:
            cur.execute(Q["enqueue"], params)
            by_id = {r["id"]: r for r in cur.fetchall()}
            _notify(cur, {r["queue"] for r in by_id.values() if r["run_at"] <= r["created_at"]})
        return [common.job_from_row(by_id[i], _ts) for i in job_ids]

    def enqueue_bulk(self, specs: Sequence[models.JobSpec]) -> Enqueued:
        job_ids = common.check_ids(specs)
        with self._tx() as cur:
            cur.execute(Q["enqueue_snapshot"])
            snapshot = _one(cur)
            # now() is the transaction's start: created_at and updated_at default to it too
            now = snapshot["now"]
            rows = common.job_rows(
                specs, job_ids, config.policy_from_rows(snapshot["settings"]), now
            )
            # COPY streams the rows in one go (values resolved here, nothing read back); a
            # taken id fails it with a UniqueViolation, which _translated makes DuplicateJob.
            # Times go as ISO text: psycopg's datetime dumper costs more than the rest of a row.
            stamp = now.isoformat()
            with cur.copy(Q["enqueue_copy"]) as copy:
                write = copy.write_row
                for job_id, command, queue, priority, run_at, timeout_s, retries, expires in rows:
                    write(
                        (
                            job_id,
                            command,
                            queue,
                            priority,
                            stamp if run_at is now else run_at.isoformat(),
                            timeout_s,
                            retries,
                            None if expires is None else expires.isoformat(),
                        )
                    )
            _notify(cur, {queue for _, _, queue, _, run_at, *_ in rows if run_at <= now})
        return Enqueued(now, rows)

    def get_job(self, job_id: str) -> models.Job:
        with self._tx() as cur:
            cur.execute(Q["get_job"], {"id": job_id})
            row = cur.fetchone()
        if row is None:
            raise errors.JobNotFound(job_id)
        return common.job_from_row(row, _ts)

    def list_jobs(
        self,
        *,
        state: models.JobState | None = None,
        queue: str | None = None,
        limit: int = 100,
        search: str | None = None,
        before: str | None = None,
    ) -> list[models.Job]:
        with self._tx() as cur:
            cur.execute(
                Q["list_jobs"],
                {
                    "state": None if state is None else str(state),
                    "queue": queue,
                    "limit": limit,
                    "search": search or None,
                    "before": before,
                },
            )
            return [common.job_from_row(r, _ts) for r in cur.fetchall()]

    def runs(self, job_id: str) -> list[models.Run]:
        with self._tx() as cur:
            cur.execute(Q["get_job"], {"id": job_id})
            if cur.fetchone() is None:
                raise errors.JobNotFound(job_id)
            cur.execute(Q["runs"], {"id": job_id})
            return [common.run_from_row(r, _ts) for r in cur.fetchall()]

    def _locked(
        self, cur: psycopg.Cursor[dict[str, Any]], job_ids: Sequence[str]
    ) -> list[models.Job]:
        cur.execute(Q["get_job_for_update"], {"ids": list(job_ids)})
        found = {r["id"]: common.job_from_row(r, _ts) for r in cur.fetchall()}
        for job_id in job_ids:
            if job_id not in found:
                raise errors.JobNotFound(job_id)
        return [found[i] for i in job_ids]

    def cancel(self, job_id: str) -> models.Job:
        with self._tx() as cur:
            (job,) = self._locked(cur, [job_id])
            common.check_transition(job, action="cancel", allowed=common.CANCELLABLE)
            query = "cancel_running" if job.state is models.JobState.PROCESSING else "cancel_now"
            cur.execute(Q[query], {"id": job_id})
            cancelled = common.job_from_row(_one(cur), _ts)
            if job.state is models.JobState.PROCESSING:
                # its worker heartbeats at once instead of within 2 s, and kills the job
                cur.execute("SELECT pg_notify('queuectl_control', %s)", (job.worker_id or "",))
            return cancelled

    def retry(self, job_ids: Sequence[str], *, dead_only: bool = False) -> list[models.Job]:
        allowed = frozenset({models.JobState.DEAD}) if dead_only else common.RETRYABLE
        with self._tx() as cur:
            for job in self._locked(cur, job_ids):
                common.check_transition(job, action="retry", allowed=allowed)
            cur.execute(Q["retry"], {"ids": list(job_ids)})
            by_id = {r["id"]: common.job_from_row(r, _ts) for r in cur.fetchall()}
            _notify(cur, {j.queue for j in by_id.values()})
        return [by_id[i] for i in job_ids]

    def retry_all_dead(self) -> int:
        with self._tx() as cur:
            cur.execute(Q["retry_all_dead"])
            count = cur.rowcount
            _notify(cur, {"*"} if count else set())
            return count

    def purge_dead(self) -> int:
        with self._tx() as cur:
            cur.execute(Q["purge_dead"])
            return cur.rowcount

    def seed_completed(self, queue: str, count: int) -> None:
        with self._tx() as cur:
            cur.execute(Q["seed_completed"], {"queue": queue, "count": count})

    def purge_queue(self, queue: str) -> int:
        with self._tx() as cur:
            cur.execute(Q["purge_queue"], {"queue": queue})
            return cur.rowcount

    # --- workers ------------------------------------------------------------------------------
    def claim(
        self, slot_ids: Sequence[str], queues: Sequence[str], *, host: str, lease_ttl_s: float
    ) -> list[models.Job]:
        if not slot_ids:
            return []
        params = {
            "limit": len(slot_ids),
            "slots": list(slot_ids),
            "host": host,
            "lease_s": lease_ttl_s,
            "queues": list(queues),
        }
        with self._one_statement() as cur:
            cur.execute(_CLAIM[bool(queues)], params)
            rows = cur.fetchall()
        jobs = [common.job_from_row(r, _ts) for r in rows]
        order = {slot: i for i, slot in enumerate(slot_ids)}
        return sorted(jobs, key=lambda j: order[j.worker_id or ""])

    def finish(self, job: models.Job, outcome: models.Outcome, retry_in: timedelta | None) -> bool:
        return self.finish_many([models.Finish(job, outcome, retry_in)])[0]

    def finish_many(self, items: Sequence[models.Finish]) -> list[bool]:
        if not items:
            return []
        # One statement updates a row once, from an arbitrary one of the items naming it, and
        # would report every such item applied; so a job named again goes to a later
        # statement, which finds it finished (the k-th report of a job runs in round k).
        rounds: list[list[int]] = []
        reports: dict[str, int] = {}  # job id -> its reports so far in this batch
        for index, item in enumerate(items):
            k = reports.get(item.job.id, 0)
            reports[item.job.id] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(index)
        applied = [False] * len(items)
        with self._tx() if len(rounds) > 1 else self._one_statement() as cur:
            for batch in rounds:
                cur.execute(Q["finish"], common.finish_columns([items[i] for i in batch]))
                done = {r["id"] for r in cur.fetchall()}
                for i in batch:
                    applied[i] = items[i].job.id in done
        return applied

    def heartbeat(
        self,
        workers: Sequence[models.WorkerInfo],
        running: Sequence[models.RunningJob],
        *,
        lease_ttl_s: float,
    ) -> models.WorkerControl:
        stop = False
        renewed: dict[str, bool] = {}
        with self._tx() as cur:
            if workers:
                first = workers[0]
                cur.execute(
                    Q["beat_workers"],
                    {
                        "host": first.host,
                        "pid": first.pid,
                        "queues": list(first.queues),
                        "ids": [w.id for w in workers],
                    },
                )
                stop = any(r["stop_requested"] for r in cur.fetchall())
            if running:
                cur.execute(
                    Q["beat_jobs"],
                    {
                        "ids": [r.job.id for r in running],
                        "tokens": [r.job.lease_token for r in running],
                        "sessions": [r.session for r in running],
                        "lease_s": lease_ttl_s,
                    },
                )
                renewed = {r["id"]: r["cancel_requested"] for r in cur.fetchall()}
                changed = [r for r in running if r.output is not None and r.job.id in renewed]
                if changed:
                    cur.execute(
                        Q["beat_output"],
                        {
                            "ids": [r.job.id for r in changed],
                            "attempts": [r.job.run_count for r in changed],
                            "outputs": [r.output for r in changed],
                            "bytes": [r.output_bytes for r in changed],
                        },
                    )
        return models.WorkerControl(
            stop=stop,
            cancel=frozenset(i for i, cancel in renewed.items() if cancel),
            lost=frozenset(r.job.id for r in running if r.job.id not in renewed),
        )

    def recover_expired(self, reap: Reap, *, lease_ttl_s: float) -> list[models.Job]:
        recovered: list[models.Job] = []
        policy = self.policy()
        with self._tx() as cur:
            cur.execute(Q["expired_leases"])
            rows = cur.fetchall()
            plans: list[models.Finish] = []
            for row in rows:
                job = common.job_from_row(row, _ts)
                if not reap(job, row["host"], row["proc_session"]):
                    continue
                plans.append(models.Finish(job, *common.recovery_plan(job, policy)))
            if plans:
                cur.execute(Q["finish"], common.finish_columns(plans))
                applied = {r["id"] for r in cur.fetchall()}
                recovered = [p.job for p in plans if p.job.id in applied]
            cur.execute(
                Q["forget_dead_workers"], {"lease_s": common.FORGET_AFTER_LEASES * lease_ttl_s}
            )
        return recovered

    def deregister_workers(self, worker_ids: Sequence[str]) -> None:
        with self._tx() as cur:
            cur.execute(Q["deregister_workers"], {"ids": list(worker_ids)})

    def list_workers(self, *, lease_ttl_s: float) -> list[models.WorkerInfo]:
        with self._tx() as cur:
            cur.execute(Q["list_workers"], {"lease_s": lease_ttl_s})
            return [
                models.WorkerInfo(
                    id=r["id"],
                    host=r["host"],
                    pid=r["pid"],
                    queues=tuple(r["queues"]),
                    started_at=r["started_at"],
                    heartbeat_at=r["heartbeat_at"],
                    stopping=r["stop_requested"],
                    current_jobs=tuple(r["current_jobs"]),
                    heartbeat_age_s=float(r["age_s"]),
                )
                for r in cur.fetchall()
            ]

    def request_stop(
        self, *, lease_ttl_s: float, worker_ids: Sequence[str] | None = None
    ) -> list[str]:
        ids = None if worker_ids is None else list(worker_ids)
        with self._tx() as cur:
            cur.execute(Q["request_stop"], {"lease_s": lease_ttl_s, "ids": ids})
            stopped = [r["id"] for r in cur.fetchall()]
            if ids is None:
                cur.execute(Q["mark_stop"])
            if stopped:
                cur.execute("SELECT pg_notify('queuectl_control', 'stop')")
            return stopped

    def stop_requested_within(self, seconds: float) -> bool:
        with self._tx() as cur:
            cur.execute(Q["stop_marked"], {"within_s": seconds})
            return cur.fetchone() is not None

    def has_work(self, queues: Sequence[str]) -> bool:
        with self._tx() as cur:
            cur.execute(Q["has_work"], {"queues": list(queues)})
            return bool(_one(cur)["exists"])

    # --- settings and stats -------------------------------------------------------------------
    def get_settings(self) -> dict[str, str]:
        with self._tx() as cur:
            cur.execute(Q["get_settings"])
            return {r["key"]: r["value"] for r in cur.fetchall()}

    def set_setting(self, key: str, value: str) -> None:
        with self._tx() as cur:
            cur.execute(Q["set_setting"], {"key": key, "value": value})

    def policy(self) -> models.Policy:
        return config.policy_from_rows(self.get_settings())

    def stats(self, *, lease_ttl_s: float) -> models.QueueStats:
        with self._tx() as cur:
            cur.execute(Q["count_by_queue_state"])
            counts = cur.fetchall()
            cur.execute(Q["count_workers"], {"lease_s": lease_ttl_s})
            workers = _one(cur)
        return common.stats_from_counts(counts, workers)

    def run_samples(self, *, since_s: float, queue: str | None = None) -> list[models.RunSample]:
        with self._tx() as cur:
            cur.execute(Q["run_samples"], {"since_s": since_s, "queue": queue})
            return [common.sample_from_row(r) for r in cur.fetchall()]

    # --- orchestrator -------------------------------------------------------------------------
    def acquire_leadership(self, name: str, holder: str, *, ttl_s: float) -> bool:
        with self._tx() as cur:
            cur.execute(Q["acquire_leader"], {"name": name, "holder": holder, "ttl_s": ttl_s})
            return cur.fetchone() is not None

    def release_leadership(self, name: str, holder: str) -> None:
        with self._tx() as cur:
            cur.execute(Q["release_leader"], {"name": name, "holder": holder})

    def leader(self, name: str) -> str | None:
        with self._tx() as cur:
            cur.execute(Q["get_leader"], {"name": name})
            row = cur.fetchone()
        return None if row is None else str(row["holder"])

    def add_schedule(self, schedule: models.Schedule) -> models.Schedule:
        try:
            with self._tx() as cur:
                cur.execute(Q["add_schedule"], common.schedule_params(schedule))
                return common.schedule_from_row(_one(cur), _ts)
        except errors.DuplicateJob:
            raise errors.DuplicateSchedule(
                f"a schedule named {schedule.name!r} already exists"
            ) from None

    def list_schedules(self) -> list[models.Schedule]:
        with self._tx() as cur:
            cur.execute(Q["list_schedules"])
            return [common.schedule_from_row(r, _ts) for r in cur.fetchall()]

    def remove_schedule(self, name: str) -> None:
        with self._tx() as cur:
            cur.execute(Q["remove_schedule"], {"name": name})
            if cur.fetchone() is None:
                raise errors.NotFound(f"no schedule named {name!r}")

    def pause_schedule(
        self, name: str, *, paused: bool, skip_to: datetime | None = None
    ) -> models.Schedule:
        with self._tx() as cur:
            cur.execute(Q["pause_schedule"], {"name": name, "paused": paused, "skip_to": skip_to})
            row = cur.fetchone()
        if row is None:
            raise errors.NotFound(f"no schedule named {name!r}")
        return common.schedule_from_row(row, _ts)

    def fire_schedule(self, name: str, slot: datetime) -> bool:
        params = {"name": name, "slot": slot, "job_id": common.cron_job_id(name, slot)}
        with self._tx() as cur:
            cur.execute(Q["fire_schedule"], params)
            fired = bool(_one(cur)["fired"])
            if fired:
                _notify(cur, {"*"})
            return fired

    def expire_jobs(self) -> int:
        with self._tx() as cur:
            cur.execute(Q["expire_jobs"])
            return cur.rowcount

    def prune_finished(self, state: models.JobState, *, older_than_s: float) -> int:
        params = {"state": str(state), "age_s": older_than_s, "batch": common.PRUNE_BATCH}
        total = 0
        while True:
            with self._tx() as cur:
                cur.execute(Q["prune_finished"], params)
                total += cur.rowcount
                if cur.rowcount < common.PRUNE_BATCH:
                    return total

    def notify_due(self, *, window_s: float) -> int:
        with self._tx() as cur:
            cur.execute(Q["notify_due"], {"window_s": window_s})
            return len(cur.fetchall())

    def oldest_due(self) -> dict[str, float]:
        with self._tx() as cur:
            cur.execute(Q["oldest_due"])
            return {r["queue"]: max(0.0, float(r["age_s"])) for r in cur.fetchall()}

    def listen(
        self,
        on_notify: Callable[[str, str], None],
        stop: threading.Event,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> bool:
        """Deliver wake-up and control notifications until `stop`; re-listen after a lost
        connection. Returns at once with False on backends without notifications."""
        pause = _LISTEN_RETRY_S[0]
        while not stop.is_set():
            try:
                with psycopg.connect(self.url, **self._kwargs) as conn:
                    conn.execute("LISTEN queuectl_wake")
                    conn.execute("LISTEN queuectl_control")
                    pause = _LISTEN_RETRY_S[0]
                    on_notify("queuectl_wake", "")  # whatever was missed while not listening
                    while not stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            on_notify(note.channel, note.payload)
            except Exception as exc:  # this thread must outlive any error: it re-listens
                if on_error is not None:
                    on_error(_first_line(exc, self._secrets))
                # backing off: while the server is down, one line per try; polling covers
                # the wake-ups missed meanwhile
                stop.wait(pause)
                pause = min(pause * 2, _LISTEN_RETRY_S[1])
        return True


def _one(cur: psycopg.Cursor[dict[str, Any]]) -> dict[str, Any]:
    row = cur.fetchone()
    assert row is not None
    return row


def _notify(cur: psycopg.Cursor[dict[str, Any]], queues: set[str]) -> None:
    """Wake idle workers of these queues when the transaction commits (LISTEN/NOTIFY)."""
    if queues:
        cur.execute(Q["notify_queues"], {"queues": sorted(queues)})
