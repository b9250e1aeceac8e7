"""`queuectl enqueue`: one job from JSON or flags, or many from NDJSON in one transaction."""

# No `from __future__ import annotations` in command modules: typer reads the signatures at
# every call, and string annotations would be compiled and evaluated again each time.
import itertools
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Annotated

import typer

from queuectl import errors, models, specs
from queuectl.cli import complete, output
from queuectl.cli.context import CTX

if TYPE_CHECKING:
    from queuectl.backends.base import Enqueued

_LINES_PER_WRITE = 10_000


def enqueue(
    job: Annotated[
        str | None,
        typer.Argument(
            help='The job as a JSON object with a "command"; `-` reads NDJSON from stdin.',
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="NDJSON file (one job object per line; `-` = stdin), enqueued in one transaction.",
        ),
    ] = None,
    command: Annotated[
        str | None, typer.Option("--command", "-c", help="Shell command (instead of JSON).")
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(help="Queue name (default: default).", autocompletion=complete.queue_names),
    ] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first (default: 0).")] = None,
    delay: Annotated[str | None, typer.Option(help="Run after this long: 30s, 5m, 2h.")] = None,
    run_at: Annotated[
        str | None,
        typer.Option(
            "--run-at",
            help="Run at this time: 2030-01-31T09:00:00Z, +01:00; without a zone, local time.",
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(help="Per-attempt limit: 30s, 5m; 0 = none (default: config job-timeout)."),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries", help="Retries after the first attempt (default: config max-retries)."
        ),
    ] = None,
    job_id: Annotated[str | None, typer.Option("--id", help="Job id (default: generated).")] = None,
    ttl: Annotated[
        str | None,
        typer.Option(help="Dead-letter the job if it has not started within this (e.g. 1h)."),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            "--after",
            help="Run only after this job completed (repeatable); blocked until then.",
            show_default=False,
            autocompletion=complete.job_ids,
        ),
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            "--unique-key",
            help="Insert nothing if an unfinished job holds this key (prints that job).",
        ),
    ] = None,
    unique_for: Annotated[
        str | None,
        typer.Option(
            "--unique-for", help="With --unique-key: also count jobs finished within this (1h)."
        ),
    ] = None,
    ids_only: Annotated[
        bool, typer.Option("--ids", help="Print only each job's id, one per line.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print no jobs (the count still goes to stderr).")
    ] = False,
) -> None:
    """Add a job (or many, from NDJSON) and print it as JSON.

    Example: queuectl enqueue -c 'make report' --after build-1 --unique-key report:today
    """
    flags = specs.Overrides(
        id=job_id,
        queue=queue,
        priority=priority,
        delay=delay,
        run_at=_run_at(run_at),
        timeout=timeout,
        max_retries=max_retries,
        ttl=ttl,
        after=None if not after else tuple(after),
        unique_key=unique_key,
        unique_for=unique_for,
    )
    sources = [s for s in (job, file, command) if s is not None]
    if len(sources) != 1:
        raise errors.UsageError("give exactly one of: a JSON job, --file F (or -), --command CMD")
    if file is not None or job == "-":
        if flags.id is not None:
            raise errors.UsageError("--id applies to one job; put ids in the NDJSON lines")
        _enqueue_many(file if file is not None else "-", flags, ids_only=ids_only, quiet=quiet)
        return
    if command is not None:
        spec = models.JobSpec(command=specs.check_command(command))
    else:
        assert job is not None
        spec = specs.parse_json_arg(job)
    created_job = CTX.client().enqueue(specs.apply_overrides(spec, flags))
    if ids_only:
        sys.stdout.write(created_job.id + "\n")
    elif not quiet:
        output.emit_json(created_job.to_json())
    if created_job.conflict:
        output.note(
            f"job {created_job.id} ({created_job.state}) already holds unique key "
            f"{created_job.unique_key!r}: nothing enqueued"
        )


