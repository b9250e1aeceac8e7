"""`queuectl completion bash|zsh|fish` prints a script; the shell then asks us back (answer())."""

from __future__ import annotations

import enum
from typing import Annotated

import typer


class Shell(enum.StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell to print the script for.")],
) -> None:
    """Print the shell completion script: commands, options, and from the database job ids,
    queue names and schedule names (config keys too). Load it once in your shell's startup.

    Example: eval "$(queuectl completion bash)"  (in ~/.bashrc; zsh alike, in ~/.zshrc)
    """
    from queuectl.cli import shells

    typer.echo(shells.completer(shell).source(), nl=False)


def answer(instruction: str) -> int:
    """Answer one request of a completion script (_QUEUECTL_COMPLETE=complete_SHELL; click's order
    SHELL_complete is accepted too): candidates on stdout, one per line, and the exit code.
    Nothing reaches stderr: it would land in the middle of the user's command line."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return _answer(instruction)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # a traceback in the user's prompt is worse than no candidates
        return 1


def _answer(instruction: str) -> int:
    from queuectl.cli import shells
    from queuectl.cli.app import build_app, command_named

    first, _, second = instruction.partition("_")
    action, shell = (second, first) if first in Shell.__members__ else (first, second)
    if shell not in Shell.__members__ or action not in ("complete", "source"):
        return 1
    comp = shells.completer(shell)
    if action == "source":
        typer.echo(comp.source(), nl=False)
        return 0
    args, _ = comp.get_completion_args()
    # build only the command the line names (as a normal call does), all of them while the
    # command itself is being completed
    comp.cli = typer.main.get_command(build_app(command_named(args)))
    reply = comp.complete()
    if reply:
        typer.echo(reply)
    return 0
