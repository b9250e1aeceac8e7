"""Debian's pgbouncer in transaction pooling mode on a free local port, in front of a Postgres
URL, for the tests and the fleet benchmark; and the CLI as a process behind it sees it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from tests.conftest import Cli
from tests.e2e.test_orchestrator_cli import free_port
from tests.e2e.waiting import wait_for


class PooledCli(Cli):
    """The CLI with QUEUECTL_DATABASE_POOLER=pgbouncer (and any other setting) in its
    environment, for every call."""

    def __init__(self, url: str, cwd: Path, **settings: str) -> None:
        super().__init__(url, cwd)
        self.settings = {"QUEUECTL_DATABASE_POOLER": "pgbouncer", **settings}

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.settings, **extra})


def binary() -> str | None:
    """The pgbouncer executable, or None when it is not installed."""
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


@dataclass
class Bouncer:
    url: str  # the database, through PgBouncer
    direct: str  # the same database, straight to Postgres
    log: Path


def _config(direct: str, port: int, workdir: Path, *, pool_size: int, max_clients: int) -> str:
    parts = urlsplit(direct)
    server = f"host={parts.hostname or '127.0.0.1'} port={parts.port or 5432}"
    if parts.password:
        server += f" password={unquote(parts.password)}"
    return "\n".join(
        [
            "[databases]",
            f"* = {server}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {workdir / 'users.txt'}",
            "pool_mode = transaction",
            f"default_pool_size = {pool_size}",
            f"max_client_conn = {max_clients}",
            f"logfile = {workdir / 'pgbouncer.log'}",
            f"pidfile = {workdir / 'pgbouncer.pid'}",
            "",
        ]
    )


@contextmanager
def running(direct: str, *, pool_size: int = 20, max_clients: int = 500) -> Iterator[Bouncer]:
    """PgBouncer in front of `direct` until the block ends. The caller checks `binary()`."""
    exe = binary()
    assert exe is not None, "pgbouncer is not installed"
    # a directory the unprivileged pgbouncer can read and write (pytest's tmp_path is 0700)
    workdir = Path(tempfile.mkdtemp(prefix="queuectl-pgbouncer-"))
    port = free_port()
    parts = urlsplit(direct)
    user = unquote(parts.username or "postgres")
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    config = _config(direct, port, workdir, pool_size=pool_size, max_clients=max_clients)
    (workdir / "pgbouncer.ini").write_text(config)
    argv = [exe, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root: -u drops to the server's user
        workdir.chmod(0o755)
        for path in [workdir, *workdir.iterdir()]:
            shutil.chown(path, "postgres")
        argv[1:1] = ["-u", "postgres"]
    out = workdir / "stderr.txt"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
    url = parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}").geturl()

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited {proc.returncode}: {out.read_text()}")
        try:
            psycopg.connect(url, prepare_threshold=None, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    try:
        wait_for(ready, timeout=10, every=0.1)
        yield Bouncer(url=url, direct=direct, log=workdir / "pgbouncer.log")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)
