"""`queuectl queue list | pause | resume | set`: flow control per queue, for the whole fleet."""

# no `from __future__ import annotations`: see cli/enqueue.py
from typing import Annotated, Any

import typer

from queuectl import models, queues
from queuectl.cli import complete, output
from queuectl.cli.context import CTX
from queuectl.durations import format_duration

app = typer.Typer(
    help="Pause queues and limit them (concurrency, rate) across every worker on every host.",
    epilog="Example: queuectl queue set mail --rate 100/1m",
    no_args_is_help=True,
)

Names = Annotated[
    list[str],
    typer.Argument(metavar="QUEUE...", show_default=False, autocompletion=complete.queue_names),
]


@app.command("list")
def list_queues(as_json: output.JsonFlag = False) -> None:
    """Every queue with jobs or settings: paused, limits, running, counts, oldest due job.

    Example: queuectl queue list --json
    """
    queues = CTX.client().queues()
    if as_json:
        output.emit_json(queues)
        return
    if not queues:
        output.note("no queues yet")
        return
    output.emit(
        output.table(
            [
                "queue",
                "state",
                "concurrency",
                "rate",
                "running",
                "pending",
                "blocked",
                "failed",
                "dead",
                "oldest due",
            ],
            (
                [
                    q["name"],
                    "paused" if q["paused"] else "active",
                    "-" if q["concurrency"] is None else f"{q['running']}/{q['concurrency']}",
                    q["rate"] or "-",
                    q["running"],
                    q["jobs"]["pending"],
                    q["jobs"]["blocked"],
                    q["jobs"]["failed"],
                    q["jobs"]["dead"],
                    "-"
                    if q["oldest_due_age_s"] is None
                    else format_duration(q["oldest_due_age_s"]),
                ]
                for q in queues
            ),
        )
    )


@app.command()
def pause(names: Names, as_json: output.JsonFlag = False) -> None:
    """Stop claiming these queues' jobs (running ones finish); idempotent.

    Example: queuectl queue pause mail reports
    """
    _report(CTX.client().pause_queues(names), as_json, "paused")


@app.command()
def resume(names: Names, as_json: output.JsonFlag = False) -> None:
    """Claim these queues' jobs again; idempotent (also for a queue never paused).

    Example: queuectl queue resume mail
    """
    _report(CTX.client().resume_queues(names), as_json, "resumed")


@app.command("set")
def set_queue(
    name: Annotated[
        str,
        typer.Argument(metavar="QUEUE", show_default=False, autocompletion=complete.queue_names),
    ],
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            help="At most N of its jobs processing at once, across all workers; none: no limit.",
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate", help="At most N attempts started in any window: 100/1m, 5/1s; none."
        ),
    ] = None,
    as_json: output.JsonFlag = False,
) -> None:
    """Limit a queue fleet-wide.

    Example: queuectl queue set api --concurrency 3 --rate 100/1m
    """
    changes: dict[str, Any] = {}
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if rate is not None:
        changes["rate"] = rate
    control = CTX.client().set_queue(name, **changes)
    _report([control], as_json, "set")


def _report(controls: "list[models.QueueControl]", as_json: bool, verb: str) -> None:
    if as_json:
        output.emit_json([_control_json(c) for c in controls])
        return
    for c in controls:
        limits = [f"concurrency {c.concurrency}"] if c.concurrency is not None else []
        limits += [f"rate {rate}"] if (rate := queues.rate_text(c)) is not None else []
        state = "paused" if c.paused else "active"
        output.emit(f"{verb} {c.name}: {state}, {', '.join(limits) or 'no limits'}")


def _control_json(c: "models.QueueControl") -> dict[str, Any]:
    return {
        "name": c.name,
        "paused": c.paused,
        "concurrency": c.concurrency,
        "rate": queues.rate_text(c),
    }
