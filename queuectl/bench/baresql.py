"""The bare-SQL ceiling of a SKIP LOCKED queue: claim then complete, N jobs, no queue library."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from urllib.parse import urlsplit, urlunsplit

from queuectl.bench.servercpu import Probe, database_of

CLAIM = (
    "WITH c AS (SELECT id FROM t WHERE state = 'pending' ORDER BY priority DESC, id"
    " LIMIT %s FOR UPDATE SKIP LOCKED)"
    " UPDATE t SET state = 'processing' FROM c WHERE t.id = c.id RETURNING t.id"
)
COMPLETE = "UPDATE t SET state = 'completed' WHERE id = ANY(%s)"
SCHEMA = (
    "CREATE TABLE t (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'pending',"
    " run_at timestamptz NOT NULL DEFAULT now(), priority int NOT NULL DEFAULT 0)",
    "CREATE INDEX t_claimable ON t (priority DESC, id) WHERE state = 'pending'",
)
WORKER_TIMEOUT_S = 600.0


def with_database(dsn: str, name: str) -> str:
    """The URL `dsn` with its database replaced by `name`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def scratch_database(dsn: str, prefix: str = "bench_peer_sql_") -> Iterator[str]:
    """A fresh database on the server of `dsn`, dropped (with FORCE) on the way out."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


def _load(url: str, jobs: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        now = datetime.now(UTC)
        with conn.cursor() as cur, cur.copy("COPY t (state, run_at, priority) FROM STDIN") as cp:
            for _ in range(jobs):
                cp.write_row(("pending", now, 0))
        conn.commit()
        conn.execute("ANALYZE t")
        conn.commit()


def _worker(url: str, batch: int, ready: Event, go: Event, results: Queue[int]) -> None:
    """One connection: claim up to `batch` (commit), complete them all (commit), repeat."""
    import psycopg

    done = 0
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        ready.set()
        go.wait()
        while True:
            ids = [row[0] for row in conn.execute(CLAIM, (batch,)).fetchall()]
            conn.commit()
            if not ids:
                break
            conn.execute(COMPLETE, (ids,))
            conn.commit()
            done += len(ids)
    results.put(done)


def _drain(
    url: str, connections: int, batch: int, probe: Probe | None = None
) -> tuple[float, int, float | None]:
    """Seconds from the start signal until every worker has found nothing left; jobs done;
    the server's CPU seconds from the start signal to the workers' exit (None: unknown)."""
    ctx = multiprocessing.get_context("spawn")
    results: Queue[int] = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(connections)]
    procs = [
        ctx.Process(target=_worker, args=(url, batch, ready, go, results), daemon=True)
        for ready in readies
    ]
    for proc in procs:
        proc.start()
    try:
        for ready, proc in zip(readies, procs, strict=True):
            while not ready.wait(0.1):
                if not proc.is_alive():
                    raise RuntimeError(f"bench_sql worker exited early ({proc.exitcode})")
        meter = probe.meter(database_of(url)).start() if probe else None
        start = time.perf_counter()
        go.set()
        done = 0
        for _ in procs:
            done += _result(results, procs)
        seconds = time.perf_counter() - start
    finally:
        go.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    cpu = meter.stop().database_s if meter else None
    return seconds, done, cpu


def _result(results: Queue[int], procs: list[SpawnProcess]) -> int:
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=0.1)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a bench_sql worker failed") from None
    raise TimeoutError(f"bench_sql workers still running after {WORKER_TIMEOUT_S:.0f} s")


def _verify(url: str, jobs: int, done: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'completed') FROM t"
        ).fetchone()
    total, completed = row if row else (0, 0)
    if not (total == completed == done == jobs):
        raise RuntimeError(
            f"bench_sql: {jobs} jobs loaded, {total} rows, {completed} completed, "
            f"{done} completed by the workers"
        )


def sql_ceiling(dsn: str, *, jobs: int, connections: int, batch: int) -> float:
    """Jobs/s of `connections` processes each claiming `batch` rows then completing them in one
    statement (two commits per batch), on a fresh database; raises unless all N end completed."""
    return sql_ceiling_cost(dsn, jobs=jobs, connections=connections, batch=batch)[0]


def sql_ceiling_cost(
    dsn: str, *, jobs: int, connections: int, batch: int, probe: Probe | None = None
) -> tuple[float, float | None]:
    """sql_ceiling's jobs/s, and the server CPU seconds of the drain (workers connected, from
    their release to their exit) when `probe` can read it."""
    if jobs < 1 or connections < 1 or batch < 1:
        raise ValueError("jobs, connections and batch must be positive")
    with scratch_database(dsn) as url:
        _load(url, jobs)
        seconds, done, cpu = _drain(url, connections, batch, probe)
        _verify(url, jobs, done)
    return jobs / seconds, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m queuectl.bench.baresql", description=__doc__)
    parser.add_argument("--dsn", required=True, help="postgresql:// URL of any database")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rate = sql_ceiling(args.dsn, jobs=args.jobs, connections=args.connections, batch=args.batch)
    print(
        json.dumps(
            {
                "system": "bare-sql",
                "jobs": args.jobs,
                "seconds": round(args.jobs / rate, 4),
                "jobs_per_s": round(rate, 1),
                "params": {
                    "connections": args.connections,
                    "batch": args.batch,
                    "commits_per_batch": 2,
                    "clock": "start signal to every worker finding nothing to claim",
                    "wall_seconds_incl_setup": round(time.perf_counter() - started, 3),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
