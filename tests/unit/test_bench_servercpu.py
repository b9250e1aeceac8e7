"""The benchmark's CPU accounting from /proc, on this test's own process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from queuectl.bench import servercpu

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

# burns 0.2 s of CPU (its own clock), says so, then waits for its stdin to close
BURN = (
    "import sys, time\n"
    "end = time.process_time() + 0.2\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


def _others(root: int) -> float:
    """The tree's CPU minus the root's own: what its children used, live or reaped."""
    return servercpu.tree_cpu_seconds(root) - servercpu.cpu_seconds(root)


def _burner(*args: str) -> subprocess.Popen[str]:
    """A child (by default python burning 0.2 s) that has burnt its CPU once this returns."""
    proc = subprocess.Popen(
        list(args) or [sys.executable, "-c", BURN],
        env={**os.environ, "BURN": BURN},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "burnt\n"
    return proc


def test_a_live_child_and_then_its_reaped_time_count_in_the_tree() -> None:
    me = os.getpid()
    before = _others(me)
    with _burner() as proc:  # closes its pipes and waits for it on the way out
        live = _others(me) - before  # the child still runs: counted from its own stat
        assert 0.1 <= live < 5
        assert proc.stdin is not None
        proc.stdin.close()
    reaped = _others(me) - before  # waited for: now in our cutime + cstime
    assert 0.1 <= reaped < 5
    assert servercpu.reaped_seconds(me) >= 0.1


def test_a_grandchild_counts_while_it_runs() -> None:
    """The postmaster's backends are its children; the walk goes down any depth anyway."""
    # `; true`: the shell forks python rather than exec-ing it
    with _burner("/bin/sh", "-c", f'"{sys.executable}" -c "$BURN"; true') as shell:
        assert servercpu.tree_cpu_seconds(shell.pid) >= 0.1
        assert servercpu.cpu_seconds(shell.pid) < 0.1  # the shell itself only waits
        assert shell.stdin is not None
        shell.stdin.close()


def test_process_fields_of_this_process() -> None:
    me = os.getpid()
    assert servercpu.parent(me) == os.getppid()
    assert servercpu.cpu_seconds(me) > 0
    assert 0 <= time.time() - servercpu.start_time(me) < 24 * 3600 * 365


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("postgresql://postgres@127.0.0.1:5432/db", True),
        ("postgresql://u@localhost/db", True),
        ("postgresql://u@[::1]:5432/db", True),
        ("postgresql:///db", True),  # no host: libpq's default unix socket
        ("postgresql:///db?host=/var/run/postgresql", True),
        ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db", True),
        ("postgresql://u@db.example.com:5432/db", False),
        ("postgresql://u@10.0.0.5/db", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    assert servercpu.is_local(url) is local


def test_a_server_elsewhere_or_in_another_pid_namespace_is_not_read() -> None:
    """n/a, saying why: a remote host, or a "backend" whose parent did not start when the
    server says its postmaster did (a container's PIDs are not this host's)."""
    far = servercpu._postmaster("postgresql://u@db.example.com/db", os.getpid(), time.time())
    assert far == (None, "server not on this host")
    local = "postgresql://u@127.0.0.1/db"
    pid, why = servercpu._postmaster(local, os.getpid(), time.time() + 3600)
    assert pid is None and "container" in why
    parent_started = servercpu.start_time(os.getppid())  # the real thing: found and readable
    assert servercpu._postmaster(local, os.getpid(), parent_started) == (os.getppid(), "")


@pytest.mark.parametrize(("database", "counted"), [("-c", True), ("elsewhere", False)])
def test_a_meter_counts_the_backends_of_its_database_even_once_they_exit(
    database: str, counted: bool
) -> None:
    """This process plays the postmaster; the burner's display `python -c ...` reads as
    user `python`, database `-c`: a backend of "-c", and of no other database."""
    me = servercpu.Probe("", os.getpid(), "", statements=False, database=database, prefix="")
    with me.meter() as meter, _burner() as proc:
        assert proc.stdin is not None
        proc.stdin.close()
    assert meter.cost.server_s is not None and meter.cost.server_s >= 0.1  # the whole tree
    assert meter.cost.database_s is not None
    assert (meter.cost.database_s >= 0.1) is counted, meter.cost


@pytest.mark.integration
def test_the_local_server_is_found_by_our_own_backend_even_when_the_clock_was_stepped(
    pg_url: str,
) -> None:
    """Our connection's backend names our client port in its title: that finds the server's
    postmaster even when the wall clock moved since it started (seen on this VM: 34 s), which
    the start-time check alone took for a container. A wrong start time with our own backend
    is still the local server; a backend that is not ours (this process) is not."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        backend, port = int(row[0]), servercpu._client_port(conn)
        assert port is not None
        assert servercpu._is_our_backend(backend, port)
        stepped = time.time() + 3600  # as if the clock had jumped an hour since the start
        assert servercpu._postmaster(pg_url, backend, stepped, port) == (
            servercpu.parent(backend),
            "",
        )
    assert not servercpu._is_our_backend(os.getpid(), port)
    assert servercpu.probe(pg_url).postmaster is not None
