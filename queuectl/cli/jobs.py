"""Job commands: list, show, logs, cancel, retry, status, stats (enqueue: cli/enqueue.py)."""

# no `from __future__ import annotations`: see cli/enqueue.py (and annotations naming a
# queuectl.records type are quoted, so that defining a function does not build the type)
import sys
import time
from datetime import datetime
from typing import Annotated

import typer

from queuectl import errors, models
from queuectl.cli import complete, output
from queuectl.cli.context import CTX
from queuectl.durations import format_duration
from queuectl.safetext import visible, visible_lines

STATES = ", ".join(s.value for s in models.JobState)


def list_jobs(
    state: Annotated[
        str | None,
        typer.Option(help=f"Only this state: {STATES}.", autocompletion=complete.states),
    ] = None,
    queue: Annotated[
        str | None, typer.Option(help="Only this queue.", autocompletion=complete.queue_names)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
    as_json: output.JsonFlag = False,
) -> None:
    """List jobs, newest first.

    Example: queuectl list --state failed --queue mail --limit 20
    """
    found = CTX.client().list(state=state, queue=queue, limit=limit)
    if as_json:
        output.emit_json([j.to_json() for j in found])
        return
    if not found:
        output.note("no jobs")
        return
    now = models.utcnow()
    output.emit(
        output.table(
            ["id", "state", "queue", "pri", "tries", "when", "command"],
            (
                [
                    j.id,
                    j.state,
                    j.queue,
                    j.priority,
                    f"{j.attempts}/{j.max_retries + 1}",
                    _when(j, now),
                    output.one_line(j.command, 50),
                ]
                for j in found
            ),
        )
    )


def _when(job: models.Job, now: datetime) -> str:
    if job.state in (models.JobState.PENDING, models.JobState.FAILED) and job.run_at > now:
        return "runs " + output.ago(job.run_at, now)
    if job.state is models.JobState.PROCESSING:
        return "started " + output.ago(job.started_at, now)
    return output.ago(job.finished_at or job.updated_at, now)


def show(
    job_id: Annotated[
        str, typer.Argument(metavar="ID", show_default=False, autocompletion=complete.job_ids)
    ],
    as_json: output.JsonFlag = False,
) -> None:
    """A job with every attempt.

    Example: queuectl show build-1 --json | jq '.runs[-1].exit_code'
    """
    client = CTX.client()
    job = client.get(job_id)
    runs = client.runs(job_id)
    edges = client.dependencies(job_id)
    links = {
        side: [{"id": d.id, "state": d.state} for d in edges if d.side == key]
        for side, key in (("after", "after"), ("dependents", "dependent"))
    }
    if as_json:
        output.emit_json(job.to_json() | links | {"runs": [r.to_json() for r in runs]})
        return
    data = job.to_json()
    for side, jobs in links.items():
        if jobs:
            data[side] = ", ".join(f"{d['id']} ({d['state']})" for d in jobs)
    width = max(len(k) for k in data)
    for key, value in data.items():
        # escaped: a newline in a command would otherwise print a forged `state` line
        output.emit(f"{key.ljust(width)}  {'-' if value is None else visible(str(value))}")
    if runs:
        output.emit()
        output.emit(
            output.table(
                ["attempt", "worker", "started", "took", "exit", "outcome", "error"],
                (
                    [
                        r.attempt,
                        r.worker_id,
                        r.started_at,
                        None
                        if r.finished_at is None
                        else format_duration((r.finished_at - r.started_at).total_seconds()),
                        r.exit_code,
                        r.outcome or "running",
                        r.error,
                    ]
                    for r in runs
                ),
            )
        )


def logs(
    job_id: Annotated[
        str, typer.Argument(metavar="ID", show_default=False, autocompletion=complete.job_ids)
    ],
    attempt: Annotated[
        int | None, typer.Option(min=1, help="Attempt number (from 1; default: the latest).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream a running job until it finishes.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the output as captured, even on a terminal.")
    ] = False,
) -> None:
    """Captured stdout and stderr of an attempt.

    On a terminal, control characters other than newline and tab show
    escaped (\\x1b, \\r): a job's output cannot rewrite the screen, the
    title or the clipboard. --raw, or a pipe, prints the output as captured.

    Example: queuectl logs build-1 --attempt 2; queuectl logs build-2 --follow
    """
    client = CTX.client()
    printed = 0
    # a program reading the pipe wants the job's bytes; a person's terminal must not obey them
    shown = visible_lines if not raw and sys.stdout.isatty() else None
    said = ""
    try:
        while True:
            run = client.run(job_id, attempt)
            if run is not None and run.output_bytes > printed:
                text = _unseen(run, printed)
                sys.stdout.write(text if shown is None else shown(text))
                sys.stdout.flush()
                printed = run.output_bytes
            if not follow or (run is not None and run.finished_at is not None):
                break
            if run is None:
                job = client.get(job_id)
                if job.state in models.TERMINAL_STATES:
                    break
                # say what the follow waits for (and again when that changes), else a job
                # due in 2 h looks like a hang
                if (awaited := _awaited(job, models.utcnow())) != said:
                    output.note(f"waiting: {awaited}")
                    said = awaited
            time.sleep(0.3)
    except KeyboardInterrupt:
        return
    if run is None and not follow:
        output.note(f"no attempt yet: {_awaited(client.get(job_id), models.utcnow())}")


def _awaited(job: models.Job, now: datetime) -> str:
    """Why a job has no attempt to show yet, and until when."""
    if job.state is models.JobState.BLOCKED:
        return f"job {job.id} is blocked until its dependencies complete (queuectl show {job.id})"
    if job.state in models.TERMINAL_STATES:
        return f"job {job.id} is {job.state}"
    if job.run_at > now:
        due = f"due {models.iso(job.run_at)} ({output.ago(job.run_at, now)})"
        return f"job {job.id} is {job.state}, {due}"
    return f"job {job.id} is due, waiting for a worker on queue {job.queue}"


def _unseen(run: "models.Run", printed: int) -> str:
    """The part of a run's stored output tail past the first `printed` bytes."""
    if printed == 0:
        return run.output
    from queuectl.runner import without_mark

    # output_bytes counts bytes the job wrote; the tail is text, so cut it as UTF-8 bytes
    body = without_mark(run.output).encode("utf-8", errors="surrogatepass")
    new = run.output_bytes - printed
    return (body[-new:] if new < len(body) else body).decode("utf-8", errors="replace")


def cancel(
    job_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="ID...", show_default=False, autocompletion=complete.cancellable_job_ids
        ),
    ],
    as_json: output.JsonFlag = False,
) -> None:
    """Cancel pending, failed or blocked jobs (all or none); running ones are killed by their
    workers. --json prints one array.

    Example: queuectl cancel build-1 build-2
    """
    jobs = CTX.client().cancel_many(job_ids)
    if as_json:
        output.emit_json([job.to_json() for job in jobs])
        return
    for job in jobs:
        if job.state is models.JobState.PROCESSING:
            output.emit(
                f"cancel requested: {job.id} is running; its worker kills it within seconds"
            )
        else:
            output.emit(f"cancelled {job.id}")