def _enqueue_many(path: str, flags: specs.Overrides, *, ids_only: bool, quiet: bool) -> None:
    """NDJSON in, one JSON line per created job out (as single `enqueue` prints a job)."""
    # NDJSON lines end at "\n" only (str.splitlines would also split at U+2028 and others,
    # which JSON strings may hold unescaped)
    parsed = specs.parse_ndjson(_read_text(path).split("\n"))
    if flags != specs.Overrides():
        parsed = [specs.apply_overrides(s, flags) for s in parsed]
    batch = CTX.client().enqueue_bulk(parsed)
    if quiet:
        lines: Iterator[str] = iter(())
    elif ids_only:  # 100k jobs: a few hundred KB, not 40 MB of JSON
        lines = (
            (job.id for job in batch.jobs) if batch.jobs is not None else (r[0] for r in batch.rows)
        )
    else:
        lines = job_lines(batch)
    while chunk := list(itertools.islice(lines, _LINES_PER_WRITE)):
        sys.stdout.write("\n".join(chunk) + "\n")
    output.note(f"enqueued {batch.count} jobs")
    if conflicts := sum(1 for job in batch.jobs or () if job.conflict):
        output.note(
            f"{conflicts} lines named a unique key an unfinished job holds: printed that job"
        )


def _read_text(path: str) -> str:
    name = "standard input" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
        return data.decode("utf-8")
    except OSError as exc:
        raise errors.UsageError(f"cannot read {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise errors.UsageError(f"{name} is not UTF-8 text") from None


def job_lines(batch: "Enqueued") -> Iterator[str]:
    """Each enqueued job exactly as `json.dumps(job.to_json(), ensure_ascii=False)` prints
    it, from the rows the backend inserted: building and serialising 100k Job objects would
    take longer than inserting them."""
    if batch.jobs is not None:  # with dependencies or unique keys: every job read back
        yield from (json.dumps(job.to_json(), ensure_ascii=False) for job in batch.jobs)
        return
    now = _time(batch.now)
    times: dict[datetime, str] = {batch.now: now}  # most jobs share run_at (and expires_at)

    def time_of(value: datetime | None) -> str:
        if value is None:
            return "null"
        if (text := times.get(value)) is None:
            text = times[value] = _time(value)
        return text

    text = encode_basestring
    # ids and queue names are validated to [A-Za-z0-9._:-]: nothing in them needs escaping
    for job_id, command, queue, priority, run_at, timeout_s, max_retries, expires_at in batch.rows:
        timeout = "null" if timeout_s is None else repr(float(timeout_s))
        yield (
            f'{{"id": "{job_id}", "command": {text(command)}, "state": "pending", '
            f'"attempts": 0, "max_retries": {int(max_retries)}, "created_at": {now}, '
            f'"updated_at": {now}, "queue": "{queue}", "priority": {int(priority)}, '
            f'"run_at": {time_of(run_at)}, "timeout": {timeout}, "last_error": null, '
            f'"exit_code": null, "started_at": null, "finished_at": null, "worker_id": null, '
            f'"expires_at": {time_of(expires_at)}, "unique_key": null}}'
        )


def _time(value: datetime) -> str:
    return f'"{models.iso(value)}"'


def _run_at(text: str | None) -> str | None:
    """--run-at as a person types it: without a zone it is this machine's local time (as
    `at` and pueue read it), and stderr says how it was read. JSON `run_at` stays UTC when
    it has no zone: documents move between machines, the typist's zone does not."""
    if text is None:
        return None
    from queuectl.durations import parse_time

    when = parse_time(text, what="--run-at", local=True)  # a bad time: exit 2 here
    if datetime.fromisoformat(text.strip().replace("z", "Z")).tzinfo is None:
        local = when.astimezone()
        output.note(
            f"--run-at has no zone: read as local time {local.isoformat(' ', 'seconds')}"
            f" ({local.tzname()}), {models.iso(when)}"
        )
    return models.iso(when)
