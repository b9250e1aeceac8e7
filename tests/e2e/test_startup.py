"""What the quick commands import on SQLite: none of the server, worker or Postgres stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from queuectl.cli.app import COMMANDS, build_app, command_named

pytestmark = pytest.mark.e2e
# each costs tens of milliseconds at import, and an enqueue on SQLite needs none of them
HEAVY = {
    "psycopg",
    "psycopg_pool",
    "prometheus_client",
    "starlette",
    "jinja2",
    "uvicorn",
    "structlog",
    "queuectl.web",
    "queuectl.worker",
    "queuectl.orchestrator",
    "queuectl.metrics",
    "queuectl.bench",
    "queuectl.runner",
    "queuectl.records",  # the worker-side value types: models builds them on first use
    "cronsim",  # cron is parsed where schedules are added or fired, never for a job
    "zoneinfo",
}


def imported(tmp_path: Path, *args: str) -> set[str]:
    """Every module `python -X importtime -m queuectl ARGS` imports (its stderr report)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "queuectl", *args],
        env={**os.environ, "QUEUECTL_DATABASE_URL": f"sqlite:///{tmp_path}/q.db"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", result.stderr, re.M))
    assert "queuectl.cli.app" in names  # the report was read
    return names


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", '{"command": "true"}'],
        ["enqueue", "-c", "true", "--queue", "q", "--delay", "5s"],
        ["status"],
        ["status", "--json"],
        ["list"],
        ["list", "--json"],
    ],
)
def test_quick_commands_on_sqlite_import_no_heavy_module(tmp_path: Path, args: list[str]) -> None:
    names = imported(tmp_path, *args)
    loaded = {n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY)}
    assert not loaded


def test_a_command_imports_only_its_own_cli_module(tmp_path: Path) -> None:
    names = imported(tmp_path, "enqueue", '{"command": "true"}')
    cli_modules = {name for name in names if name.startswith("queuectl.cli.")}
    assert cli_modules <= {
        "queuectl.cli.app",
        "queuectl.cli.context",
        "queuectl.cli.output",
        "queuectl.cli.enqueue",
        "queuectl.cli.complete",  # the completion callbacks its options name (no lookups)
    }


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["enqueue", "{}"], "enqueue"),
        (["--db", "sqlite:///x.db", "list", "--json"], "list"),
        (["--db=sqlite:///x.db", "--debug", "status"], "status"),
        (["--log-level", "list", "worker", "start"], "worker"),
        (["db", "migrate"], "db"),
        (["--help", "enqueue"], None),
        (["-h"], None),
        (["nosuch"], None),
        ([], None),
    ],
)
def test_command_named_finds_the_one_command_a_call_needs(
    argv: list[str], name: str | None
) -> None:
    assert command_named(argv) == name


def test_the_full_app_has_every_command_in_order() -> None:
    import typer.main

    group = typer.main.get_command(build_app())
    assert list(group.commands) == list(COMMANDS)  # type: ignore[attr-defined]
