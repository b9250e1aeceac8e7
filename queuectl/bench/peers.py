"""Drain rates of peer Postgres job queues (PGQueuer, Procrastinate): run with .venv-peers."""

# A standalone script, not part of the queuectl package at run time: `make bench-peers-env`, then
#   .venv-peers/bin/python -I queuectl/bench/peers.py pgqueuer --dsn URL --jobs N --processes P
#       --batch B
# (`queuectl bench --only peers --peers-python .venv-peers/bin/python` runs it so). -I keeps the
# script's directory off sys.path; its neighbours are benchmark modules anyway, none named like
# a module the peers import. It imports only the standard library, psycopg (a dependency of both
# peers, for the fresh database and the done-check) and the peer it drives, never queuectl. The
# peers are imported by name inside functions, so queuectl's own venv (where they are not
# installed) still type-checks this file.
# Each run: a fresh `bench_peer_<random>` database, the peer's schema through its own API, N
# no-op jobs through its bulk enqueue API, P worker processes running its public worker API at
# batch/concurrency B. The clock starts when every worker has imported, connected and been
# released, and stops when SQL on the peer's own table shows all N jobs finished.
# The cost of the drain, from that release to the workers' exit: the CPU of the worker
# processes (their rusage once joined) and of the PostgreSQL server (the scratch database's
# backends plus the background processes, and the whole server, read from /proc by
# servercpu.py, loaded by its path beside this file; null when the server is not on this
# host), as `queuectl bench` measures its own workers.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import multiprocessing
import platform
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

POLL_S = 0.05
STOP_GRACE_S = 15.0
PGQ_ENTRYPOINT = "noop"
PROC_TASK = "noop"


def _peer(name: str) -> ModuleType:
    return importlib.import_module(name)


def _run(coro: Coroutine[Any, Any, None], *, uvloop: bool) -> None:
    """Run `coro` on the event loop the peer's own CLI uses."""
    if uvloop and _has("uvloop"):
        _peer("uvloop").run(coro)
    else:
        asyncio.run(coro)


# --- PGQueuer ----------------------------------------------------------------------------------
async def _pgqueuer_noop(job: Any) -> None:
    return None


async def _pgqueuer_setup_async(url: str, jobs: int) -> None:
    asyncpg, pgqueuer = _peer("asyncpg"), _peer("pgqueuer")
    conn = await asyncpg.connect(url)
    try:
        queries = pgqueuer.Queries.from_asyncpg_connection(conn)
        await queries.install()  # what `pgq install` runs; default durability ("durable")
        await queries.enqueue([PGQ_ENTRYPOINT] * jobs, [None] * jobs, [0] * jobs)  # one INSERT
    finally:
        await conn.close()


def _pgqueuer_setup(url: str, jobs: int) -> None:
    asyncio.run(_pgqueuer_setup_async(url, jobs))


def _pgqueuer_worker(url: str, batch: int, ready: Event, go: Event) -> None:
    """`pgqueuer.run` (what `pgq run` calls) over a QueueManager on one asyncpg connection."""
    asyncpg, pgqueuer = _peer("asyncpg"), _peer("pgqueuer")

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        conn = await asyncpg.connect(url)
        qm = pgqueuer.QueueManager(pgqueuer.Queries.from_asyncpg_connection(conn))
        qm.entrypoint(PGQ_ENTRYPOINT)(_pgqueuer_noop)
        ready.set()
        await asyncio.to_thread(go.wait)
        try:
            yield qm
        finally:
            await conn.close()

    _run(pgqueuer.run(factory, batch_size=batch), uvloop=True)  # SIGTERM: graceful stop


def _pgqueuer_params(batch: int) -> dict[str, Any]:
    return {
        "batch_size": batch,
        "driver": f"asyncpg {version('asyncpg')} (one connection per worker process)",
        "event_loop": "uvloop" if _has("uvloop") else "asyncio",
        "durability": "durable (default)",
        "entrypoint": "async no-op, concurrency_limit=0 (default)",
        "run": "pgqueuer.run(factory, batch_size=B); other knobs default "
        "(dequeue_timeout 30 s, max_concurrent_tasks None, heartbeat_timeout 30 s, continuous)",
        "enqueue": "Queries.enqueue(lists): one statement",
        "done_when": "pgqueuer table empty, then pgqueuer_log has N 'successful'",
    }


# --- Procrastinate -----------------------------------------------------------------------------
async def _procrastinate_noop() -> None:
    return None


def _procrastinate_app(url: str) -> tuple[Any, Any]:
    procrastinate = _peer("procrastinate")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    task = app.task(name=PROC_TASK)(_procrastinate_noop)
    return app, task


async def _procrastinate_setup_async(url: str, jobs: int) -> None:
    app, task = _procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()  # what `procrastinate schema --apply` runs
        await task.batch_defer_async(*({} for _ in range(jobs)))  # one statement


def _procrastinate_setup(url: str, jobs: int) -> None:
    asyncio.run(_procrastinate_setup_async(url, jobs))


def _procrastinate_worker(url: str, concurrency: int, ready: Event, go: Event) -> None:
    """`App.run_worker_async` (what `procrastinate worker` calls) with `concurrency`."""
    app, _ = _procrastinate_app(url)

    async def main() -> None:
        async with app.open_async():
            ready.set()
            await asyncio.to_thread(go.wait)
            await app.run_worker_async(concurrency=concurrency)  # SIGTERM: graceful stop

    _run(main(), uvloop=False)


