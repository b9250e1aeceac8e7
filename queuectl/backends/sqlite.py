"""SqliteBackend: the Backend contract on one SQLite file (stdlib sqlite3, WAL).

store.SqlBackend writes the one-query methods; this module keeps what only SQLite does: the
claim under the write lock (one index range per queue, unioned), multi-row INSERTs for bulk
enqueue, finishing row by row in one transaction, the per-job heartbeat, the commit-counter
watch that stands in for LISTEN, and migrations by PRAGMA user_version. sqlite_connector.py
holds the connections.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queuectl import config, errors, models
from queuectl.backends import common, store
from queuectl.backends.base import Enqueued, JobRow, Names, OnError, OnNotify
from queuectl.backends.connector import Row, Session
from queuectl.backends.sqlite_connector import (
    MIGRATIONS,
    Q,
    SqliteConnector,
    SqliteSession,
    epoch,
    switch_to_wal,
    ts,
)

if TYPE_CHECKING:
    from queuectl.backends.base import Running, Workers

_WATCH_S = 0.005  # listen(): how often an idle worker looks for a commit by someone else
_BLOCKED_VERSION = 6  # the migration that adds the `blocked` state (_allow_blocked)
_BULK_CACHE_KIB = -16384  # enqueue_bulk's page cache: 16 MiB (a negative cache_size counts KiB)


class SqliteBackend(store.SqlBackend):
    notifies = False
    single_host = True

    def __init__(self, url: str, path: Path, *, create_dir: bool = False) -> None:
        self.url = url
        self.path = path
        self._lite = SqliteConnector(path)
        super().__init__(self._lite)
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
        with self._lite.use() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        common.check_schema_version(version, len(MIGRATIONS))
        if version < len(MIGRATIONS):
            self.migrate()

    def hold_writes(self) -> contextlib.AbstractContextManager[None]:
        return self._lite.hold_writes()

    def close(self) -> None:
        self._lite.close()

    def migrate(self) -> int:
        with self._lite.use() as conn:
            # WAL lets readers (status, list) run while a worker writes
            switch_to_wal(conn)
        with self._lite.tx() as conn:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            common.check_schema_version(current, len(MIGRATIONS))
            for name, sql in MIGRATIONS.items():
                version = int(name.removeprefix("v"))
                if version > current:
                    if version == _BLOCKED_VERSION:
                        _allow_blocked(conn)
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                    current = version
            return current

    # --- jobs ------------------------------------------------------------------------------------
    def _insert(self, s: Session, specs: Sequence[models.JobSpec]) -> Enqueued:
        assert isinstance(s, SqliteSession)
        job_ids = common.check_ids(specs)
        conn = s.conn
        # a taken id, named (the UNIQUE constraint's error would name only the column)
        given = [spec.id for spec in specs if spec.id]
        if given and (taken := s.one("existing_ids", {"ids": json.dumps(given)})):
            raise common.unique_violation("queuectl_jobs", taken["id"])
        # whole microseconds, so the times stored (floats) read back as the ones returned
        now = ts(s.now)
        rows = common.job_rows(specs, job_ids, config.policy_from_rows(self._settings(s)), now)
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

    # --- workers ---------------------------------------------------------------------------------
    def _claim(self, slots: Names, queues: Names, host: str, lease_s: float) -> list[Row]:
        if self._any_flow:
            # Some queue is paused or limited: claim queue by queue, never through one of
            # those (SQLite would walk its whole backlog to find that the filter in the pick
            # rejects every row). Read now, not cached: what the claim below passes over.
            with self._lite.use() as conn:
                if queues:
                    held = {r["name"] for r in conn.execute(Q["held_queues"]).fetchall()}
                    queues = [q for q in queues if q not in held]
                else:
                    queues = [r["name"] for r in conn.execute(Q["active_queues"]).fetchall()]
            if not queues:
                return []
        pick, params = _pick(queues)
        if not self._peek(pick, params):
            return []  # nothing due: an idle poll never takes the write lock
        with self._lite.tx() as conn:
            now = time.time()
            picked = conn.execute(pick, params | {"now": now, "limit": len(slots)}).fetchall()
            if not picked:
                return []
            claimed = _claimed(picked, slots, host, now, lease_s)
            # no run rows: each attempt's is written once, when it ends (or by a heartbeat
            # with output), see finish_run
            return conn.execute(Q["claim"], claimed).fetchall()

    def _finish_in(self, s: Session, items: Sequence[models.Finish]) -> list[bool]:
        # row by row, in the caller's one write transaction: one commit (and one WAL sync)
        # for the whole batch
        assert isinstance(s, SqliteSession)
        execute, now = s.conn.execute, {"now": s.now}
        applied: list[bool] = []
        ended = []
        for item in items:
            params = common.finish_params(item.job, item.outcome, item.retry_in) | now
            done = execute(Q["finish"], params).fetchone()
            if done is not None:
                run = {k: done[k] for k in ("run_count", "worker_id", "started_at", "queue")}
                execute(Q["finish_run"], params | run | {"due_at": epoch(item.job.run_at)})
                ended.append(done)
            applied.append(done is not None)
        self._settle(s, ended)  # in the same transaction: the write lock orders it all
        return applied

    def _claim_limited(self, slots: Names, queues: Names, host: str, lease_s: float) -> list[Row]:
        # Under the write lock, no other claim can start a job between the counts and the
        # update: each queue's allowance is exact.
        with self._lite.tx() as conn:
            now = time.time()
            names = {"queues": json.dumps(list(queues)), "now": now}
            picked: list[Row] = []
            for row in conn.execute(Q["limited_allowance"], names).fetchall():
                if (allowed := min(int(row["allowed"]), len(slots))) > 0:
                    pick = {"queue": row["name"], "now": now, "limit": allowed}
                    picked += conn.execute(Q["pick_limited"], pick).fetchall()
            if not picked:
                return []
            picked.sort(key=lambda r: (-r["priority"], r["run_at"], r["seq"]))
            picked = picked[: len(slots)]
            claimed = _claimed(picked, slots, host, now, lease_s)
            rows: list[Row] = conn.execute(Q["claim"], claimed).fetchall()
            for queue in {r["queue"] for r in rows}:
                conn.execute(Q["trim_starts"], {"queue": queue, "now": now})
            for r in rows:
                conn.execute(Q["log_start"], {"queue": r["queue"], "now": now})
            return rows

    def done_listener(self) -> contextlib.AbstractContextManager[store.Listener]:
        return _CommitListener(self._lite)

    def _beat(self, s: Session, workers: Workers, running: Running, lease_s: float) -> store.Beat:
        # row by row: no arrays, and every statement is cheap under the one write lock
        assert isinstance(s, SqliteSession)
        execute, now = s.conn.execute, s.now
        stop = False
        renewed: dict[str, bool] = {}
        for w in workers:
            params = {"id": w.id, "host": w.host, "pid": w.pid, "now": now}
            params |= {"jobs_done": w.jobs_done, "rss_bytes": w.rss_bytes}
            row = execute(Q["beat_workers"], params | {"queues": json.dumps(w.queues)}).fetchone()
            stop = stop or bool(row["stop_requested"])
        for r in running:
            lease = {"id": r.job.id, "token": r.job.lease_token, "session": r.session}
            row = execute(Q["beat_jobs"], lease | {"now": now, "lease_s": lease_s}).fetchone()
            if row is None:
                continue
            renewed[r.job.id] = bool(row["cancel_requested"])
            if r.output is not None:
                output = {"attempt": r.job.run_count, "output": r.output, "bytes": r.output_bytes}
                execute(Q["beat_output"], output | {"id": r.job.id})
        return stop, renewed

    def _peek(self, pick: str, params: dict[str, Any]) -> bool:
        """Whether a job is due, read without the write lock."""
        with self._lite.use() as conn:
            return bool(conn.execute(pick, params | {"now": time.time(), "limit": 1}).fetchall())

    def _watch(self, on_notify: OnNotify, stop: threading.Event, on_error: OnError) -> bool:
        """SQLite has no notifications. Instead: PRAGMA data_version, which changes whenever
        another connection commits, read every few ms on a connection of its own. That is a
        look at a counter in shared memory, no query, so an idle worker claims within
        milliseconds of an enqueue; a commit of any kind wakes it, and the claim's read-only
        probe sorts out the false alarms."""
        try:
            conn = self._lite.connect()
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


class _CommitListener(store.Listener):
    """`wait` between looks: until another connection commits (PRAGMA data_version, as the
    workers' watch), or the timeout."""

    def __init__(self, lite: SqliteConnector) -> None:
        self._lite = lite
        self._conn: sqlite3.Connection | None = None
        self._version = 0

    def __enter__(self) -> _CommitListener:
        self._conn = self._lite.connect()
        self._version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            self._conn.close()

    def wait(self, timeout_s: float) -> bool:
        assert self._conn is not None
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, _WATCH_S * 2))
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._version = version
                return True
        return False


def _claimed(
    picked: Sequence[Row], slots: Names, host: str, now: float, lease_s: float
) -> dict[str, Any]:
    """The claim UPDATE's parameters: the i-th picked job to the i-th slot."""
    return {
        "ids": json.dumps([r["id"] for r in picked]),
        "slots": json.dumps(list(slots)),
        "host": host,
        "now": now,
        "lease_s": lease_s,
    }


def _allow_blocked(conn: sqlite3.Connection) -> None:
    """Widen queuectl_jobs' state CHECK by the `blocked` state, in place: SQLite cannot ALTER
    a constraint, and rebuilding the table would copy every job. Rewriting the stored CREATE
    TABLE text is SQLite's documented way for a change no existing row can violate (sqlite.org
    lang_altertable.html, "making other kinds of table schema changes"); schema_version is
    bumped so that every open connection re-reads the schema."""
    version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
            "WHERE type = 'table' AND name = 'queuectl_jobs'",
            ("'cancelled')", "'cancelled', 'blocked')"),
        )
        conn.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


def _statements(script: str) -> list[str]:
    """Split a schema script on `;` at line ends (the schema has no `;` inside literals)."""
    return [s.strip() for s in script.split(";\n") if s.strip() and not _only_comments(s)]


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())
