"""`queuectl schedule add | list | remove | pause | resume`: recurring (cron) jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from queuectl import errors, models
from queuectl.cli import output, specs
from queuectl.cli.context import CTX
from queuectl.safetext import visible

app = typer.Typer(
    help="Recurring jobs, fired once per cron slot by the orchestrator (or, on SQLite, by "
    "`worker start`).",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(metavar="NAME", show_default=False)]


@app.command()
def add(
    name: Name,
    cron: Annotated[str, typer.Option("--cron", help="5-field cron, UTC: '*/5 * * * *', @daily")],
    command: Annotated[str, typer.Option("--command", "-c", help="Shell command to enqueue.")],
    queue: Annotated[str, typer.Option(help="Queue of the jobs.")] = "default",
    priority: Annotated[int, typer.Option(help="Priority of the jobs.")] = 0,
    timeout: Annotated[
        str | None, typer.Option(help="Per-attempt limit (default: config job-timeout).")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option("--max-retries", help="Retries of each job (default: config max-retries)."),
    ] = None,
    as_json: output.JsonFlag = False,
) -> None:
    """Add a schedule; its first job fires at the next matching minute (UTC)."""
    from queuectl.cron import Cron

    Cron.parse(cron)  # reject a bad expression before storing it
    spec = specs.apply_overrides(
        models.JobSpec(command=specs.check_command(command)),
        specs.Overrides(queue=queue, priority=priority, timeout=timeout, max_retries=max_retries),
    )
    from queuectl.cli.enqueue import check_allowed

    check_allowed([spec.command])  # its jobs would all be refused by the workers
    created = CTX.backend().add_schedule(
        models.Schedule(
            name=specs.check_id(name) if len(name) <= 64 else _too_long(name),
            cron=cron.strip(),
            command=spec.command,
            queue=spec.queue,
            priority=spec.priority,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
        )
    )
    if as_json:
        output.emit_json(created.to_json())
    else:
        shown_name, shown_cron, shown_command = map(
            visible, (created.name, created.cron, created.command)
        )
        output.emit(f"added schedule {shown_name}: {shown_cron} -> {shown_command}")


def _too_long(name: str) -> str:
    raise errors.UsageError(f"schedule name {name[:20]!r}… is longer than 64 characters")


@app.command("list")
def list_(as_json: output.JsonFlag = False) -> None:
    """Every schedule with its next and last slot."""
    found = CTX.backend().list_schedules()
    now = models.utcnow()
    if as_json:
        output.emit_json([s.to_json() | {"next_slot": models.iso(_next(s, now))} for s in found])
        return
    if not found:
        output.note("no schedules")
        return
    output.emit(
        output.table(
            ["name", "cron", "queue", "state", "next (utc)", "last fired", "fired", "command"],
            (
                [
                    s.name,
                    s.cron,
                    s.queue,
                    "paused" if s.paused else "active",
                    _next(s, now),
                    s.last_slot,
                    s.fired,
                    output.one_line(s.command, 40),
                ]
                for s in found
            ),
        )
    )


def _next(schedule: models.Schedule, now: datetime) -> datetime | None:
    from queuectl.cron import Cron

    return None if schedule.paused else Cron.parse(schedule.cron).next_after(now)


@app.command()
def remove(name: Name) -> None:
    """Delete a schedule (jobs it already enqueued stay)."""
    CTX.backend().remove_schedule(name)
    output.emit(f"removed schedule {visible(name)}")


@app.command()
def pause(name: Name) -> None:
    """Stop firing until resumed; slots passed while paused are skipped."""
    CTX.backend().pause_schedule(name, paused=True)
    output.emit(f"paused schedule {visible(name)}")


@app.command()
def resume(name: Name) -> None:
    """Fire again from the next slot."""
    from queuectl.schedules import resume_schedule

    resume_schedule(CTX.backend(), name)
    output.emit(f"resumed schedule {visible(name)}")
