"""Schema v6 (flow control) on a database a v5 queuectl filled: jobs, runs and constraints
carried over, the `blocked` state accepted, on both backends."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from queuectl import Client
from queuectl.backends.postgres_connector import MIGRATIONS as PG_MIGRATIONS
from queuectl.backends.sqlite import _statements
from queuectl.backends.sqlite_connector import MIGRATIONS as SQLITE_MIGRATIONS
from tests.conftest import _admin, _with_db

V5 = [f"v{n}" for n in range(1, 6)]


def check_upgraded(url: str) -> None:
    with Client(url) as q:
        assert q.migrate() == len(SQLITE_MIGRATIONS) == len(PG_MIGRATIONS)
        old = q.get("old")
        assert (old.state, old.command, old.unique_key) == ("completed", "echo old", None)
        assert q.get("waiting").state == "pending"
        blocked = q.enqueue("true", after=["waiting"])
        assert blocked.state == "blocked"
        q.cancel("waiting")
        assert q.get(blocked.id).last_error == "dependency waiting cancelled"


def test_a_v5_sqlite_file_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for name in V5:
        for statement in _statements(SQLITE_MIGRATIONS[name]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    conn.execute(
        "INSERT INTO queuectl_jobs (id, command, state, max_retries, run_at, created_at, "
        "updated_at, finished_at) VALUES ('old', 'echo old', 'completed', 3, 1, 1, 1, 2), "
        "('waiting', 'true', 'pending', 3, 1, 1, 1, NULL)"
    )
    conn.close()
    check_upgraded(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with pytest.raises(sqlite3.IntegrityError):  # the widened CHECK still checks
        conn.execute("UPDATE queuectl_jobs SET state = 'bogus' WHERE id = 'old'")
    conn.close()


@pytest.fixture
def v5_pg(postgres_url: str) -> Iterator[str]:
    name = f"queuectl_v5_{uuid.uuid4().hex[:10]}"
    _admin(postgres_url, f"CREATE DATABASE {name}")
    url = _with_db(postgres_url, name)
    try:
        yield url
    finally:
        _admin(postgres_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.integration
def test_a_v5_postgres_database_upgrades(v5_pg: str) -> None:
    with psycopg.connect(v5_pg, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE queuectl_schema (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for n, name in enumerate(V5, start=1):
            conn.execute(PG_MIGRATIONS[name].encode())
            conn.execute("INSERT INTO queuectl_schema (version) VALUES (%s)", (n,))
        conn.execute(
            "INSERT INTO queuectl_jobs (id, command, state, max_retries, finished_at) VALUES "
            "('old', 'echo old', 'completed', 3, now()), ('waiting', 'true', 'pending', 3, NULL)"
        )
    check_upgraded(v5_pg)
    with (
        psycopg.connect(v5_pg, autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        conn.execute("UPDATE queuectl_jobs SET state = 'bogus' WHERE id = 'old'")