def retry(
    job_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="ID...", show_default=False, autocompletion=complete.retryable_job_ids
        ),
    ],
    as_json: output.JsonFlag = False,
) -> None:
    """Run failed, dead or cancelled jobs again now (dead/cancelled start over at 0 attempts);
    all or none. --json prints one array.

    Example: queuectl retry build-1 build-2 --json
    """
    done = CTX.client().retry_many(job_ids)
    if as_json:
        output.emit_json([job.to_json() for job in done])
        return
    for job in done:
        output.emit(f"retrying {job.id}")


def wait(
    job_ids: Annotated[
        list[str],
        typer.Argument(metavar="ID...", show_default=False, autocompletion=complete.job_ids),
    ],
    timeout: Annotated[
        str | None, typer.Option(help="Give up after this long (30s, 5m): exit 124.")
    ] = None,
    as_json: output.JsonFlag = False,
) -> None:
    """Block until every job has finished: exit 0 when all completed, 1 when any ended
    otherwise (dead, cancelled), 124 on --timeout.

    Example: queuectl wait $(queuectl enqueue -c 'make' | jq -r .id) --timeout 10m
    """
    client = CTX.client()
    if timeout is not None:
        from queuectl import specs

        specs.seconds(timeout, "--timeout")  # a bad value is exit 2 before any wait
    jobs = client.wait(job_ids, timeout)
    if as_json:
        output.emit_json([j.to_json() for j in jobs])
    else:
        for j in jobs:
            output.emit(f"{j.id}  {j.state}")
    failed = [j for j in jobs if j.state is not models.JobState.COMPLETED]
    if failed:
        names = ", ".join(f"{j.id} {j.state}" for j in failed[:5])
        output.error_line(f"{len(failed)} of {len(jobs)} jobs did not complete ({names})")
        raise typer.Exit(1)


