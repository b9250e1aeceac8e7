"""Database faults mid-run: Postgres restarted or its sessions terminated, a SQLite file
write-locked by another process; workers and orchestrators log, back off, reconnect and
carry on, losing nothing and running nothing twice beyond the at-least-once window. A
read-only SQLite file or one in a missing directory gives one clear line and exit 69."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from queuectl.backends import open_backend
from tests.conftest import Cli
from tests.e2e.pgcluster import PgCluster, missing_tools, private_cluster
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e

# What each kind of command does on attempt N (QUEUECTL_ATTEMPT), and its retry budget:
#   ok     exit 0                              (1 retry: a lost claim must not kill it)
#   fail   exit 3 every time                   (no retry: dead after one attempt)
#   flaky  exit 1 on attempt 1, exit 0 after   (2 retries: completed on attempt 2)
KINDS = {"ok": 1, "fail": 0, "flaky": 2}
DB_ERROR_EVENTS = {
    # worker
    "claim_failed",
    "heartbeat_failed",
    "finish_failed",
    "listen_failed",
    "recovery_failed",
    "policy_read_failed",
    "release_failed",
    # orchestrator
    "sweep_failed",
    "leader_election_failed",
}
LEADER_TTL_S = 3
CRASH_EVENTS = {"heartbeat_crashed", "completer_crashed", "job_crashed", "recovery_crashed"}


def dictated(kind: str, attempt: int) -> str:
    """The outcome the command itself produces on this attempt."""
    if kind == "ok" or (kind == "flaky" and attempt >= 2):
        return "succeeded"
    return "failed"


def replay(kind: str, lost: set[int]) -> tuple[str, int]:
    """(final state, attempts) the retry rules give when exactly the attempts in `lost`
    ended as `worker lost` and every other one as its command dictates."""
    attempt = 0
    while attempt < KINDS[kind] + 1:
        attempt += 1
        if attempt not in lost and dictated(kind, attempt) == "succeeded":
            return "completed", attempt
    return "dead", attempt


MIX = ("ok",) * 7 + ("fail", "flaky", "flaky")


def plan_jobs(n: int, *, kinds: Sequence[str] = MIX) -> dict[str, str]:
    """Job id -> kind, in a fixed rotation."""
    return {f"j{i:04d}": kinds[i % len(kinds)] for i in range(n)}


def enqueue_plan(
    cli: Cli,
    plan: dict[str, str],
    marker: Path,
    *,
    sleep_s: float,
    max_retries: int | None = None,
    **fields: Any,
) -> None:
    # every execution appends "<id> <attempt>" to one file: O_APPEND writes of one short
    # line from `echo` (a shell builtin) never interleave
    note = f'echo "$QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT" >> {marker}; sleep {sleep_s}'
    tails = {"ok": "true", "fail": "exit 3", "flaky": '[ "$QUEUECTL_ATTEMPT" -ge 2 ]'}
    lines = "".join(
        json.dumps(
            {
                "id": job_id,
                "command": f"{note}; {tails[kind]}",
                "max_retries": KINDS[kind] if max_retries is None else max_retries,
                **fields,
            }
        )
        + "\n"
        for job_id, kind in plan.items()
    )
    result = cli("enqueue", "-", input=lines)
    assert result.returncode == 0, result.stderr


def executions(marker: Path) -> list[tuple[str, int]]:
    """(job id, attempt) of every execution so far, in the order they started."""
    if not marker.exists():
        return []
    found = []
    for line in marker.read_text().split("\n")[:-1]:  # complete lines only
        job_id, attempt = line.split()
        found.append((job_id, int(attempt)))
    return found


@dataclass
class Audit:
    jobs: int = 0
    executions: int = 0
    lost_runs: int = 0  # attempts recorded as `worker lost`: the at-least-once window
    lost_unexecuted: int = 0  # of those, claims whose reply never reached a worker
    duplicates: int = 0  # jobs whose command ran to success more than once
    states: Counter[str] = field(default_factory=Counter)


def audit(url: str, plan: dict[str, str], marker: Path) -> Audit:
    """Every job ended as its command dictates, none is missing or stuck, each attempt ran
    at most once, each success is recorded once; only `worker lost` attempts may differ."""
    ran = Counter(executions(marker))
    assert max(ran.values()) == 1, [k for k, v in ran.items() if v > 1]  # no attempt twice
    backend = open_backend(url)
    try:
        jobs = {j.id: j for j in backend.list_jobs(limit=len(plan) + 10)}
        assert set(jobs) == set(plan)  # none lost, none invented
        result = Audit(jobs=len(jobs), executions=sum(ran.values()))
        for job_id, kind in plan.items():
            job, runs = jobs[job_id], backend.runs(job_id)
            result.states[str(job.state)] += 1
            assert [r.attempt for r in runs] == list(range(1, len(runs) + 1)), job_id
            lost = {r.attempt for r in runs if r.outcome == "lost"}
            for run in runs:
                executed = ran[(job_id, run.attempt)]
                if run.attempt in lost:
                    assert run.error == "worker lost", (job_id, run)
                    result.lost_unexecuted += 1 - executed
                else:
                    # recorded as its command dictates, and it really ran, once
                    assert run.outcome == dictated(kind, run.attempt), (job_id, run)
                    assert executed == 1, (job_id, run.attempt)
            assert {a for j, a in ran if j == job_id} <= {r.attempt for r in runs}, job_id
            assert (str(job.state), job.attempts) == replay(kind, lost), (job_id, runs)
            successes = [r for r in runs if r.outcome == "succeeded"]
            assert len(successes) == (job.state == "completed"), (job_id, runs)
            ran_ok = [a for j, a in ran if j == job_id and dictated(kind, a) == "succeeded"]
            result.duplicates += max(0, len(ran_ok) - 1)
            result.lost_runs += len(lost)
        assert result.states["processing"] == 0 and result.states["pending"] == 0
        assert result.duplicates <= result.lost_runs - result.lost_unexecuted
        return result
    finally:
        backend.close()


def events(log: str) -> list[dict[str, Any]]:
    """A process's log: one JSON object per line (so one line per event), no tracebacks."""
    assert "Traceback" not in log, log[-3000:]
    parsed = [json.loads(line) for line in log.splitlines() if line.strip()]
    crashes = [e for e in parsed if e["event"] in CRASH_EVENTS]
    assert not crashes, crashes
    return parsed


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def stop_all(procs: Sequence[subprocess.Popen[bytes]], cli: Cli) -> None:
    """SIGTERM: every process drains and exits 0."""
    for proc in procs:
        assert proc.poll() is None, cli.log(proc)[-3000:]  # alive through every fault
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=30) == 0, cli.log(proc)[-3000:]


