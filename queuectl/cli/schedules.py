"""`queuectl schedule add | list | remove | pause | resume`: recurring (cron) jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from queuectl import models, specs
from queuectl.cli import complete, output
from queuectl.cli.context import CTX
from queuectl.safetext import visible

app = typer.Typer(
    help="Recurring jobs, fired once per cron slot by the orchestrator (or, on SQLite, by "
    "`worker start`).",
    epilog="Example: queuectl schedule add hourly --cron '@hourly' -c 'make sync'",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(metavar="NAME", show_default=False)]
# an existing schedule's name: completed from the database
Existing = Annotated[
    str, typer.Argument(metavar="NAME", show_default=False, autocompletion=complete.schedule_names)
]


@app.command()
def add(
    name: Name,
    cron: Annotated[str, typer.Option("--cron", help="5-field cron: '*/5 * * * *', @daily")],
    command: Annotated[str, typer.Option("--command", "-c", help="Shell command to enqueue.")],
    tz: Annotated[
        str, typer.Option("--tz", help="IANA time zone the cron fields are read in.")
    ] = "UTC",
    queue: Annotated[
        str, typer.Option(help="Queue of the jobs.", autocompletion=complete.queue_names)
    ] = "default",
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
    """Add a schedule; its first job fires at the next matching minute in its zone. Across
    DST changes a fixed time (`30 2 * * *`) fires once, at the first of a repeated time and
    right after a skipped one; `*` in the minute or hour follows the real clock.

    Example: queuectl schedule add nightly --cron '0 3 * * *' -c 'make backup' --tz UTC
    """
    from queuectl.cron import Cron

    Cron.parse(cron, tz)  # a bad expression or zone is named before any other mistake
    # the flags' own names in errors (--priority), so parsed here rather than by the Client
    spec = specs.apply_overrides(
        models.JobSpec(command=specs.check_command(command)),
        specs.Overrides(queue=queue, priority=priority, timeout=timeout, max_retries=max_retries),
    )
    created = CTX.client().add_schedule(name, cron=cron, command=spec, tz=tz)
    if as_json:
        output.emit_json(created.to_json())
    else:
        shown_name, shown_cron, shown_tz, shown_command = map(
            visible, (created.name, created.cron, created.tz, created.command)
        )
        output.emit(f"added schedule {shown_name}: {shown_cron} ({shown_tz}) -> {shown_command}")


@app.command("list")
def list_(as_json: output.JsonFlag = False) -> None:
    """Every schedule with its next and last slot.

    Example: queuectl schedule list --json
    """
    client = CTX.client()
    found = client.schedules()
    now = models.utcnow()
    if as_json:
        output.emit_json(
            [s.to_json() | {"next_slot": models.iso(client.next_slot(s, now))} for s in found]
        )
        return
    if not found:
        output.note("no schedules")
        return
    output.emit(
        output.table(
            ["name", "cron", "tz", "queue", "state", "next", "last fired", "fired", "command"],
            (
                [
                    s.name,
                    s.cron,
                    s.tz,
                    s.queue,
                    "paused" if s.paused else "active",
                    _local(client.next_slot(s, now), s.tz),
                    _local(s.last_slot, s.tz),
                    s.fired,
                    output.one_line(s.command, 40),
                ]
                for s in found
            ),
        )
    )


def _local(at: datetime | None, tz: str) -> str | None:
    """A slot as the schedule's wall clock, with the offset that tells a repeated hour apart."""
    if at is None:
        return None
    from queuectl.cron import zone

    return at.astimezone(zone(tz)).isoformat(timespec="minutes").replace("+00:00", "Z")


@app.command()
def remove(name: Existing) -> None:
    """Delete a schedule (jobs it already enqueued stay).

    Example: queuectl schedule remove nightly
    """
    CTX.client().remove_schedule(name)
    output.emit(f"removed schedule {visible(name)}")


@app.command()
def run(name: Existing, as_json: output.JsonFlag = False) -> None:
    """Enqueue the schedule's job now, paused or not; its cron slots are untouched. The
    job's id is NAME:now-<id>.

    Example: queuectl schedule run nightly --json"""
    job = CTX.client().run_schedule(name)
    if as_json:
        output.emit_json(job.to_json())
    else:
        output.emit(f"enqueued job {visible(job.id)} from schedule {visible(name)}")


@app.command()
def pause(name: Existing) -> None:
    """Stop firing until resumed; slots passed while paused are skipped.

    Example: queuectl schedule pause nightly
    """
    CTX.client().pause_schedule(name)
    output.emit(f"paused schedule {visible(name)}")


@app.command()
def resume(name: Existing) -> None:
    """Fire again from the next slot.

    Example: queuectl schedule resume nightly
    """
    CTX.client().resume_schedule(name)
    output.emit(f"resumed schedule {visible(name)}")
