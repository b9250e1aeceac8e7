"""Every command's --help shows an example: walked over the whole CLI, so no new one forgets."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from queuectl.cli.app import build_app


def command_paths() -> list[tuple[str, ...]]:
    """The root, every group and every command, as argument paths ((), ("worker", "start") …)."""
    found: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        if getattr(command, "hidden", False):
            return
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(build_app()), ())
    return found


PATHS = command_paths()


def test_the_walk_sees_commands_and_groups() -> None:
    assert {(), ("show",), ("worker",), ("worker", "start"), ("completion",)} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "queuectl")
def test_help_shows_an_example_of_the_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(build_app(), [*path, "--help"], prog_name="queuectl")
    assert result.exit_code == 0, result.output
    # rich wraps and frames the help: compare with the whitespace folded
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    assert "Example: " in text, f"`queuectl {' '.join(path)} --help` shows no example"
    example = text.split("Example: ", 1)[1][:200]
    assert "queuectl" in example
    assert " ".join(path) in example, f"the example does not run `{' '.join(path)}`: {example}"