def _procrastinate_params(concurrency: int) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "driver": f"psycopg {version('psycopg')} PsycopgConnector, default AsyncConnectionPool",
        "event_loop": "asyncio",
        "task": "async no-op, no lock, no queueing_lock",
        "worker": "App.run_worker_async(concurrency=B); other knobs default (listen_notify, "
        "fetch_job_polling_interval 5 s, delete_jobs never, wait True)",
        "enqueue": "Task.batch_defer_async(N x {}): one statement",
        "done_when": "no todo/doing row, then N 'succeeded' rows",
    }


# --- the harness -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    package: str
    setup: Callable[[str, int], None]
    worker: Callable[[str, int, Event, Event], None]
    params: Callable[[int], dict[str, Any]]
    pending_sql: str  # true while a job is not finished
    finished_sql: str  # the number of jobs finished successfully


PEERS = {
    "pgqueuer": Peer(
        "pgqueuer",
        _pgqueuer_setup,
        _pgqueuer_worker,
        _pgqueuer_params,
        "SELECT EXISTS (SELECT 1 FROM pgqueuer)",
        "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
    ),
    "procrastinate": Peer(
        "procrastinate",
        _procrastinate_setup,
        _procrastinate_worker,
        _procrastinate_params,
        "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))",
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
    ),
}


def _servercpu() -> Any:
    """queuectl/bench/servercpu.py (standard library only), by its path: not as queuectl's."""
    name = "_bench_servercpu"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("servercpu.py"))
    if spec is None or spec.loader is None:
        raise ImportError("servercpu.py not found beside peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _has(module: str) -> bool:
    try:
        _peer(module)
    except ImportError:
        return False
    return True


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@contextlib.contextmanager
def _scratch_database(dsn: str) -> Iterator[tuple[str, str]]:
    """A fresh `bench_peer_<random>` database and the server version; dropped on the way out."""
    import psycopg
    from psycopg import sql

    name = f"bench_peer_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        row = admin.execute("SHOW server_version").fetchone()
    try:
        yield _with_database(dsn, name), str(row[0]) if row else "?"
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


def _wait_ready(readies: list[Event], procs: list[SpawnProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for ready, proc in zip(readies, procs, strict=True):
        while not ready.wait(0.1):
            if not proc.is_alive():
                raise RuntimeError(f"a worker exited before it was ready ({proc.exitcode})")
            if time.monotonic() > deadline:
                raise TimeoutError("workers not ready")


def _wait_drained(url: str, peer: Peer, procs: list[SpawnProcess], timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(peer.pending_sql).fetchone()
            if row is not None and not row[0]:
                return
            if any(not p.is_alive() for p in procs):
                raise RuntimeError("a worker died while jobs were pending")
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still pending after {timeout:.0f} s")
            time.sleep(POLL_S)


def _stop(procs: list[SpawnProcess]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: both peers shut down gracefully on it
    for proc in procs:
        proc.join(STOP_GRACE_S)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _finished(url: str, peer: Peer) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(peer.finished_sql).fetchone()
    return int(row[0]) if row else 0


def bench(system: str, dsn: str, *, jobs: int, processes: int, batch: int, timeout: float) -> Any:
    """One drain of `jobs` no-op jobs by `processes` workers of `system`: the JSON record."""
    peer = PEERS[system]
    ctx = multiprocessing.get_context("spawn")
    cpu = _servercpu()
    probe = cpu.probe(dsn)
    with _scratch_database(dsn) as (url, server):
        peer.setup(url, jobs)
        go = ctx.Event()
        readies = [ctx.Event() for _ in range(processes)]
        procs = [ctx.Process(target=peer.worker, args=(url, batch, r, go)) for r in readies]
        spawned = time.perf_counter()
        for proc in procs:
            proc.start()
        try:
            _wait_ready(readies, procs, timeout)
            meter = probe.meter(cpu.database_of(url)).start()  # the scratch database's
            reaped = cpu.children_cpu_seconds()
            start = time.perf_counter()
            go.set()
            _wait_drained(url, peer, procs, timeout)
            seconds = time.perf_counter() - start
        finally:
            go.set()
            _stop(procs)
        worker_cpu = cpu.children_cpu_seconds() - reaped
        cost = meter.stop()
        finished = _finished(url, peer)
    if finished != jobs:
        raise RuntimeError(f"{system}: {finished} of {jobs} jobs finished successfully")
    return {
        "system": system,
        "jobs": jobs,
        "seconds": round(seconds, 4),
        "jobs_per_s": round(jobs / seconds, 1),
        "version": version(peer.package),
        "startup_seconds": round(start - spawned, 3),
        "worker_cpu_s": round(worker_cpu, 3),
        "database_cpu_s": _round(cost.database_s),
        "server_cpu_s": _round(cost.server_s),
        "server_cpu_why": probe.why,
        "statement_ms": _round(cost.statement_ms),
        "params": {
            "processes": processes,
            **peer.params(batch),
            "clock": "workers imported+connected, released together -> SQL shows all N done",
            "cpu": "worker rusage and server /proc CPU from the release to the workers' exit",
            "done_poll_s": POLL_S,
            "python": platform.python_version(),
            "postgres": server,
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=sorted(PEERS))
    parser.add_argument("--dsn", required=True, help="postgresql:// URL of any database")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--batch", type=int, default=10, help="PGQueuer batch_size / Procrastinate concurrency"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds, per phase")
    args = parser.parse_args(argv)
    record = bench(
        args.system,
        args.dsn,
        jobs=args.jobs,
        processes=args.processes,
        batch=args.batch,
        timeout=args.timeout,
    )
    print(json.dumps(record))


if __name__ == "__main__":
    main()
