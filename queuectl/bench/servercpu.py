"""Database cost of a drain: the PostgreSQL server's CPU time, read from /proc.

A stock server has no per-statement accounting (pg_stat_statements needs
`shared_preload_libraries`, so a restart), but when it runs on this host its processes are in
/proc: the postmaster and its children (backends, autovacuum, WAL writer, checkpointer...).
`utime + stime` of each live one plus the postmaster's `cutime + cstime` (what the backends
that exited and were reaped used) is the server's CPU so far; the difference of two snapshots
is what it spent in between, on every database of the cluster: the *whole-server* figure.

A `Meter` also keeps a figure for one drain's own databases, valid on a shared server (a test
suite on another database): it samples the postmaster's children every 50 ms and adds up the
CPU of the backends of those databases (their ps display names the database), and of the
shared background processes (WAL writer, checkpointer, background writer, launchers) and the
postmaster itself. A backend that exits between two samples loses at most its last 50 ms.

The server is "on this host" when the URL names 127.0.0.1, ::1, localhost or a unix socket,
and the parent of our backend (`pg_backend_pid()`) is a process whose start time matches
`pg_postmaster_start_time()` (a server in a container publishes other PIDs).

When pg_stat_statements is loaded and its view readable, `statement_ms` adds its total
execution + planning time over the cluster (wall time in the server's executor, not CPU).

Standard library only at import (psycopg inside the functions): peers.py, which must not
import queuectl, loads this file by path.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PROC = Path("/proc")
LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1", "[::1]"})
START_TOLERANCE_S = 2.0  # /proc's start time (clock ticks) against pg_postmaster_start_time()
SAMPLE_S = 0.05  # a Meter's sampling interval
BACKGROUND = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
    "stats collector",
)


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after `comm` (which may hold spaces): [0] is state (field 3)."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its own threads), in seconds."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / _ticks()  # fields 14, 15


def reaped_seconds(pid: int) -> float:
    """cutime + cstime: what the children it has waited for used, in seconds."""
    f = _stat_fields(pid)
    return (int(f[13]) + int(f[14])) / _ticks()  # fields 16, 17


def start_time(pid: int) -> float:
    """Unix time the process started (field 22, clock ticks after boot)."""
    boot = next(
        float(line.split()[1])
        for line in (PROC / "stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return boot + int(_stat_fields(pid)[19]) / _ticks()


def parent(pid: int) -> int:
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise ValueError(f"no PPid in /proc/{pid}/status")


def database_of(url: str) -> str:
    """The database a postgresql:// URL names ("" when it names none: the user's default)."""
    return unquote(urlsplit(url).path.lstrip("/"))


def children(pid: int) -> list[int]:
    """The live children of `pid` (/proc/PID/task/PID/children, else a scan of /proc)."""
    try:
        return [
            int(c) for c in (PROC / str(pid) / "task" / str(pid) / "children").read_text().split()
        ]
    except OSError:
        found = []
        for other in _pids():
            try:
                if parent(other) == pid:
                    found.append(other)
            except (OSError, ValueError):
                continue
        return found


def display(pid: int) -> str:
    """A postgres process's ps display ("postgres: 15/main: user db host(port) idle")."""
    return (
        (PROC / str(pid) / "cmdline")
        .read_bytes()
        .replace(b"\0", b" ")
        .decode(errors="replace")
        .strip()
    )