def status(
    as_json: output.JsonFlag = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 s.")] = False,
) -> None:
    """Job counts per state and queue, live workers, DLQ size, and the database they are in
    (its password masked).

    Example: queuectl --db postgresql://queuectl@db/queuectl status --watch
    """
    client = CTX.client()
    where = database_shown(CTX.settings.database_url)
    try:
        while True:
            stats = client.status()
            if watch and sys.stdout.isatty() and not as_json:
                sys.stdout.write("\x1b[H\x1b[2J")
            if as_json:
                output.emit_json({**stats.to_json(), "database": where})
            else:
                output.emit(_status_text(stats) + f"\ndatabase: {visible(where)}")
            if not watch:
                return
            sys.stdout.flush()
            time.sleep(2)
    except KeyboardInterrupt:
        return


def database_shown(url: str) -> str:
    """The database as a person should read it: a SQLite file as its absolute path (a typo
    shows up as a file in an unexpected place), a server URL with its password masked."""
    import os

    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///")  # what open_backend opens: sqlite:////abs -> /abs
    elif "://" in url:
        from queuectl.backends import redact

        return redact(url)
    return os.path.abspath(os.path.expanduser(url))


def _status_text(stats: models.QueueStats) -> str:
    data = stats.to_json()
    lines = [f"jobs: {data['total']}"]
    lines += [f"  {state:<11} {n}" for state, n in data["jobs"].items()]
    if stats.by_queue:
        lines.append("queues:")
        names = {queue: visible(queue) for queue in stats.by_queue}
        width = max(map(len, names.values()))
        for queue, counts in stats.by_queue.items():
            parts = " · ".join(f"{s} {counts[s]}" for s in models.JobState if s in counts)
            lines.append(f"  {names[queue].ljust(width)}  {parts}")
    lines.append(f"workers: {stats.workers} ({stats.busy_workers} busy)")
    lines.append(f"dlq: {stats.dlq}")
    return "\n".join(lines)


def stats(
    since: Annotated[
        str, typer.Option(help="Window: attempts finished in the last 30m, 1h, 7d…")
    ] = "1h",
    queue: Annotated[
        str | None, typer.Option(help="Only this queue.", autocompletion=complete.queue_names)
    ] = None,
    as_json: output.JsonFlag = False,
) -> None:
    """Throughput, success rate and run/wait times of finished attempts, per queue.

    Example: queuectl stats --since 24h --queue mail --json
    """
    from queuectl.durations import parse_duration

    window_s = parse_duration(since, what="--since")
    if window_s <= 0:
        raise errors.UsageError("--since must be longer than 0s")
    doc = CTX.client().stats(window_s, queue=queue)
    if as_json:
        output.emit_json(doc)
        return
    groups = {"(all)": doc["all"], **doc["queues"]}
    output.emit(f"attempts finished in the last {format_duration(window_s)}")
    output.emit(
        output.table(
            [
                "queue",
                "done",
                "ok %",
                "per min",
                "run p50",
                "run p95",
                "run max",
                "wait p50",
                "wait p95",
            ],
            (
                [
                    name,
                    g["finished"],
                    _pct(g["success_rate"]),
                    g["throughput_per_min"],
                    _secs(g["run_s"]["p50"]),
                    _secs(g["run_s"]["p95"]),
                    _secs(g["run_s"]["max"]),
                    _secs(g["wait_s"]["p50"]),
                    _secs(g["wait_s"]["p95"]),
                ]
                for name, g in groups.items()
            ),
        )
    )


def _pct(rate: float | None) -> str | None:
    return None if rate is None else f"{rate * 100:.1f}"


def _secs(value: float | None) -> str | None:
    return None if value is None else format_duration(value)
