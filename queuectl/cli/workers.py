"""`queuectl worker start | stop | list`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from queuectl import models
from queuectl.cli import complete, output, runtime
from queuectl.cli.context import CTX

app = typer.Typer(
    help="Run, stop and list workers.",
    epilog="Example: queuectl worker start --count 4 --queue mail",
    no_args_is_help=True,
)


@app.command()
def start(
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=256, help="Concurrent job slots.")
    ] = 1,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            help="Serve only this queue (repeatable; default: all).",
            autocompletion=complete.queue_names,
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit once no job is due or waiting to retry.")
    ] = False,
    metrics_port: runtime.MetricsPort = None,
    noop: Annotated[
        bool,
        typer.Option("--noop", hidden=True, help="Benchmarks: complete jobs without running them."),
    ] = False,
) -> None:
    """Run workers in the foreground until stopped (SIGTERM/SIGINT drain; twice kills).

    Example: queuectl worker start --count 4 --queue mail --queue reports --metrics-port 9100
    """
    # Count stop signals from the start: a SIGTERM while the backend connects used to kill the
    # process with the default action (exit -15). Nothing is claimed yet, so the worker that
    # inherits the count stops before its first claim and exits 0.
    early: list[int] = []
    runtime.on_stop_signals(lambda: early.append(1))
    from queuectl.executors import Executor, NoopExecutor, ShellExecutor
    from queuectl.observe import NULL_METRICS, MetricsLike
    from queuectl.specs import check_queue
    from queuectl.worker import Duty, Worker

    # a name enqueue would refuse can hold no job: say so, rather than serve nothing forever
    queues = [check_queue(q) for q in queue or ()]
    # the claim loop, the completer, the heartbeat and the slots share one connection, and
    # LISTEN has its own: 2 server connections per worker process whatever its slots, so a
    # fleet of hundreds fits one Postgres (db-pool-size raises it; min(slots, 4) + 2 until
    # issue 16 drained no faster: 10,000 jobs, 2 x 4 slots, noop and shell alike)
    pool_size = CTX.settings.db_pool_size or 1
    backend, served = runtime.start_process(
        "worker", pool_size=pool_size, metrics_port=metrics_port
    )
    metrics: MetricsLike = NULL_METRICS if served is None else served
    if served is not None:
        served.add_connection_gauge(backend)
    duties: list[Duty] = []
    if backend.url.startswith("sqlite") or "://" not in backend.url:
        # one host, one command: the worker carries the orchestrator's duties (cron, DLQ
        # expiry, retention; not recovery, which every worker runs anyway); among several
        # worker processes the leader lease picks one
        from queuectl.orchestrator import Orchestrator

        if served is not None:
            served.add_orchestrator_metrics()
        embedded = Orchestrator(backend, CTX.settings, metrics=metrics, embedded=True)
        duties.append(embedded)
        if served is not None:
            # the queue gauges too, so one scraped command is a complete system; only while
            # this process leads, so N worker processes on one file export them once
            served.add_queue_collector(
                backend, lease_ttl_s=CTX.settings.lease_ttl_s, when=lambda: embedded.is_leader
            )
    # benchmarks: the queue's own overhead, without the cost of spawning a shell
    executor: Executor = NoopExecutor() if noop else ShellExecutor(CTX.settings)
    worker = Worker(
        backend,
        CTX.settings,
        executor=executor,
        count=count,
        queues=queues,
        metrics=metrics,
        duties=duties,
    )
    if served is not None and metrics_port is not None:
        served.serve(metrics_port)  # every series registered: no scrape sees half of them
    runtime.on_stop_signals(worker.signal_received)  # acted on within 0.25 s
    from queuectl.suspend import Suspender

    Suspender(backend, before=worker.before_suspend, after=worker.after_resume).install()
    for _ in early:
        worker.signal_received()
    worker.run(burst=burst)


@app.command()
def stop(
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the workers to exit.")
    ] = 120.0,
) -> None:
    """Ask every live worker (any host) to finish its jobs and exit; wait until they did.

    Example: queuectl worker stop --timeout 60
    """
    backend = CTX.backend()
    ttl = CTX.settings.lease_ttl_s
    asked = set(backend.request_stop(lease_ttl_s=ttl))
    if not asked:
        output.note("no workers running")
        return
    # a process holds several slots (`--count`): people count processes, the table slots
    live = [w for w in backend.list_workers(lease_ttl_s=ttl) if w.id in asked]
    processes = len({(w.host, w.pid) for w in live}) or 1
    output.note(
        f"asked {_count(processes, 'worker process', 'worker processes')} "
        f"({_count(len(asked), 'slot', 'slots')}) to stop; waiting for their jobs to finish"
    )
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    while True:
        alive = [w for w in backend.list_workers(lease_ttl_s=ttl) if w.id in asked]
        if not alive:
            output.note("all workers stopped")
            return
        running = sorted({j for w in alive for j in w.current_jobs})
        if running != shown:  # say what is awaited, again only when that changes
            shown = running
            if running:
                output.note(f"waiting for {_count(len(running), 'job', 'jobs')}: {_ids(running)}")
        if time.monotonic() >= deadline:
            processes = len({(w.host, w.pid) for w in alive})
            jobs = f" running {_ids(running)}" if running else ""
            output.error_line(
                f"{_count(processes, 'worker process', 'worker processes')} still running "
                f"after {timeout:g}s{jobs}"
            )
            raise typer.Exit(1)
        time.sleep(0.25)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _ids(job_ids: list[str]) -> str:
    return ", ".join(job_ids[:5]) + (f" and {len(job_ids) - 5} more" if len(job_ids) > 5 else "")


@app.command("list")
def list_workers(
    as_json: output.JsonFlag = False,
) -> None:
    """Live workers, one row per slot: id, host, pid, queues, current job, heartbeat age, the
    database connections its process holds (Postgres; 2 at most by default), the attempts the
    slot finished since its process started, and the process's resident memory.

    Example: queuectl worker list --json
    """
    from queuectl.records import megabytes

    found = CTX.backend().list_workers(lease_ttl_s=CTX.settings.lease_ttl_s)
    if as_json:
        output.emit_json([w.to_json() for w in found])
        return
    if not found:
        output.note("no workers running")
        return
    output.emit(
        output.table(
            ["id", "host", "pid", "queues", "state", "job", "beat", "conns", "done", "mem"],
            (
                [
                    w.id,
                    w.host,
                    w.pid,
                    ",".join(w.queues) or "*",
                    w.to_json()["state"],
                    ",".join(w.current_jobs) or None,
                    f"{w.heartbeat_age_s or 0:.1f}s ago",
                    w.connections,
                    w.jobs_done,
                    None if w.rss_bytes is None else megabytes(w.rss_bytes),
                ]
                for w in found
            ),
        )
    )


__all__ = ["app", "models"]
