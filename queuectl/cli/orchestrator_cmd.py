"""`queuectl orchestrator run`: the leader-elected sweeper, in the foreground."""

from __future__ import annotations

import typer

from queuectl.cli import runtime
from queuectl.cli.context import CTX

app = typer.Typer(
    help="Cron schedules, crash recovery, wake-ups, DLQ expiry and retention.",
    epilog="Example: queuectl orchestrator run --metrics-port 9101",
    no_args_is_help=True,
)


@app.command()
def run(metrics_port: runtime.MetricsPort = None) -> None:
    """Run until SIGTERM/SIGINT. Several may run: a leader lease makes one active.

    Example: queuectl --db postgresql://queuectl@db/queuectl orchestrator run --metrics-port 9101
    """
    from queuectl.observe import NULL_METRICS
    from queuectl.orchestrator import Orchestrator

    pool_size = CTX.settings.db_pool_size or 2  # the sweeps' thread and a metrics scrape
    backend, metrics = runtime.start_process(
        "orchestrator", pool_size=pool_size, metrics_port=metrics_port
    )
    orchestrator = Orchestrator(
        backend, CTX.settings, metrics=NULL_METRICS if metrics is None else metrics
    )
    if metrics is not None:
        metrics.add_connection_gauge(backend)
        # queue depth is computed here, from the database, at scrape time; by the leader
        # only, so two replicas run the queries once (a standby exports queuectl_db_up)
        metrics.add_queue_collector(
            backend, lease_ttl_s=CTX.settings.lease_ttl_s, when=lambda: orchestrator.is_leader
        )
        if metrics_port is not None:
            metrics.serve(metrics_port)
    runtime.on_stop_signals(orchestrator.request_stop)
    from queuectl.suspend import Suspender

    Suspender(backend).install()  # Ctrl-Z never stops it inside a transaction
    orchestrator.run()