@contextlib.contextmanager
def fleet(cli: Cli, *, workers: int, orchestrators: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [cli.popen("worker", "start", "--count", "4") for _ in range(workers)]
    # a short leader lease: renewed every second, so a renewal after a fault shows soon
    procs += [
        cli.popen("orchestrator", "run", QUEUECTL_LEADER_TTL=f"{LEADER_TTL_S}s")
        for _ in range(orchestrators)
    ]
    try:
        yield procs
    finally:
        for proc in procs:  # only after a failure: stop_all already reaped them
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def started(cli: Cli, procs: Sequence[subprocess.Popen[bytes]]) -> bool:
    return all(
        "worker_started" in (log := cli.log(p)) or "orchestrator_started" in log for p in procs
    )


def finished(url: str) -> int:
    """Jobs in a final state; -1 while the server is not (yet) accepting connections."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM queuectl_jobs WHERE state IN ('completed', 'dead')"
            ).fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def check_logs(
    cli: Cli, procs: Sequence[subprocess.Popen[bytes]], *, workers: int, resumed_after: float
) -> dict[int, list[dict[str, Any]]]:
    """Every worker logged the fault (its LISTEN session always dies with the others) and ran
    jobs again after it: it reconnected rather than died or hung. Every failure anyone logged
    is one event on one line. (A pooled connection the server hung up on is replaced before
    use, so a process whose sessions were all idle may have had nothing fail.)"""
    logs = {}
    for i, proc in enumerate(procs):
        parsed = events(cli.log(proc))
        errors = [e for e in parsed if e["event"] in DB_ERROR_EVENTS]
        assert all(e["error"] and "\n" not in e["error"] for e in errors), errors
        if i < workers:
            assert errors, f"worker {i} logged no database error"
            again = [e for e in parsed if e["event"] == "job_finished" and at(e) > resumed_after]
            assert again, f"worker {i} finished nothing after the fault"
        logs[proc.pid] = parsed
    return logs


# --- PostgreSQL -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A private cluster this module may restart: the shared server serves other tests."""
    if reason := missing_tools():
        if os.environ.get("CI"):
            pytest.fail(f"the restart test needs a private PostgreSQL cluster: {reason}")
        pytest.skip(reason)
    with private_cluster() as made:
        yield made


@pytest.mark.integration
@pytest.mark.slow
def test_postgres_restart_and_outage_mid_run(cluster: PgCluster, tmp_path: Path) -> None:
    database = f"q_{uuid.uuid4().hex[:8]}"
    cluster.sql(f"CREATE DATABASE {database}")
    url = cluster.url(database)
    cli = Cli(url, tmp_path)
    assert cli("db", "migrate").returncode == 0
    assert cli("config", "set", "backoff-base", "1").returncode == 0  # retries wait 1 s
    marker = tmp_path / "ran.txt"
    plan = plan_jobs(240)
    enqueue_plan(cli, plan, marker, sleep_s=0.1)
    with fleet(cli, workers=2, orchestrators=2) as procs:
        # a process still starting would rightly refuse to start (exit 69) during the fault
        wait_for(lambda: started(cli, procs) and len(executions(marker)) >= 40, timeout=30)
        # fast mode: every session is terminated, whatever it was doing; jobs keep running
        with cluster.in_background("restart", "-m", "fast"):
            wait_for(lambda: len(executions(marker)) >= 120, timeout=30, every=0.02)
        ran_before_outage = len(executions(marker))
        # a longer outage too: the fleet must back off quietly, then carry on
        cluster.stop()
        down_from = time.time()
        time.sleep(2)
        down_to = time.time()
        with cluster.in_background("start"):
            wait_for(lambda: finished(url) == len(plan), timeout=60)
            leader = wait_for(lambda: _fresh_leader(url, after=down_to), timeout=15)
        stop_all(procs, cli)
    result = audit(url, plan, marker)
    logs = check_logs(cli, procs, workers=2, resumed_after=down_to)
    outage = down_to - down_from
    rates = {
        pid: sum(down_from <= at(e) <= down_to for e in parsed) / outage
        for pid, parsed in logs.items()
    }
    # backing off, not spinning: a few lines a second at most while the server is gone (the
    # first failures of every thread come at once; a loop without backoff would log dozens)
    assert max(rates.values()) <= 5, rates
    assert any(str(p.pid) in leader for p in procs[2:]), leader
    assert ran_before_outage < len(executions(marker))  # work was left for after the outage
    print(
        f"outage {outage:.1f}s after {ran_before_outage} runs; log lines/s {rates};"
        f" errors logged {_errors(logs)}; {result}"
    )


def _fresh_leader(url: str, *, after: float) -> str | None:
    """The orchestrator holding the leader lease, once it renewed after `after`."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            # the orchestrators' lease; the table holds other named leases too (the fleet's
            # recovery-sweep turn, the worker-stop mark)
            "SELECT holder FROM queuectl_leader WHERE name = 'orchestrator' AND expires_at > now()"
            " AND expires_at - make_interval(secs => %s) > to_timestamp(%s)",
            (LEADER_TTL_S, after),
        ).fetchone()
    return None if row is None else str(row[0])


@pytest.mark.integration
@pytest.mark.slow
def test_postgres_sessions_terminated_repeatedly_mid_run(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    cli = Cli(pg_url, tmp_path)
    assert cli("config", "set", "backoff-base", "1").returncode == 0
    marker = tmp_path / "ran.txt"
    plan = plan_jobs(300)
    enqueue_plan(cli, plan, marker, sleep_s=0.05)
    database = pg_url.rsplit("/", 1)[1]
    terminated, rounds = 0, 0
    # this session is the one pg_terminate_backend spares (pg_backend_pid)
    with (
        psycopg.connect(pg_url, autocommit=True) as admin,
        fleet(cli, workers=2, orchestrators=2) as procs,
    ):
        # every process past its start first: one still starting rightly refuses to start
        # (exit 69) when its first connection is terminated (a CI run on a loaded machine
        # began the terminations while the second worker was still connecting)
        wait_for(lambda: started(cli, procs) and executions(marker), timeout=30, every=0.02)
        faults_from = time.time()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(*) FROM queuectl_jobs WHERE state IN ('completed', 'dead')"
            ).fetchone()
            if row is not None and row[0] == len(plan):
                break
            killed = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()
            terminated += int(killed[0]) if killed else 0
            rounds += 1
            time.sleep(0.5)
        else:
            pytest.fail(f"not all jobs finished: {cli('status').stdout}")
        # an orchestrator still leads: it renewed its lease since the terminations began
        leader = wait_for(lambda: _fresh_leader(pg_url, after=faults_from), timeout=15)
        stop_all(procs, cli)
    result = audit(pg_url, plan, marker)
    logs = check_logs(cli, procs, workers=2, resumed_after=faults_from)
    assert any(str(p.pid) in leader for p in procs[2:]), leader
    assert rounds >= 3 and terminated >= rounds * 4, (rounds, terminated)
    print(f"{rounds} rounds, {terminated} sessions terminated; {_errors(logs)}; {result}")


def _errors(logs: dict[int, list[dict[str, Any]]]) -> list[int]:
    """Database errors each process logged (for the report)."""
    return [sum(e["event"] in DB_ERROR_EVENTS for e in parsed) for parsed in logs.values()]


# --- SQLite ---------------------------------------------------------------------------------
HOLD_S = 5.0  # another process holds the write lock this long (the busy timeout is 30 s)
# a lease of 8 s: a job is fenced (killed where it runs) 6 s after its lease was last known
# renewed, so a claim that waited out the lock hands over leases that look 5 s old already
LEASE_TTL = "8s"
_HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")  # the file's one write lock, taken once the workers' write ends
conn.execute("CREATE TABLE lock_probe (x)")
print("locked", time.time(), flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", time.time(), flush=True)
"""


@pytest.mark.slow
def test_sqlite_write_locked_by_another_process_makes_workers_wait(tmp_path: Path) -> None:
    """Short jobs run when another process takes the write lock; long ones fall due while it
    is held. Everyone waits (the busy timeout is 30 s): the running jobs' results are
    written after the release, the claims made during the lock go through then, and no job
    fails, runs twice, or is killed by the fence for a lease it held all along."""
    path = tmp_path / "queue.db"
    cli = Cli(f"sqlite:///{path}", tmp_path)
    marker = tmp_path / "ran.txt"
    workers = [
        cli.popen("worker", "start", "--count", "4", QUEUECTL_LEASE_TTL=LEASE_TTL) for _ in range(2)
    ]
    try:
        wait_for(lambda: started(cli, workers), timeout=30)
        lock_at = time.time() + 1.5
        due = datetime.fromtimestamp(lock_at + 1.0, UTC).isoformat().replace("+00:00", "Z")
        short = plan_jobs(200, kinds=("ok",))
        long = {f"long{i}": "ok" for i in range(4)}
        # no retries: a job the lock made fail would end dead at once
        enqueue_plan(cli, short, marker, sleep_s=0.05, max_retries=0)
        enqueue_plan(cli, long, marker, sleep_s=2, max_retries=0, run_at=due, priority=10)
        time.sleep(max(0.0, lock_at - time.time()))
        with subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(path), str(HOLD_S)], stdout=subprocess.PIPE, text=True
        ) as holder:
            assert holder.stdout is not None
            word, locked_wall = holder.stdout.readline().split()
            assert word == "locked" and short.keys() & {j for j, _ in executions(marker)}
            during = cli.json("status", "--json")["jobs"]  # readers are not blocked (WAL)
            ran_early = len(executions(marker))
            time.sleep(HOLD_S - 1.5)
            ran_late = len(executions(marker))
            still = cli.json("status", "--json")["jobs"]
            word, released_wall = holder.stdout.readline().split()
            assert word == "released"
        assert holder.returncode == 0
        # nothing was written while the lock was held, and at most the jobs claimed before
        # it ran; the long jobs fell due only after it was taken
        assert still == during and ran_late - ran_early <= 8
        assert float(locked_wall) < lock_at + 1.0
        # then let the audit below say what went wrong, if anything did
        wait_for(lambda: _settled(cli) == 204, timeout=60)
        stop_all(workers, cli)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    backend = open_backend(cli.url)
    try:
        for job in backend.list_jobs(limit=1000):
            assert job.state == "completed" and job.attempts == 1, job
        for job_id in long:  # claimed by a claim that waited out the lock
            (run,) = backend.runs(job_id)
            assert run.started_at.timestamp() >= float(released_wall) - 0.05, run
    finally:
        backend.close()
    assert sorted(executions(marker)) == sorted((j, 1) for j in [*short, *long])  # once each
    for proc in workers:
        parsed = events(cli.log(proc))
        waited = {"job_fenced", "job_abandoned", "job_lease_lost", *DB_ERROR_EVENTS}
        assert not [e for e in parsed if e["event"] in waited]  # they waited, nothing failed


