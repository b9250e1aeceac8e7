"""Shared fixtures: a clean environment, real Postgres databases, real SQLite files, run_cli."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl.backends import open_backend
from queuectl.backends.base import Backend

# one template per pytest session: two sessions on one server (a developer's and a helper's)
# must not drop each other's template
TEMPLATE_DB = f"queuectl_test_tpl_{os.getpid()}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No QUEUECTL_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("QUEUECTL_") and name != "QUEUECTL_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """QUEUECTL_TEST_DATABASE_URL, else a throwaway container, else skip (fail under CI)."""
    if url := os.environ.get("QUEUECTL_TEST_DATABASE_URL"):
        yield url
        return
    try:
        from testcontainers.community.postgres import PostgresContainer

        pg = PostgresContainer("postgres:16-alpine", driver=None).start()
    except Exception as exc:  # no Docker daemon, or testcontainers not installed
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Postgres: set QUEUECTL_TEST_DATABASE_URL or start Docker ({exc})")
    try:
        yield pg.get_connection_url()
    finally:
        pg.stop()


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql.encode())


@pytest.fixture(scope="session")
def pg_template(postgres_url: str) -> Iterator[str]:
    """A migrated template database; each test clones it (fast, and fully isolated)."""
    _admin(
        postgres_url,
        f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)",
        f"CREATE DATABASE {TEMPLATE_DB}",
    )
    url = _with_db(postgres_url, TEMPLATE_DB)
    backend = open_backend(url)
    try:
        backend.migrate()
    finally:
        backend.close()
    yield url
    _admin(postgres_url, f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")


@pytest.fixture
def pg_url(postgres_url: str, pg_template: str) -> Iterator[str]:
    name = f"queuectl_t_{uuid.uuid4().hex[:12]}"
    _admin(postgres_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    try:
        yield _with_db(postgres_url, name)
    finally:
        _admin(postgres_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database of each kind, as a URL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path}/queue.db"


@pytest.fixture
def backend(db_url: str) -> Iterator[Backend]:
    with contextlib.closing(open_backend(db_url)) as b:
        b.migrate()
        yield b


class Cli:
    """Runs `python -m queuectl` against one database, the way a user would."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.url = url
        self.cwd = cwd
        self._logs: dict[int, Path] = {}

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "QUEUECTL_DATABASE_URL": self.url, **extra}

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "queuectl", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            cwd=self.cwd,
        )

    def json(self, *args: str, **kw: Any) -> Any:
        result = self(*args, **kw)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def enqueue(self, job: dict[str, Any], *flags: str) -> dict[str, Any]:
        created: dict[str, Any] = self.json("enqueue", json.dumps(job), *flags)
        return created

    def popen(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """A long-running command (a worker); its output goes to a file, since an unread
        pipe would block it once full. `log(proc)` reads that file."""
        path = self.cwd / f"proc-{uuid.uuid4().hex[:8]}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "queuectl", *args],
                env=self.env(**env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        self._logs[proc.pid] = path
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self._logs[proc.pid].read_text(errors="replace")


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path)  # Postgres databases come migrated (cloned from the template)
