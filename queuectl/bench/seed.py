"""The benchmark's own rows: seeded history and clean-up, in its own SQL on its own connection.

The product's storage protocol carries no benchmark-only methods; these statements write what
a long-running system keeps (a completed job and its one run row) straight into the tables,
in both dialects, and delete a benchmark queue afterwards (the runs go with their jobs, ON
DELETE CASCADE). Rows of a job still processing are left alone, as a purge by hand would.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

BUSY_TIMEOUT_MS = 30_000

# --- PostgreSQL (psycopg: %(name)s params) -----------------------------------------------------
PG_SEED = """
WITH jobs AS (
  INSERT INTO queuectl_jobs (id, command, state, queue, attempts, run_count, max_retries,
                             run_at, created_at, updated_at, started_at, finished_at,
                             exit_code, worker_id, host, lease_token)
  SELECT %(queue)s || '-' || g, 'true', 'completed', %(queue)s, 1, 1, 3,
         now() - interval '1 day', now() - interval '1 day', now() - interval '1 day',
         now() - interval '1 day', now() - interval '1 day', 0, 'seed', 'seed', 1
    FROM generate_series(1, %(count)s) AS g
  RETURNING id, started_at, finished_at, queue, run_at
)
INSERT INTO queuectl_runs (job_id, attempt, worker_id, started_at, finished_at, exit_code,
                           outcome, queue, due_at)
SELECT id, 1, 'seed', started_at, finished_at, 0, 'succeeded', queue, run_at FROM jobs
"""
PG_PURGE = "DELETE FROM queuectl_jobs WHERE queue = %(queue)s AND state <> 'processing'"

# --- SQLite (sqlite3: :name params; times are REAL Unix seconds) ------------------------------
SQLITE_SEED_JOBS = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
INSERT INTO queuectl_jobs (id, command, state, queue, attempts, run_count, max_retries,
                           run_at, created_at, updated_at, started_at, finished_at,
                           exit_code, worker_id, host, lease_token)
SELECT :queue || '-' || n, 'true', 'completed', :queue, 1, 1, 3, :then, :then, :then, :then,
       :then, 0, 'seed', 'seed', 1
  FROM g
"""
SQLITE_SEED_RUNS = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
INSERT INTO queuectl_runs (job_id, attempt, worker_id, started_at, finished_at, exit_code,
                           outcome, queue, due_at)
SELECT j.id, 1, 'seed', j.started_at, j.finished_at, 0, 'succeeded', j.queue, j.run_at
  FROM g JOIN queuectl_jobs AS j ON j.id = :queue || '-' || g.n
"""  # the jobs just seeded (as RETURNING gives them in PostgreSQL), not others of the queue
SQLITE_PURGE = "DELETE FROM queuectl_jobs WHERE queue = :queue AND state <> 'processing'"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """The file of `sqlite:///path` (or of a bare path), as the CLI's --db reads it."""
    if url.startswith("sqlite:"):
        rest = url.removeprefix("sqlite:")
        if not rest.startswith("///"):
            raise ValueError("a SQLite URL is sqlite:///path/to/file.db")
        return rest[3:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    if "://" in url:
        raise ValueError(f"unsupported database URL scheme {url.split('://', 1)[0]!r}")
    return url


@contextlib.contextmanager
def _sqlite(url: str) -> Iterator[sqlite3.Connection]:
    """One write transaction on the file of `url`; foreign keys on, so runs cascade."""
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def _postgres(url: str, sql: str, params: dict[str, Any]) -> int:
    import psycopg  # only on PostgreSQL, as the product imports it

    with psycopg.connect(url) as conn:  # commits on a clean exit
        return conn.execute(sql, params).rowcount


def seed_completed(url: str, queue: str, count: int) -> None:
    """Add `count` completed jobs of a day ago to `queue`, each with its one run row."""
    if is_postgres(url):
        _postgres(url, PG_SEED, {"queue": queue, "count": count})
        return
    params = {"queue": queue, "count": count, "then": time.time() - 86400}
    with _sqlite(url) as conn:
        conn.execute(SQLITE_SEED_JOBS, params)
        conn.execute(SQLITE_SEED_RUNS, params)


def purge_queue(url: str, queue: str) -> int:
    """Delete every job of `queue` that is not running, and its runs; the number deleted."""
    if is_postgres(url):
        return _postgres(url, PG_PURGE, {"queue": queue})
    with _sqlite(url) as conn:
        return conn.execute(SQLITE_PURGE, {"queue": queue}).rowcount


def vacuum(url: str) -> None:
    """VACUUM the job and run tables on PostgreSQL, as autovacuum would in time (some test
    servers run without it): one drain's dead rows do not slow the next one down or get
    vacuumed during it. Nothing on SQLite (its deleted pages are reused as they are)."""
    if not is_postgres(url):
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM queuectl_jobs, queuectl_runs")