def test_sqlite_new_file_locked_by_another_process_makes_the_first_command_wait(
    tmp_path: Path,
) -> None:
    """A queue's first command switches the new file to WAL, which needs it to itself and,
    unlike a write, does not wait on its own: with another process holding the write lock
    (as when several workers start on a new file together and one is migrating) it failed
    at once with "database is locked". It waits for the release like any other write."""
    path = tmp_path / "queue.db"
    cli = Cli(f"sqlite:///{path}", tmp_path)
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path), "1.0"], stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().split()[0] == "locked"
        result = cli("status", "--json")
        waited_until = time.time()
        word, released_wall = holder.stdout.readline().split()
        assert word == "released"
    assert result.returncode == 0, result.stderr
    assert waited_until >= float(released_wall)
    assert cli.json("status", "--json")["jobs"]["pending"] == 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _settled(cli: Cli) -> int:
    jobs = cli.json("status", "--json")["jobs"]
    return int(jobs["completed"] + jobs["dead"])


def _unprivileged() -> list[str]:
    """A prefix that runs a command without the power to ignore file permissions: as root,
    setpriv drops every capability (uid 0 still owns the file, so its mode bits apply)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        if os.environ.get("CI"):
            pytest.fail("setpriv (util-linux) is needed to test a read-only database as root")
        pytest.skip("setpriv not found: cannot drop root's permission override")
    return ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--"]


def _run(prefix: list[str], url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "queuectl", "--db", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
    )


def _snapshot(url: str) -> tuple[object, ...]:
    backend = open_backend(url)
    try:
        jobs = backend.list_jobs(limit=100)
        return jobs, [backend.runs(j.id) for j in jobs], backend.get_settings()
    finally:
        backend.close()


def _one_error_line(
    result: subprocess.CompletedProcess[str], *, expect: str, after_start: bool = False
) -> None:
    """Exit 69, no traceback, and one `error:` line on stderr, alone; `after_start`: a worker
    that opened the file (it is readable) logged `process_starting` before its first write."""
    assert result.returncode == 69, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and expect in errors[0], result.stderr
    others = [json.loads(line)["event"] for line in lines if line not in errors]
    assert others == (["process_starting"] if after_start else []), result.stderr


@pytest.mark.parametrize("directory_writable", [True, False], ids=["file-ro", "file-and-dir-ro"])
def test_sqlite_read_only_database_gives_one_clear_line(
    tmp_path: Path, directory_writable: bool
) -> None:
    prefix = _unprivileged()
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "queue.db"
    url = f"sqlite:///{path}"
    cli = Cli(url, tmp_path)
    cli.enqueue({"id": "kept", "command": "true"})
    before = _snapshot(url)
    path.chmod(0o444)
    if not directory_writable:
        folder.chmod(0o555)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        # the premise: this caller really cannot write the file
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", f"open({str(path)!r}, 'r+b')"], capture_output=True
        )
        assert probe.returncode != 0 and b"Permission denied" in probe.stderr
        enqueue = _run(prefix, url, tmp_path, "enqueue", "-c", "echo new")
        _one_error_line(enqueue, expect=f"readonly database ({path})")
        worker = _run(prefix, url, tmp_path, "worker", "start", "--burst")
        _one_error_line(worker, expect="readonly database", after_start=directory_writable)
        status = _run(prefix, url, tmp_path, "status", "--json")
        if directory_writable:
            # reading needs no write: status answers, from the file as it is
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["jobs"]["pending"] == 1
        else:
            # SQLite cannot create the WAL index next to the file, so it cannot even read
            _one_error_line(status, expect="readonly database")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    finally:
        folder.chmod(0o755)
        for made in folder.iterdir():  # SQLite's -wal and -shm copy the file's mode
            made.chmod(0o644)
    assert _snapshot(url) == before  # nothing changed


def test_sqlite_path_in_a_missing_directory_gives_one_clear_line(tmp_path: Path) -> None:
    absent = tmp_path / "no-such-dir"
    url = f"sqlite:///{absent}/queue.db"
    for args in (("enqueue", "-c", "true"), ("status",), ("worker", "start", "--burst")):
        result = _run([], url, tmp_path, *args)
        _one_error_line(result, expect=f"directory {absent} does not exist")
    assert not absent.exists()  # nothing created
