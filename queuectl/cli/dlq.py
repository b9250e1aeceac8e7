"""`queuectl dlq list | retry | purge`: the dead letter queue."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from queuectl import errors
from queuectl.cli import complete, output
from queuectl.cli.context import CTX

app = typer.Typer(
    help="The dead letter queue: jobs that used up their retries.",
    epilog="Example: queuectl dlq list --queue mail",
    no_args_is_help=True,
)


@app.command("list")
def list_dead(
    queue: Annotated[
        str | None, typer.Option(help="Only this queue.", autocompletion=complete.queue_names)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    as_json: output.JsonFlag = False,
) -> None:
    """Dead jobs, newest first, with their last error.

    Example: queuectl dlq list --queue mail --limit 20
    """
    dead = CTX.client().dlq(queue=queue, limit=limit)
    if as_json:
        output.emit_json([j.to_json() for j in dead])
        return
    if not dead:
        output.note("the DLQ is empty")
        return
    output.emit(
        output.table(
            ["id", "queue", "attempts", "died", "last error", "command"],
            (
                [
                    j.id,
                    j.queue,
                    j.attempts,
                    j.finished_at,
                    output.one_line(j.last_error or "", 40),
                    output.one_line(j.command, 40),
                ]
                for j in dead
            ),
        )
    )


@app.command()
def retry(
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ID]...", autocompletion=complete.dead_job_ids),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead job.")] = False,
    as_json: output.JsonFlag = False,
) -> None:
    """Move dead jobs back to pending with attempts reset to 0 (max_retries kept).

    Example: queuectl dlq retry build-1 build-2
    """
    if bool(job_ids) == all_:
        raise errors.UsageError("give job ids or --all")
    client = CTX.client()
    if all_:
        count = client.dlq_retry_all()
        if as_json:
            output.emit_json({"retried": count})
        else:
            output.emit(f"retrying {count} dead jobs")
        return
    jobs = client.dlq_retry(job_ids or [])
    if as_json:
        output.emit_json([j.to_json() for j in jobs])
        return
    for job in jobs:
        output.emit(f"retrying {job.id}")


@app.command()
def purge(
    queue: Annotated[
        str | None,
        typer.Option(help="Only this queue's dead jobs.", autocompletion=complete.queue_names),
    ] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Only jobs dead longer than this (7d).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (on a terminal).")] = False,
    as_json: output.JsonFlag = False,
) -> None:
    """Delete dead jobs and their attempts: every one, or those matching the filters. On a
    terminal it asks first (--yes skips that); from a script or pipe it never asks.

    Example: queuectl dlq purge --queue mail --older-than 7d --yes
    """
    client = CTX.client()
    filters = {"queue": queue, "older_than": older_than}
    if not yes and sys.stdin.isatty():
        matching = client.dlq_count(**filters)
        if matching == 0:
            output.note("no dead jobs match: nothing to purge")
        else:
            which = "".join(
                [
                    f" of queue {queue}" if queue else "",
                    f" dead over {older_than}" if older_than else "",
                ]
            )
            if not typer.confirm(f"delete {matching} dead jobs{which} and their attempts?"):
                output.error_line("purge cancelled: nothing deleted")
                raise typer.Exit(1)
    count = client.dlq_purge(**filters)
    if as_json:
        output.emit_json({"purged": count})
    else:
        output.emit(f"purged {count} dead jobs")
