"""A private, throwaway PostgreSQL cluster (Debian's postgresql-common) that a test may
restart, stop and start without disturbing the shared server other tests use."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters", "runuser")


def missing_tools() -> str | None:
    """Why a private cluster cannot be made here, or None when it can."""
    if absent := [tool for tool in TOOLS if shutil.which(tool) is None]:
        return f"{', '.join(absent)} not found (Debian's postgresql-common, util-linux)"
    if os.geteuid() != 0:
        return "creating a PostgreSQL cluster needs root"
    if not _versions():
        return "no PostgreSQL server installed under /usr/lib/postgresql"
    return None


def _versions() -> list[str]:
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if (p / "bin" / "pg_ctl").exists()]
    return sorted(found, key=lambda v: int(v) if v.isdigit() else 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")


class PgCluster:
    """One cluster, addressed by version and name."""

    def __init__(self, version: str, name: str, port: int) -> None:
        self.version = version
        self.name = name
        self.port = port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl_argv(self, action: str, *args: str) -> list[str]:
        # --skip-systemctl-redirect: on a systemd host pg_ctlcluster would hand the cluster
        # to a unit; here the test owns it directly
        return [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            *args,
            self.version,
            self.name,
            action,
        ]

    def ctl(self, action: str, *args: str) -> None:
        """`pg_ctlcluster VERSION NAME action`, waiting until it is done."""
        _run(*self._ctl_argv(action, *args))

    def stop(self) -> None:
        """Fast mode: every session is terminated, open transactions roll back."""
        self.ctl("stop", "-m", "fast")

    @contextmanager
    def in_background(self, action: str, *args: str) -> Iterator[None]:
        """Run `pg_ctlcluster … action` while the body runs, then require its success. The
        server is up (or down) well before the wrapper returns: after a start it probes the
        server for 2 s more. The fleet is to be watched meanwhile, not the wrapper."""
        with subprocess.Popen(
            self._ctl_argv(action, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            yield
            out, _ = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctlcluster {action} exited {proc.returncode}: {out.strip()}")

    def sql(self, *statements: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())

    def first_start(self) -> None:
        """pg_ctl itself, which returns once the server accepts connections (pg_ctlcluster
        start probes it for 2 s more, a cost every run of the suite would pay)."""
        listed = subprocess.run(
            ["pg_lsclusters", "--no-header", self.version, self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        owner, data, log = listed[4], listed[5], listed[6]
        # a Debian cluster keeps its configuration under /etc, not in its data directory
        config = f"/etc/postgresql/{self.version}/{self.name}/postgresql.conf"
        pg_ctl = f"/usr/lib/postgresql/{self.version}/bin/pg_ctl"
        _run(
            "runuser",
            "-u",
            owner,
            "--",
            pg_ctl,
            "start",
            "-w",
            "-s",
            "-D",
            data,
            "-l",
            log,
            "-o",
            f"-c config_file={config}",
        )


@contextmanager
def private_cluster(settings: dict[str, str] | None = None) -> Iterator[PgCluster]:
    """Create and start a cluster on a free port, trust auth on localhost; always drop it.
    `settings`: more postgresql.conf parameters (max_connections, preloaded libraries)."""
    version = _versions()[-1]
    cluster = PgCluster(version, f"qfaults_{uuid.uuid4().hex[:8]}", _free_port())
    _run(
        "pg_createcluster",
        version,
        cluster.name,
        "--port",
        str(cluster.port),
        # a scratch cluster: durability is not what these tests are about
        "-o",
        "fsync=off",
        "-o",
        "full_page_writes=off",
        *[arg for key, value in (settings or {}).items() for arg in ("-o", f"{key}={value}")],
        "--",
        "--auth=trust",
        "--nosync",
    )
    try:
        cluster.first_start()
        yield cluster
    finally:
        # immediate: nothing in it is worth a shutdown checkpoint
        subprocess.run(
            cluster._ctl_argv("stop", "-m", "immediate"), capture_output=True, timeout=60
        )
        subprocess.run(["pg_dropcluster", version, cluster.name], capture_output=True, timeout=60)
