"""Set-up shared by the long-running commands (`worker start`, `orchestrator run`)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from queuectl.cli.context import CTX

if TYPE_CHECKING:
    from queuectl.backends.base import Backend
    from queuectl.metrics import Metrics

MetricsPort = Annotated[
    int | None,
    typer.Option("--metrics-port", min=0, max=65535, help="Serve Prometheus metrics on this port."),
]


def start_process(
    role: str, *, pool_size: int, metrics_port: int | None
) -> tuple[Backend, Metrics | None]:
    """Logging, a pooled backend, and (when asked) the metrics of one process: the caller
    registers what the process exports, then calls `metrics.serve(port)`, so no scrape
    ever sees half the series."""
    import structlog

    from queuectl import logs
    from queuectl.backends import redact

    settings = CTX.settings
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    backend = CTX.backend(pool_size=pool_size)
    metrics = None
    if metrics_port is not None:
        from queuectl.metrics import Metrics

        metrics = Metrics(role)
    structlog.get_logger("queuectl").info(
        "process_starting",
        role=role,
        db=redact(settings.database_url),  # never the password
        metrics_port=metrics_port,
    )
    return backend, metrics


def on_stop_signals(handler: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call `handler`, which must only set flags (see Worker)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
