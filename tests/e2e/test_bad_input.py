"""Bad input: the documented exit code, one line on stderr, and nothing changed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from queuectl import models
from queuectl.backends import open_backend
from queuectl.backends.base import Backend
from tests.conftest import Cli

pytestmark = pytest.mark.e2e


def snapshot(cli: Cli) -> tuple[object, ...]:
    """Everything a rejected command could have touched, read straight from the database."""
    backend = open_backend(cli.url)
    try:
        jobs = backend.list_jobs(limit=10_000)
        return jobs, [backend.runs(j.id) for j in jobs], backend.get_settings()
    finally:
        backend.close()


BAD = [
    (2, ["enqueue", "{not json"]),
    (2, ["enqueue", "[1, 2]"]),
    (2, ["enqueue", '{"id": "x"}']),
    (2, ["enqueue", '{"command": ""}']),
    (2, ["enqueue", '{"command": "true", "max_retries": -1}']),
    (2, ["enqueue", '{"command": "true", "max_retries": 1.5}']),
    (2, ["enqueue", '{"command": "true", "priority": 2.5}']),
    (2, ["enqueue", '{"command": "true", "timeout": -3}']),
    (2, ["enqueue", '{"command": "true", "colour": "red"}']),
    (2, ["enqueue", '{"command": "true", "state": "completed"}']),
    (2, ["enqueue", '{"command": "true", "id": "has space"}']),
    (2, ["enqueue", '{"command": "true", "run_at": "tomorrow"}']),
    (2, ["enqueue", "-c", "true", "--max-retries", "-1"]),
    (2, ["enqueue", "-c", "true", "--max-retries", "1.5"]),
    (2, ["enqueue", "-c", "true", "--priority", "1.5"]),
    (2, ["enqueue", "-c", "true", "--delay", "soon"]),
    (2, ["enqueue", "-c", "true", "--delay", "-5s"]),
    (2, ["enqueue"]),
    (2, ["list", "--state", "bogus"]),
    (2, ["list", "--limit", "0"]),
    (2, ["config", "set", "colour", "red"]),
    (2, ["config", "get", "colour"]),
    (2, ["config", "set", "max-retries", "-1"]),
    (2, ["config", "set", "max-retries", "1.5"]),
    (2, ["config", "set", "backoff-base", "zero"]),
    (2, ["config", "set", "backoff-base", "0.5"]),
    (2, ["config", "set", "job-timeout", "-10"]),
    (2, ["worker", "start", "--count", "0"]),
    (2, ["worker", "start", "--count", "-2"]),
    (2, ["worker", "start", "--count", "1.5"]),
    (2, ["dlq", "retry"]),
    (2, ["no-such-command"]),
    (3, ["show", "nope"]),
    (3, ["logs", "nope"]),
    (3, ["cancel", "nope"]),
    (3, ["retry", "nope"]),
    (3, ["dlq", "retry", "nope"]),
    (4, ["enqueue", '{"id": "taken", "command": "echo again"}']),
    (4, ["retry", "taken"]),
    (4, ["dlq", "retry", "taken"]),
]


@pytest.mark.parametrize(("code", "args"), BAD, ids=[" ".join(a)[:60] for _, a in BAD])
def test_bad_input_is_rejected_cleanly(
    cli: Cli, backend: Backend, code: int, args: list[str]
) -> None:
    backend.enqueue([models.JobSpec(id="taken", command="echo first")])
    before = snapshot(cli)
    result = cli(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert snapshot(cli) == before


def test_bulk_enqueue_is_all_or_nothing(cli: Cli, tmp_path: Path) -> None:
    good = json.dumps({"command": "true"})
    path = tmp_path / "jobs.ndjson"
    path.write_text(f"{good}\n{good}\n{{oops\n")
    result = cli("enqueue", "--file", str(path))
    assert result.returncode == 2 and "line 3" in result.stderr
    path.write_text(f'{good}\n{{"id": "d", "command": "true"}}\n{{"id": "d", "command": "x"}}\n')
    assert cli("enqueue", "--file", str(path)).returncode == 4
    assert cli.json("list", "--json") == []
    missing = cli("enqueue", "--file", str(tmp_path / "absent.ndjson"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_unicode_and_5kb_commands_round_trip_exactly(cli: Cli) -> None:
    unicode = "printf '%s\\n' 'héllo — wörld ✓ 日本語 🚀'"
    long = "echo " + "abcdefghij" * 500 + " # " + "é" * 10
    for command in (unicode, long):
        created = cli.enqueue({"command": command})
        assert created["command"] == command
        assert cli.json("show", created["id"], "--json")["command"] == command
    assert cli("worker", "start", "--burst").returncode == 0
    listed = {j["command"]: j for j in cli.json("list", "--json")}
    out = cli("logs", listed[unicode]["id"]).stdout
    assert out == "héllo — wörld ✓ 日本語 🚀\n"
    assert cli("logs", listed[long]["id"]).stdout == "abcdefghij" * 500 + "\n"


def test_unreachable_database_exits_69(tmp_path: Path) -> None:
    for url in ("postgresql://nobody@127.0.0.1:1/none", f"sqlite:///{tmp_path}/file/sub/x.db"):
        if url.startswith("sqlite"):
            (tmp_path / "file").write_text("not a directory")
        result = Cli(url, tmp_path)("status")
        assert result.returncode == 69, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_non_utf8_input_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    raw = b'{"command": "echo \xff"}\n'
    path = tmp_path / "latin1.ndjson"
    path.write_bytes(raw)
    for args, stdin in ((["enqueue", "-"], raw), (["enqueue", "--file", str(path)], b"")):
        result = subprocess.run(
            [sys.executable, "-m", "queuectl", *args],
            env=cli.env(PYTHONIOENCODING="utf-8:strict"),
            input=stdin,
            capture_output=True,
            timeout=30,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.decode().count("\n") == 1
        assert b"not UTF-8" in result.stderr
    assert cli.json("list", "--json") == []


def test_a_schema_newer_than_this_queuectl_is_refused(cli: Cli) -> None:
    """A database that a newer queuectl migrated (schema version 99) may mean anything to
    this one: every command refuses it with one line and exit 69, and changes nothing."""
    import sqlite3

    if cli.url.startswith("sqlite"):
        path = cli.url.removeprefix("sqlite:///")
        assert cli("status").returncode == 0  # created at the current version
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA user_version = 99")
    else:
        import psycopg

        with psycopg.connect(cli.url, autocommit=True) as conn:
            conn.execute("INSERT INTO queuectl_schema (version) VALUES (99)")
    for args in (("status",), ("enqueue", '{"command": "true"}'), ("db", "migrate")):
        result = cli(*args)
        assert result.returncode == 69, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "version 99" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_a_sql_ascii_postgres_database_works_like_a_utf8_one(
    postgres_url: str, tmp_path: Path
) -> None:
    """A database created without a UTF-8 locale has encoding SQL_ASCII; psycopg returned
    bytes there, so `status` counted 0 jobs and named a queue b'default'."""
    import uuid

    from tests.conftest import _admin, _with_db

    name = f"queuectl_ascii_{uuid.uuid4().hex[:8]}"
    _admin(
        postgres_url,
        f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
        " TEMPLATE template0",
    )
    try:
        cli = Cli(_with_db(postgres_url, name), tmp_path)
        assert cli("db", "migrate").returncode == 0
        command = "echo 'héllo ☃ — ✓'"
        cli.enqueue({"id": "u1", "command": command, "queue": "mail"})
        status = cli.json("status", "--json")
        assert status["jobs"]["pending"] == 1, status
        assert cli.json("list", "--json")[0]["command"] == command
        assert "mail" in cli("status").stdout and "b'" not in cli("status").stdout
        assert cli("worker", "start", "--burst").returncode == 0
        shown = cli.json("show", "u1", "--json")
        assert shown["state"] == "completed" and shown["command"] == command
        assert cli("logs", "u1").stdout == "héllo ☃ — ✓\n"
    finally:
        _admin(postgres_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_errors_are_json_lines_where_logs_are_json(cli: Cli) -> None:
    """In a container (QUEUECTL_LOG_FORMAT=json, the image's default) a refusal is a JSON
    event like every log line: the dashboard's refusal without a token, a missing job."""
    for args, code in (
        (("show", "nosuch"), 3),
        (("dashboard", "--host", "0.0.0.0", "--port", "1"), 2),
    ):
        result = cli(*args, QUEUECTL_LOG_FORMAT="json", QUEUECTL_DASHBOARD_TOKEN="")
        assert result.returncode == code, result.stderr
        (line,) = result.stderr.splitlines()
        event = json.loads(line)
        assert event["event"] == "command_failed" and event["level"] == "error", event
        assert event["error"] and event["timestamp"].endswith("Z")
    plain = cli("show", "nosuch", QUEUECTL_LOG_FORMAT="console")
    assert plain.stderr.startswith("error: no job with id")
