"""SqliteBackend: the Backend contract on one SQLite file (stdlib sqlite3, WAL)."""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from queuectl import config, errors, models
from queuectl.backends import common
from queuectl.backends.base import Enqueued, JobRow, Reap
from queuectl.backends.sqlfile import load_queries

Q = load_queries("sqlite.sql")
_WATCH_S = 0.005  # listen(): how often an idle worker looks for a commit by someone else
MIGRATIONS = load_queries("sqlite_schema.sql")
BUSY_TIMEOUT_MS = 30_000  # many worker processes queue for the one write lock; none waits long
_MAX_IDLE = 8  # idle pooled connections kept per process; more are opened when needed
_BULK_CACHE_KIB = -16384  # enqueue_bulk's page cache: 16 MiB (a negative cache_size counts KiB)


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@contextlib.contextmanager
def _translated(path: Path | None = None) -> Iterator[None]:
    """Driver errors stop here and become queuectl errors (the CLI maps them to exit codes);
    `path` names the file in the message (which of several databases is read-only?)."""
    try:
        yield
    except UnicodeEncodeError:
        # a lone surrogate: bytes that are not UTF-8 (an argument like $'\xff', which
        # Python decodes with surrogateescape) cannot name anything stored, nor be stored
        raise errors.UsageError("text must be valid UTF-8") from None
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "no such table" in text:
            raise errors.SchemaMissing(
                f"the database has no queuectl schema ({text}): run `queuectl db migrate`"
            ) from None
        where = "" if path is None else f" ({path})"
        raise errors.BackendUnavailable(f"SQLite unavailable: {text}{where}") from None
    except sqlite3.IntegrityError as exc:
        raise errors.BackendError(f"SQLite constraint failed: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise errors.BackendUnavailable(f"SQLite error: {exc}") from None


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """PRAGMA journal_mode = WAL, waiting as long as the busy timeout: the switch needs the
    file to itself and, unlike other statements, gives up at once ("database is locked")
    when another process holds it, as when several workers start on a new file together."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class SqliteBackend:
    notifies = False
    single_host = True

    def __init__(self, url: str, path: Path, *, create_dir: bool = False) -> None:
        self.url = url
        self.path = path
        # a small pool: a connection serves one thread at a time, and a worker's short-lived
        # job threads reuse the idle ones instead of each opening (and leaking) its own
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._writer = threading.RLock()
        self._closed = False
        if create_dir:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise errors.BackendUnavailable(
                    f"cannot create {path.parent}: {exc.strerror}"
                ) from None
        elif not path.parent.is_dir():
            # a path the user gave: a mistyped directory must not silently become a new,
            # empty queue (SQLite creates the file itself, as usual, in an existing one)
            raise errors.BackendUnavailable(
                f"cannot open {path}: directory {path.parent} does not exist"
            )
        with self._use() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        common.check_schema_version(version, len(MIGRATIONS))
        if version < len(MIGRATIONS):
            self.migrate()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,  # pooled: used by one thread at a time
            )
        except sqlite3.OperationalError as exc:
            raise errors.BackendUnavailable(f"cannot open {self.path}: {exc}") from None
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextlib.contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection from the pool for one unit of work."""
        with _translated(self.path):
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                with self._pool_lock:
                    keep = not self._closed and len(self._idle) < _MAX_IDLE
                    if keep:
                        self._idle.append(conn)
                if not keep:
                    conn.close()

    def _read(self, name: str, params: dict[str, Any]) -> list[Any]:
        return self._read_sql(Q[name], params)

    def _read_sql(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with self._use() as conn:
            return conn.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE for writes: the write lock is taken before the first read, so a
        read-then-write transaction cannot be overtaken by another process's write."""
        # Threads of this process queue for the write lock here, not inside SQLite: its busy
        # handler sleeps 1, 2, 5, 10... ms between tries, where a Python lock hands over at
        # once (claims and batched finishes of one worker alternate thousands of times a
        # second). Other processes still meet SQLite's lock and its busy timeout.
        with self._writer if write else contextlib.nullcontext(), self._use() as conn:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def hold_writes(self) -> Iterator[None]:
        with self._writer:  # every write transaction of this process runs under it (_tx)
            yield

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def migrate(self) -> int:
        with self._use() as conn:
            # WAL lets readers (status, list) run while a worker writes
            _switch_to_wal(conn)
        with self._tx() as conn:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            common.check_schema_version(current, len(MIGRATIONS))
            for name, sql in MIGRATIONS.items():
                version = int(name.removeprefix("v"))
                if version > current:
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                    current = version
            return current

    # --- jobs ---------------------------------------------------------------------------------
    def enqueue(self, specs: Sequence[models.JobSpec]) -> list[models.Job]:
        job_ids = common.check_ids(specs)
        with self._tx() as conn:
            given = [s.id for s in specs if s.id]
            if given:
                taken = conn.execute(Q["existing_ids"], {"ids": json.dumps(given)}).fetchone()
                if taken:
                    raise errors.DuplicateJob(f"duplicate job id: {taken['id']!r} already exists")
            policy = self._policy(conn)
            now = time.time()
            conn.executemany(
                Q["enqueue"],
                (
                    {
                        "id": job_id,
                        "command": spec.command,
                        "queue": spec.queue,
                        "priority": spec.priority,
                        "run_at": _epoch(spec.run_at) or now,
                        "timeout_s": _timeout(spec.timeout_s, policy),
                        "max_retries": policy.max_retries
                        if spec.max_retries is None
                        else spec.max_retries,
                        "now": now,
                        "expires_at": _epoch(spec.expires_at),
                    }
                    for job_id, spec in zip(job_ids, specs, strict=True)
                ),
            )
            rows = conn.execute(Q["jobs_by_ids"], {"ids": json.dumps(job_ids)}).fetchall()
        by_id = {r["id"]: r for r in rows}
        return [common.job_from_row(by_id[i], _ts) for i in job_ids]

    def enqueue_bulk(self, specs: Sequence[models.JobSpec]) -> Enqueued:
        job_ids = common.check_ids(specs)
        # whole microseconds, so the times stored (floats) read back as the ones returned
        now = _ts(time.time())
        with self._tx() as conn:
            if given := [s.id for s in specs if s.id]:
                taken = conn.execute(Q["existing_ids"], {"ids": json.dumps(given)}).fetchone()
                if taken:
                    raise errors.DuplicateJob(f"duplicate job id: {taken['id']!r} already exists")
            rows = common.job_rows(specs, job_ids, self._policy(conn), now)
            head, values = Q["enqueue_values"].removesuffix(";").rsplit("VALUES", 1)
            values = values.strip()
            # as many rows a statement as SQLite's limit on bound parameters allows, up to 1000
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            per_statement = max(1, min(1000, limit // values.count("?")))
            # a bigger page cache for the batch: in the default 2 MiB a large one spills dirty
            # index pages to the WAL mid-transaction, and writes them again (20% slower)
            cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
            conn.execute(f"PRAGMA cache_size = {_BULK_CACHE_KIB}")
            try:
                for start in range(0, len(rows), per_statement):
                    chunk = rows[start : start + per_statement]
                    sql = f"{head}VALUES {', '.join([values] * len(chunk))}"
                    conn.execute(sql, _flat_params(chunk, now))
            finally:
                conn.execute(f"PRAGMA cache_size = {int(cache_size)}")  # the pooled default
        return Enqueued(now, rows)

    def get_job(self, job_id: str) -> models.Job:
        rows = self._read("get_job", {"id": job_id})
        if not rows:
            raise errors.JobNotFound(job_id)
        return common.job_from_row(rows[0], _ts)

    def list_jobs(
        self,
        *,
        state: models.JobState | None = None,
        queue: str | None = None,
        limit: int = 100,
        search: str | None = None,
        before: str | None = None,
    ) -> list[models.Job]:
        params = {
            "state": None if state is None else str(state),
            "queue": queue,
            "limit": limit,
            "search": search or None,
            "before": before,
        }
        return [common.job_from_row(r, _ts) for r in self._read("list_jobs", params)]

    def runs(self, job_id: str) -> list[models.Run]:
        with self._tx(write=False) as conn:
            if conn.execute(Q["get_job"], {"id": job_id}).fetchone() is None:
                raise errors.JobNotFound(job_id)
            rows = conn.execute(Q["runs"], {"id": job_id}).fetchall()
        return [common.run_from_row(r, _ts) for r in rows]

    def _jobs(self, conn: sqlite3.Connection, job_ids: Sequence[str]) -> list[models.Job]:
        rows = conn.execute(Q["jobs_by_ids"], {"ids": json.dumps(list(job_ids))}).fetchall()
        found = {r["id"]: common.job_from_row(r, _ts) for r in rows}
        for job_id in job_ids:
            if job_id not in found:
                raise errors.JobNotFound(job_id)
        return [found[i] for i in job_ids]

    def cancel(self, job_id: str) -> models.Job:
        with self._tx() as conn:
            (job,) = self._jobs(conn, [job_id])
            common.check_transition(job, action="cancel", allowed=common.CANCELLABLE)
            query = "cancel_running" if job.state is models.JobState.PROCESSING else "cancel_now"
            row = conn.execute(Q[query], {"id": job_id, "now": time.time()}).fetchone()
        return common.job_from_row(row, _ts)

    def retry(self, job_ids: Sequence[str], *, dead_only: bool = False) -> list[models.Job]:
        allowed = frozenset({models.JobState.DEAD}) if dead_only else common.RETRYABLE
        with self._tx() as conn:
            for job in self._jobs(conn, job_ids):
                common.check_transition(job, action="retry", allowed=allowed)
            rows = conn.execute(
                Q["retry"], {"ids": json.dumps(list(job_ids)), "now": time.time()}
            ).fetchall()
        by_id = {r["id"]: common.job_from_row(r, _ts) for r in rows}
        return [by_id[i] for i in job_ids]

    def retry_all_dead(self) -> int:
        with self._tx() as conn:
            return conn.execute(Q["retry_all_dead"], {"now": time.time()}).rowcount

    def purge_dead(self) -> int:
        with self._tx() as conn:
            return conn.execute(Q["purge_dead"]).rowcount

    def seed_completed(self, queue: str, count: int) -> None:
        with self._tx() as conn:
            params = {"queue": queue, "count": count, "then": time.time() - 86400}
            conn.execute(Q["seed_completed"], params)
            conn.execute(Q["seed_runs"], params)

    def purge_queue(self, queue: str) -> int:
        with self._tx() as conn:
            return conn.execute(Q["purge_queue"], {"queue": queue}).rowcount

    # --- workers ------------------------------------------------------------------------------
    def claim(
        self, slot_ids: Sequence[str], queues: Sequence[str], *, host: str, lease_ttl_s: float
    ) -> list[models.Job]:
        if not slot_ids:
            return []
        pick, params = _pick(queues)
        if not self._read_sql(pick, params | {"now": time.time(), "limit": 1}):
            return []  # nothing due: an idle poll never takes the write lock
        with self._tx() as conn:
            now = time.time()
            picked = conn.execute(pick, params | {"now": now, "limit": len(slot_ids)}).fetchall()
            if not picked:
                return []
            rows = conn.execute(
                Q["claim"],
                {
                    "ids": json.dumps([r["id"] for r in picked]),
                    "slots": json.dumps(list(slot_ids)),
                    "host": host,
                    "now": now,
                    "lease_s": lease_ttl_s,
                },
            ).fetchall()
            jobs = [common.job_from_row(r, _ts) for r in rows]
            conn.executemany(
                Q["insert_run"],
                (
                    {
                        "job_id": job.id,
                        "attempt": job.run_count,
                        "worker_id": job.worker_id,
                        "started_at": now,
                        "queue": job.queue,
                        "due_at": job.run_at.timestamp(),
                    }
                    for job in jobs
                ),
            )
        order = {slot: i for i, slot in enumerate(slot_ids)}
        return sorted(jobs, key=lambda j: order[j.worker_id or ""])

    def finish(self, job: models.Job, outcome: models.Outcome, retry_in: timedelta | None) -> bool:
        return self.finish_many([models.Finish(job, outcome, retry_in)])[0]

    def finish_many(self, items: Sequence[models.Finish]) -> list[bool]:
        if not items:
            return []
        # one write transaction, so one commit (and one WAL sync) for the whole batch
        with self._tx() as conn:
            return [self._finish(conn, f.job, f.outcome, f.retry_in) for f in items]

    def _finish(
        self,
        conn: sqlite3.Connection,
        job: models.Job,
        outcome: models.Outcome,
        retry_in: timedelta | None,
    ) -> bool:
        params = common.finish_params(job, outcome, retry_in) | {"now": time.time()}
        done = conn.execute(Q["finish"], params).fetchone()
        if done is None:
            return False
        conn.execute(Q["finish_run"], params | {"run_count": done["run_count"]})
        return True

    def heartbeat(
        self,
        workers: Sequence[models.WorkerInfo],
        running: Sequence[models.RunningJob],
        *,
        lease_ttl_s: float,
    ) -> models.WorkerControl:
        stop = False
        renewed: dict[str, bool] = {}
        with self._tx() as conn:
            now = time.time()
            for w in workers:
                row = conn.execute(
                    Q["beat_workers"],
                    {
                        "id": w.id,
                        "host": w.host,
                        "pid": w.pid,
                        "queues": json.dumps(w.queues),
                        "now": now,
                    },
                ).fetchone()
                stop = stop or bool(row["stop_requested"])
            for r in running:
                row = conn.execute(
                    Q["beat_jobs"],
                    {
                        "id": r.job.id,
                        "token": r.job.lease_token,
                        "now": now,
                        "lease_s": lease_ttl_s,
                        "session": r.session,
                    },
                ).fetchone()
                if row is None:
                    continue
                renewed[r.job.id] = bool(row["cancel_requested"])
                if r.output is not None:
                    conn.execute(
                        Q["beat_output"],
                        {
                            "id": r.job.id,
                            "attempt": r.job.run_count,
                            "output": r.output,
                            "bytes": r.output_bytes,
                        },
                    )
        return models.WorkerControl(
            stop=stop,
            cancel=frozenset(i for i, cancel in renewed.items() if cancel),
            lost=frozenset(r.job.id for r in running if r.job.id not in renewed),
        )

    def recover_expired(self, reap: Reap, *, lease_ttl_s: float) -> list[models.Job]:
        recovered: list[models.Job] = []
        with self._tx() as conn:
            now = time.time()
            rows = conn.execute(Q["expired_leases"], {"now": now}).fetchall()
            policy = self._policy(conn) if rows else models.Policy()
            for row in rows:
                job = common.job_from_row(row, _ts)
                if not reap(job, row["host"], row["proc_session"]):
                    continue
                outcome, retry_in = common.recovery_plan(job, policy)
                if self._finish(conn, job, outcome, retry_in):
                    recovered.append(job)
            conn.execute(
                Q["forget_dead_workers"],
                {"now": now, "lease_s": common.FORGET_AFTER_LEASES * lease_ttl_s},
            )
        return recovered

    def deregister_workers(self, worker_ids: Sequence[str]) -> None:
        with self._tx() as conn:
            conn.execute(Q["deregister_workers"], {"ids": json.dumps(list(worker_ids))})

    def list_workers(self, *, lease_ttl_s: float) -> list[models.WorkerInfo]:
        rows = self._read("list_workers", {"now": time.time(), "lease_s": lease_ttl_s})
        return [
            models.WorkerInfo(
                id=r["id"],
                host=r["host"],
                pid=r["pid"],
                queues=tuple(json.loads(r["queues"])),
                started_at=_ts(r["started_at"]),
                heartbeat_at=_ts(r["heartbeat_at"]),
                stopping=bool(r["stop_requested"]),
                current_jobs=tuple(json.loads(r["current_jobs"])),
                heartbeat_age_s=max(0.0, float(r["age_s"])),
            )
            for r in rows
        ]

    def request_stop(
        self, *, lease_ttl_s: float, worker_ids: Sequence[str] | None = None
    ) -> list[str]:
        ids = None if worker_ids is None else json.dumps(list(worker_ids))
        with self._tx() as conn:
            now = time.time()
            rows = conn.execute(
                Q["request_stop"], {"now": now, "lease_s": lease_ttl_s, "ids": ids}
            ).fetchall()
            if ids is None:
                conn.execute(Q["mark_stop"], {"now": now})
        return [r["id"] for r in rows]

    def stop_requested_within(self, seconds: float) -> bool:
        return bool(self._read("stop_marked", {"now": time.time(), "within_s": seconds}))

    def has_work(self, queues: Sequence[str]) -> bool:
        rows = self._read("has_work", {"now": time.time(), "queues": json.dumps(list(queues))})
        return bool(rows[0]["has_work"])

    # --- settings and stats -------------------------------------------------------------------
    def get_settings(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._read("get_settings", {})}

    def _policy(self, conn: sqlite3.Connection) -> models.Policy:
        return config.policy_from_rows(
            {r["key"]: r["value"] for r in conn.execute(Q["get_settings"])}
        )

    def set_setting(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute(Q["set_setting"], {"key": key, "value": value, "now": time.time()})

    def policy(self) -> models.Policy:
        return config.policy_from_rows(self.get_settings())

    def stats(self, *, lease_ttl_s: float) -> models.QueueStats:
        with self._tx(write=False) as conn:
            counts = conn.execute(Q["count_by_queue_state"]).fetchall()
            workers = conn.execute(
                Q["count_workers"], {"now": time.time(), "lease_s": lease_ttl_s}
            ).fetchone()
        return common.stats_from_counts(counts, workers)

    def run_samples(self, *, since_s: float, queue: str | None = None) -> list[models.RunSample]:
        rows = self._read("run_samples", {"now": time.time(), "since_s": since_s, "queue": queue})
        return [common.sample_from_row(r) for r in rows]

    # --- orchestrator -------------------------------------------------------------------------
    def acquire_leadership(self, name: str, holder: str, *, ttl_s: float) -> bool:
        with self._tx() as conn:
            params = {"name": name, "holder": holder, "ttl_s": ttl_s, "now": time.time()}
            return conn.execute(Q["acquire_leader"], params).fetchone() is not None

    def release_leadership(self, name: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute(Q["release_leader"], {"name": name, "holder": holder})

    def leader(self, name: str) -> str | None:
        rows = self._read("get_leader", {"name": name, "now": time.time()})
        return str(rows[0]["holder"]) if rows else None

    def add_schedule(self, schedule: models.Schedule) -> models.Schedule:
        params = common.schedule_params(schedule) | {"now": time.time()}
        with self._tx() as conn:
            try:
                row = conn.execute(Q["add_schedule"], params).fetchone()
            except sqlite3.IntegrityError:
                raise errors.DuplicateSchedule(
                    f"a schedule named {schedule.name!r} already exists"
                ) from None
        return common.schedule_from_row(row, _ts)

    def list_schedules(self) -> list[models.Schedule]:
        return [common.schedule_from_row(r, _ts) for r in self._read("list_schedules", {})]

    def remove_schedule(self, name: str) -> None:
        with self._tx() as conn:
            if conn.execute(Q["remove_schedule"], {"name": name}).fetchone() is None:
                raise errors.NotFound(f"no schedule named {name!r}")

    def pause_schedule(
        self, name: str, *, paused: bool, skip_to: datetime | None = None
    ) -> models.Schedule:
        params = {"name": name, "paused": paused, "skip_to": _epoch(skip_to)}
        with self._tx() as conn:
            row = conn.execute(Q["pause_schedule"], params).fetchone()
        if row is None:
            raise errors.NotFound(f"no schedule named {name!r}")
        return common.schedule_from_row(row, _ts)

    def fire_schedule(self, name: str, slot: datetime) -> bool:
        with self._tx() as conn:
            row = conn.execute(
                Q["schedule_to_fire"], {"name": name, "slot": slot.timestamp()}
            ).fetchone()
            if row is None:
                return False
            policy = self._policy(conn)
            inserted = conn.execute(
                Q["fire_schedule"],
                {
                    "job_id": common.cron_job_id(name, slot),
                    "command": row["command"],
                    "queue": row["queue"],
                    "priority": row["priority"],
                    "now": time.time(),
                    "timeout_s": _timeout(row["timeout_s"], policy),
                    "max_retries": policy.max_retries
                    if row["max_retries"] is None
                    else row["max_retries"],
                },
            ).rowcount
            conn.execute(
                Q["mark_schedule"], {"name": name, "slot": slot.timestamp(), "fired": inserted}
            )
        return inserted > 0

    def expire_jobs(self) -> int:
        with self._tx() as conn:
            return conn.execute(Q["expire_jobs"], {"now": time.time()}).rowcount

    def prune_finished(self, state: models.JobState, *, older_than_s: float) -> int:
        params = {
            "state": str(state),
            "age_s": older_than_s,
            "now": time.time(),
            "batch": common.PRUNE_BATCH,
        }
        total = 0
        while True:
            with self._tx() as conn:
                deleted = conn.execute(Q["prune_finished"], params).rowcount
            total += deleted
            if deleted < common.PRUNE_BATCH:
                return total

    def notify_due(self, *, window_s: float) -> int:
        return 0  # one host: workers poll the file with a short adaptive interval

    def oldest_due(self) -> dict[str, float]:
        rows = self._read("oldest_due", {"now": time.time()})
        return {r["queue"]: max(0.0, float(r["age_s"])) for r in rows}

    def listen(
        self,
        on_notify: Callable[[str, str], None],
        stop: threading.Event,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> bool:
        """SQLite has no notifications. Instead: PRAGMA data_version, which changes whenever
        another connection commits, read every few ms on a connection of its own. That is a
        look at a counter in shared memory, no query, so an idle worker claims within
        milliseconds of an enqueue; a commit of any kind wakes it, and the claim's read-only
        probe sorts out the false alarms."""
        try:
            conn = self._connect()
        except errors.BackendError as exc:
            if on_error is not None:
                on_error(str(exc))
            return False
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not stop.wait(_WATCH_S):
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    on_notify("queuectl_wake", "")
        except sqlite3.Error as exc:
            if on_error is not None:
                on_error(str(exc))
        finally:
            conn.close()
        return True


@functools.lru_cache(maxsize=64)
def _pick_sql(queue_count: int) -> str:
    if queue_count == 0:
        return Q["pick_any"]
    # one index range per queue, each already in claim order, merged: a claim never sorts
    # every waiting job (an IN list over the queue index would). Only our own SQL text and
    # numbered placeholders are joined here; queue names stay bound parameters.
    one = Q["pick_queue"]
    parts = ["SELECT * FROM (" + one.replace(":queue", f":q{i}") + ")" for i in range(queue_count)]  # noqa: S608
    union = " UNION ALL ".join(parts)
    return f"SELECT id FROM ({union}) ORDER BY priority DESC, run_at, seq LIMIT :limit"  # noqa: S608


def _pick(queues: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The claim-order query for these queues (none: every queue) and its parameters."""
    unique = sorted(set(queues))
    return _pick_sql(len(unique)), {f"q{i}": q for i, q in enumerate(unique)}


def _flat_params(rows: Sequence[JobRow], now: datetime) -> list[Any]:
    """The parameters of a multi-row enqueue_values, row after row, times as epoch floats."""
    epoch = now.timestamp()
    params: list[Any] = []
    for job_id, command, queue, priority, run_at, timeout_s, max_retries, expires_at in rows:
        params += (
            job_id,
            command,
            queue,
            priority,
            epoch if run_at is now else run_at.timestamp(),
            timeout_s,
            max_retries,
            epoch,
            epoch,
            None if expires_at is None else expires_at.timestamp(),
        )
    return params


def _timeout(requested: float | None, policy: models.Policy) -> float | None:
    """None: the configured default; 0: explicitly no limit."""
    if requested is None:
        return policy.job_timeout_s
    return requested or None


def _statements(script: str) -> list[str]:
    """Split a schema script on `;` at line ends (the schema has no `;` inside literals)."""
    return [s.strip() for s in script.split(";\n") if s.strip() and not _only_comments(s)]


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())