def _pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root`, its live descendants and the children they have reaped."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        try:
            children.setdefault(parent(pid), []).append(pid)
        except (OSError, ValueError):
            continue  # exited while we looked
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += cpu_seconds(pid) + reaped_seconds(pid)
        except (OSError, ValueError, IndexError):
            if pid == root:
                raise
            continue
        todo += children.get(pid, [])
    return total


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have been waited for (resource module)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def is_local(url: str) -> bool:
    """Whether `url` names a server on this host: a loopback address or a unix socket."""
    parts = urlsplit(url)
    host = unquote(parts.hostname or "")
    query = parse_qs(parts.query).get("host", [])
    if query:  # ?host=/var/run/postgresql, psycopg's (libpq's) way to name a socket
        host = query[0]
    return host.startswith("/") or host.lower() in LOCAL_HOSTS


@dataclass(frozen=True)
class Sample:
    cpu_s: float | None  # the server's CPU so far; None: not measurable here
    statement_ms: float | None  # pg_stat_statements' total time so far; None: not loaded


@dataclass(frozen=True)
class Cost:
    """What a drain cost the server, in CPU seconds (None: not readable here)."""

    server_s: float | None  # every process of the server, exited ones included
    database_s: float | None  # the drain's databases' backends + background processes
    statement_ms: float | None  # pg_stat_statements, when loaded


@dataclass(frozen=True)
class Probe:
    """Where the server's CPU can be read; `why` says why not when `postmaster` is None."""

    url: str
    postmaster: int | None
    why: str
    statements: bool  # pg_stat_statements loaded and readable
    database: str = ""  # current_database() of `url`
    prefix: str = "postgres: "  # of its processes' ps display: "postgres: <cluster_name>: "

    def meter(self, *databases: str) -> Meter:
        """A Meter of the server's CPU spent on `databases` (default: the probe's own)."""
        return Meter(self, frozenset(databases or (self.database,)))

    def sample(self) -> Sample:
        cpu = tree_cpu_seconds(self.postmaster) if self.postmaster is not None else None
        return Sample(cpu, self._statement_ms() if self.statements else None)

    def _statement_ms(self) -> float | None:
        import psycopg

        sql = "SELECT coalesce(sum(total_exec_time + total_plan_time), 0) FROM pg_stat_statements"
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute(sql).fetchone()
        except psycopg.Error:
            return None
        return float(row[0]) if row else None


@dataclass
class Meter:
    """`with probe.meter(db) as m:` around a drain, then `m.cost`. Samples the postmaster's
    children from a thread, keyed by (PID, start time): a backend seen first after the start
    counts from zero (its start-up included), one gone before the end by its last sample."""

    probe: Probe
    databases: frozenset[str]
    cost: Cost = field(default_factory=lambda: Cost(None, None, None))
    _first: Sample | None = None
    _base: dict[tuple[int, int], float] = field(default_factory=dict)
    _last: dict[tuple[int, int], float] = field(default_factory=dict)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Meter:
        self._first = self.probe.sample()
        if self.probe.postmaster is not None:
            self._base = self._tick(self.probe.postmaster)
            self._thread = threading.Thread(target=self._run, name="servercpu", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> Cost:
        """Stop sampling (once started); `cost` is then the drain's."""
        if self._first is None or self._done.is_set():
            return self.cost
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        last = self.probe.sample()
        first = self._first
        assert first is not None
        mine = None
        if self.probe.postmaster is not None:
            self._last.update(self._tick(self.probe.postmaster))
            mine = sum(cpu - self._base.get(key, 0.0) for key, cpu in self._last.items())
        self.cost = Cost(
            _minus(last.cpu_s, first.cpu_s), mine, _minus(last.statement_ms, first.statement_ms)
        )
        return self.cost

    def _run(self) -> None:
        assert self.probe.postmaster is not None
        while not self._done.wait(SAMPLE_S):
            self._last.update(self._tick(self.probe.postmaster))

    def _tick(self, postmaster: int) -> dict[tuple[int, int], float]:
        """CPU so far of the postmaster, the background processes and the backends of our
        databases (autovacuum and parallel workers included), by (PID, start time)."""
        seen: dict[tuple[int, int], float] = {}
        mine: set[int] = set()
        parallel: list[tuple[tuple[int, int], float, int]] = []
        for pid in [postmaster, *children(postmaster)]:
            try:
                f = _stat_fields(pid)
                name = display(pid)
            except (OSError, ValueError):
                continue  # exited while we looked
            key, cpu = (pid, int(f[19])), (int(f[11]) + int(f[12])) / _ticks()
            rest = name.removeprefix(self.probe.prefix).strip()
            words = rest.split()
            if pid == postmaster or rest.startswith(BACKGROUND):
                seen[key] = cpu
            elif rest.startswith("autovacuum worker"):
                if words[-1] in self.databases:
                    seen[key] = cpu
            elif rest.startswith("parallel worker for PID"):
                parallel.append((key, cpu, int(words[-1]) if words[-1].isdigit() else -1))
            elif len(words) > 1 and words[1] in self.databases:  # user db host(port) ...
                seen[key] = cpu
                mine.add(pid)
        for key, cpu, leader in parallel:
            if leader in mine:
                seen[key] = cpu
        return seen


def _minus(last: float | None, first: float | None) -> float | None:
    return None if last is None or first is None else last - first


def probe(url: str) -> Probe:
    """Find the postmaster of the server at `url` in this host's /proc, if it is there."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_backend_pid(), extract(epoch FROM pg_postmaster_start_time()),"
            " current_setting('shared_preload_libraries'), current_database(),"
            " current_setting('cluster_name')"
        ).fetchone()
        assert row is not None
        backend, started, preload = int(row[0]), float(row[1]), str(row[2])
        database, cluster = str(row[3]), str(row[4])
        statements = "pg_stat_statements" in preload
        if statements:
            try:
                conn.execute("SELECT 1 FROM pg_stat_statements LIMIT 1")
            except psycopg.Error:
                statements = False  # loaded, but CREATE EXTENSION not run in this database
        postmaster, why = _postmaster(url, backend, started, _client_port(conn))
    prefix = f"postgres: {cluster}: " if cluster else "postgres: "
    return Probe(url, postmaster, why, statements, database, prefix)


def _client_port(conn: Any) -> int | None:
    """The local TCP port of a psycopg connection (None over a unix socket)."""
    import socket

    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            name = sock.getsockname()
    except OSError:
        return None
    return int(name[1]) if isinstance(name, tuple) else None


def _is_our_backend(backend: int, client_port: int | None) -> bool:
    """Whether this host's process `backend` is the server process of our own connection:
    its title (`postgres: USER DB 127.0.0.1(PORT) idle`) names our client port. Immune to a
    stepped wall clock, which the start-time check is not."""
    if client_port is None:
        return False
    try:
        title = (PROC / str(backend) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return title.startswith(b"postgres") and f"({client_port})".encode() in title


def _postmaster(
    url: str, backend: int, started: float, client_port: int | None = None
) -> tuple[int | None, str]:
    if not is_local(url):
        return None, "server not on this host"
    if not (PROC / "self" / "stat").exists():
        return None, "no /proc on this host"
    try:
        pid = parent(backend)
        # the same server if our connection's own backend is this host's process of that
        # pid, or else if the parent started when the server says it did (a unix socket)
        same = _is_our_backend(backend, client_port) or (
            abs(start_time(pid) - started) <= START_TOLERANCE_S
        )
        if not same:
            return None, "server not on this host (its PIDs are not ours: a container?)"
        tree_cpu_seconds(pid)  # readable: same user or root
    except (OSError, ValueError, IndexError):
        return None, "server not on this host (its processes are not readable here)"
    return pid, ""
