"""The typer app: global options, one small module per command group, errors -> exit codes."""

from __future__ import annotations

import contextlib
import sys
import traceback
from typing import Annotated

import typer
from typer._click.exceptions import ClickException

from queuectl import __version__, errors
from queuectl.cli import (
    bench_cmd,
    dashboard_cmd,
    dlq,
    jobs,
    orchestrator_cmd,
    schedules,
    settings_cmd,
    workers,
)
from queuectl.cli.context import CTX
from queuectl.cli.output import error_line

app = typer.Typer(
    name="queuectl",
    help="Run shell commands as background jobs: retries, a dead letter queue, crash-safe "
    "workers. SQLite by default; PostgreSQL for a fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
jobs.register(app)
app.add_typer(workers.app, name="worker")
app.add_typer(dlq.app, name="dlq")
app.add_typer(settings_cmd.app, name="config")
app.add_typer(settings_cmd.db_app, name="db")
app.add_typer(schedules.app, name="schedule")
app.add_typer(orchestrator_cmd.app, name="orchestrator")
app.command("dashboard")(dashboard_cmd.dashboard)
app.command("bench")(bench_cmd.bench)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"queuectl {__version__}")
        raise typer.Exit


@app.callback()
def _global(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL: sqlite:///path or postgresql://… "
            "(env QUEUECTL_DATABASE_URL; default: a SQLite file in the user data dir)",
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="auto | console | json (stderr)")
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="debug | info | …")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    CTX.flags.update(database_url=db, log_format=log_format, log_level=log_level)
    CTX.debug = debug


def main() -> None:
    """Console-script entry: every QueuectlError becomes one stderr line and its exit code."""
    code = 0
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0  # typer.Exit(n) comes back as n
    except ClickException as exc:
        # usage errors as one line too (typer's default is a multi-line box)
        ctx = getattr(exc, "ctx", None)  # set on usage errors, absent on other click errors
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        if message := exc.format_message():  # empty after no_args_is_help printed the help
            error_line(message + hint)
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except errors.QueuectlError as exc:
        if CTX.debug:
            traceback.print_exc()
        error_line(str(exc))
        code = exc.exit_code
    except BrokenPipeError:
        code = 0  # `queuectl list | head`: the reader left, nothing is wrong
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        with contextlib.suppress(errors.QueuectlError):
            CTX.close()
    sys.exit(code)
