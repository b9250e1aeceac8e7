"""`queuectl orchestrator run`: the leader-elected sweeper, in the foreground."""

from __future__ import annotations

import typer

from queuectl.cli import runtime
from queuectl.cli.context import CTX

app = typer.Typer(
    help="Cron schedules, crash recovery, wake-ups, DLQ expiry and retention.",
    no_args_is_help=True,
)


@app.command()
def run(metrics_port: runtime.MetricsPort = None) -> None:
    """Run until SIGTERM/SIGINT. Several may run: a leader lease makes one active."""
    from queuectl.observe import NULL_METRICS
    from queuectl.orchestrator import Orchestrator

    pool_size = CTX.settings.db_pool_size or 2  # the sweeps' thread and a metrics scrape
    backend, metrics = runtime.start_process(
        "orchestrator", pool_size=pool_size, metrics_port=metrics_port
    )
    if metrics is not None:
        metrics.add_connection_gauge(backend)
        # queue depth is computed here only, from the database, at scrape time
        metrics.add_queue_collector(backend, lease_ttl_s=CTX.settings.lease_ttl_s)
    orchestrator = Orchestrator(
        backend, CTX.settings, metrics=NULL_METRICS if metrics is None else metrics
    )
    runtime.on_stop_signals(orchestrator.request_stop)
    from queuectl.suspend import Suspender

    Suspender(backend).install()  # Ctrl-Z never stops it inside a transaction
    orchestrator.run()
