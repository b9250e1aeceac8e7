"""The typer app: global options, one small module per command group, errors -> exit codes."""

# no `from __future__ import annotations`: typer would evaluate _global's strings on each call
import contextlib
import importlib
import os
import sys
from typing import Annotated

import typer
from typer._click.exceptions import ClickException

from queuectl import __version__, errors
from queuectl.cli.context import CTX
from queuectl.cli.output import error_line

# name -> (module, attribute): a function is a command, a typer.Typer a group. A call
# imports and builds only the command it names: typer reads every signature it registers,
# and all of them (with their modules) cost more than an enqueue itself. In `--help` order
# (typer lists commands before groups).
COMMANDS: dict[str, tuple[str, str]] = {
    "enqueue": ("queuectl.cli.enqueue", "enqueue"),
    "list": ("queuectl.cli.jobs", "list_jobs"),
    "show": ("queuectl.cli.jobs", "show"),
    "logs": ("queuectl.cli.jobs", "logs"),
    "cancel": ("queuectl.cli.jobs", "cancel"),
    "retry": ("queuectl.cli.jobs", "retry"),
    "wait": ("queuectl.cli.jobs", "wait"),
    "status": ("queuectl.cli.jobs", "status"),
    "stats": ("queuectl.cli.jobs", "stats"),
    "dashboard": ("queuectl.cli.dashboard_cmd", "dashboard"),
    "bench": ("queuectl.cli.bench_cmd", "bench"),
    "completion": ("queuectl.cli.completion_cmd", "completion"),
    "worker": ("queuectl.cli.workers", "app"),
    "queue": ("queuectl.cli.queues_cmd", "app"),
    "dlq": ("queuectl.cli.dlq", "app"),
    "config": ("queuectl.cli.settings_cmd", "app"),
    "db": ("queuectl.cli.settings_cmd", "db_app"),
    "schedule": ("queuectl.cli.schedules", "app"),
    "orchestrator": ("queuectl.cli.orchestrator_cmd", "app"),
}
_VALUED_OPTIONS = {"--db", "--log-format", "--log-level"}  # global options that take a value


def _version(value: bool) -> None:
    if value:
        typer.echo(f"queuectl {__version__}")
        raise typer.Exit


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


def build_app(only: str | None = None) -> typer.Typer:
    """The CLI with every command, or with just `only` (a name in COMMANDS)."""
    app = typer.Typer(
        name="queuectl",
        help="Run shell commands as background jobs: retries, a dead letter queue, crash-safe "
        "workers. SQLite by default; PostgreSQL for a fleet.",
        epilog="Example: queuectl enqueue -c 'make report' && queuectl worker start --burst",
        no_args_is_help=True,
        add_completion=False,  # `queuectl completion SHELL` instead: DECISIONS.md §29
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_global)
    for name, (module, attr) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def command_named(argv: list[str]) -> str | None:
    """The command an argument list runs, when one command is all it can need: None for
    help, an unknown name or no command, which list every command."""
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            return None
        if arg in _VALUED_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def __getattr__(name: str) -> typer.Typer:
    # `queuectl.cli.app:app` (typer's docs tooling, old scripts) still finds the whole CLI
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main() -> None:
    """Console-script entry: every QueuectlError becomes one stderr line and its exit code."""
    if instruction := os.environ.get("_QUEUECTL_COMPLETE"):
        # a shell asking for candidates (the scripts of `queuectl completion SHELL`)
        from queuectl.cli.completion_cmd import answer

        sys.exit(answer(instruction))
    code = 0
    try:
        app = build_app(command_named(sys.argv[1:]))
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
            import traceback

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
