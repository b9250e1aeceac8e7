"""Outages longer than a lease, a suspended worker, huge live output: a worker that holds a
finished result keeps it (and its lease) until it is written, nobody writes off a job whose
owner is alive, and no worker kills its own healthy job because someone else blocked the
database. Each test reproduces a defect a hostile review found (issue 19)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from queuectl.backends import open_backend
from tests.conftest import Cli, _admin
from tests.e2e.test_db_faults import _HOLD, events
from tests.e2e.waiting import terminate_all, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAILURE_EVENTS = {"job_fenced", "job_abandoned", "job_lease_lost", "finish_gave_up"}


def _enqueue_sleepers(cli: Cli, marker: Path, durations: dict[str, float]) -> None:
    """No retries: a result dropped, or a healthy job killed, ends the job `dead` at once."""
    lines = "".join(
        f'{{"id": "{job_id}", "max_retries": 0, "command": '
        f'"echo start $QUEUECTL_JOB_ID >> {marker}; sleep {seconds}; '
        f'echo end $QUEUECTL_JOB_ID >> {marker}"}}\n'
        for job_id, seconds in durations.items()
    )
    assert cli("enqueue", "-", input=lines).returncode == 0


def _lines(marker: Path, word: str) -> list[str]:
    if not marker.exists():
        return []
    return [line.split()[1] for line in marker.read_text().splitlines() if line.startswith(word)]


@contextlib.contextmanager
def _processes(procs: Sequence[subprocess.Popen[bytes]], cli: Cli) -> Iterator[None]:
    try:
        yield
    finally:
        terminate_all(procs, timeout=40)


def _fleet(cli: Cli, *, orchestrator: bool = False) -> list[subprocess.Popen[bytes]]:
    """2 workers x 4 slots (and an orchestrator), as in the review's repros."""
    procs = [cli.popen("worker", "start", "--count", "4") for _ in range(2)]
    return [*procs, cli.popen("orchestrator", "run")] if orchestrator else procs


def _run_until_the_fault(
    cli: Cli, procs: Sequence[subprocess.Popen[bytes]], marker: Path, durations: dict[str, float]
) -> None:
    """Enqueue the jobs once every process runs, and return at +2.5 s after their start,
    when the fault begins."""
    wait_for(lambda: all("_started" in cli.log(p) for p in procs), timeout=30)
    _enqueue_sleepers(cli, marker, durations)
    wait_for(lambda: len(_lines(marker, "start")) == len(durations), timeout=20, every=0.05)
    time.sleep(2.5 - 0.5)


def _wait_until_completed(cli: Cli, count: int) -> None:
    wait_for(
        lambda: cli.json("status", "--json")["jobs"]["completed"] == count, timeout=40, every=0.25
    )


def _held_and_written_once(
    cli: Cli, procs: Sequence[subprocess.Popen[bytes]], marker: Path, durations: dict[str, float]
) -> None:
    """Every process drained and exited 0, every job ran once and completed on attempt 1,
    and nobody fenced a job or gave a result up."""
    assert all(p.returncode == 0 for p in procs), [cli.log(p)[-2000:] for p in procs]
    assert _quiet(cli, procs) == []
    backend = open_backend(cli.url)
    try:
        jobs = {j.id: j for j in backend.list_jobs(limit=100)}
        runs = {job_id: backend.runs(job_id) for job_id in durations}
    finally:
        backend.close()
    summary = {i: (j.state, j.attempts, j.last_error) for i, j in jobs.items()}
    assert all(j.state == "completed" and j.attempts == 1 for j in jobs.values()), summary
    assert all([r.outcome for r in rs] == ["succeeded"] for rs in runs.values()), runs
    assert sorted(_lines(marker, "start")) == sorted(durations)  # nothing ran twice
    assert sorted(_lines(marker, "end")) == sorted(durations)


def _quiet(cli: Cli, procs: Sequence[subprocess.Popen[bytes]]) -> list[str]:
    """Events no process may log here: a killed healthy job, a dropped result."""
    seen = []
    for proc in procs:
        seen += [e["event"] for e in events(cli.log(proc)) if e["event"] in FAILURE_EVENTS]
    return seen


@pytest.mark.integration
def test_results_held_through_a_postgres_outage_longer_than_a_lease(
    pg_url: str, postgres_url: str, tmp_path: Path
) -> None:
    """The review's repro: 8 `sleep 4` jobs on 2 workers x 4 slots, the database refusing
    every connection for 15 s from +2.5 s. Every job finished during the outage; each
    result used to be dropped after 5 tries (all 8 ended dead 'worker lost')."""
    database = pg_url.rsplit("/", 1)[1]
    cli = Cli(pg_url, tmp_path)
    marker = tmp_path / "ran.txt"
    durations = {f"j{i}": 4.0 for i in range(8)}
    procs = _fleet(cli, orchestrator=True)  # the orchestrator's recovery sweep must wait too
    with _processes(procs, cli):
        _run_until_the_fault(cli, procs, marker, durations)
        _admin(
            postgres_url,
            f"ALTER DATABASE {database} ALLOW_CONNECTIONS false",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        )
        cut_at = time.monotonic()
        try:
            wait_for(lambda: len(_lines(marker, "end")) == 8, timeout=15, every=0.1)
            time.sleep(max(0.0, 15 - (time.monotonic() - cut_at)))
        finally:
            _admin(postgres_url, f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        back_at = time.monotonic()
        _wait_until_completed(cli, 8)
        written_s = time.monotonic() - back_at
    _held_and_written_once(cli, procs, marker, durations)
    print(f"outage {back_at - cut_at:.1f}s; all 8 results written {written_s:.1f}s after it")


def test_results_and_long_jobs_held_through_a_sqlite_lock_longer_than_a_lease(
    tmp_path: Path,
) -> None:
    """Another process holds SQLite's write lock for 25 s (the busy timeout is 30 s): short
    jobs finish meanwhile and their results wait; long ones run on through it. Another
    worker's recovery sweep used to win the lock first and write 2-4 of the 8 off as
    'worker lost', and the long jobs were fenced (killed) for leases they held all along."""
    path = tmp_path / "queue.db"
    cli = Cli(f"sqlite:///{path}", tmp_path)
    marker = tmp_path / "ran.txt"
    durations = {**{f"short{i}": 4.0 for i in range(4)}, **{f"long{i}": 14.0 for i in range(4)}}
    procs = _fleet(cli)
    with _processes(procs, cli):
        _run_until_the_fault(cli, procs, marker, durations)
        with subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(path), "25"], stdout=subprocess.PIPE, text=True
        ) as holder:
            assert holder.stdout is not None
            assert holder.stdout.readline().split()[0] == "locked"
            assert holder.stdout.readline().split()[0] == "released"
        released = time.monotonic()
        _wait_until_completed(cli, 8)
        written_s = time.monotonic() - released
    _held_and_written_once(cli, procs, marker, durations)
    print(f"lock held 25 s; all 8 results written {written_s:.1f}s after its release")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _write_lock_free(path: Path, *, within_s: float) -> bool:
    """Whether another process can take the file's write lock within `within_s`."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None, timeout=within_s)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_a_suspended_sqlite_worker_never_holds_the_write_lock(tmp_path: Path) -> None:
    """Ctrl-Z (SIGTSTP) on a worker churning `true` jobs, ten times. It used to stop inside
    a write transaction: every other worker waited on the lock, and a healthy 20 s job of
    another worker was fenced at +10 s and ended dead 'worker lost'. Now the worker stops
    only between transactions (and stops its jobs with it), so the file stays writable."""
    path = tmp_path / "queue.db"
    cli = Cli(f"sqlite:///{path}", tmp_path)
    churn = "".join(f'{{"command": "true", "queue": "churn", "id": "t{i}"}}\n' for i in range(4000))
    assert cli("enqueue", "-", input=churn).returncode == 0
    cli.enqueue({"id": "healthy", "queue": "long", "command": "sleep 20", "max_retries": 0})
    churner = cli.popen("worker", "start", "--count", "4", "--queue", "churn")
    other = cli.popen("worker", "start", "--queue", "long")
    procs = [churner, other]
    stops = []
    with _processes(procs, cli):
        wait_for(lambda: cli.json("show", "healthy", "--json")["state"] == "processing", timeout=30)
        wait_for(lambda: "job_finished" in cli.log(churner), timeout=30)
        for round_ in range(10):
            churner.send_signal(signal.SIGTSTP)
            wait_for(lambda: _state(churner.pid) == "T", timeout=5, every=0.01)
            free = _write_lock_free(path, within_s=3)
            stops.append(free)
            # one long stop: past a lease, so its own jobs are recovered and rerun elsewhere
            time.sleep(12 if round_ == 4 else 0.3)
            churner.send_signal(signal.SIGCONT)
            time.sleep(0.3)
            assert free, f"round {round_}: a suspended worker held the write lock"
        wait_for(
            lambda: cli.json("show", "healthy", "--json")["state"] not in ("processing",),
            timeout=30,
        )
        healthy = cli.json("show", "healthy", "--json")
    assert all(stops)
    assert healthy["state"] == "completed" and healthy["attempts"] == 1, healthy
    other_events = [e["event"] for e in events(cli.log(other))]
    assert not set(other_events) & FAILURE_EVENTS
    assert "process_suspended" in cli.log(churner) and "process_resumed" in cli.log(churner)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_output_limit_at_its_maximum_does_not_make_a_sqlite_worker_kill_its_jobs(
    tmp_path: Path,
) -> None:
    """4 `yes` jobs with output-limit 64 MiB (its maximum): each heartbeat used to store
    4 x 64 MiB, took longer than a lease, and the worker fenced its own jobs at +11 s
    instead of timing them out. Heartbeats now carry a bounded live tail; the whole 64 MiB
    tail is written once, when the attempt ends."""
    path = tmp_path / "queue.db"
    cli = Cli(f"sqlite:///{path}", tmp_path)
    assert cli("config", "set", "output-limit", str(64 << 20)).returncode == 0
    for i in range(4):
        cli.enqueue({"id": f"yes{i}", "command": "yes", "timeout": 15, "max_retries": 0})
    worker = cli.popen("worker", "start", "--count", "4")
    peak = 0.0
    with _processes([worker], cli):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            peak = max(peak, _peak_rss_mb(worker.pid))
            if cli.json("status", "--json")["jobs"]["dead"] == 4:
                break
            time.sleep(0.5)
    shown = [cli.json("show", f"yes{i}", "--json") for i in range(4)]
    assert [s["last_error"] for s in shown] == ["timed out after 15s"] * 4, shown
    assert _quiet(cli, [worker]) == []
    backend = open_backend(cli.url)
    try:
        stored = [backend.runs(f"yes{i}")[0].output_bytes for i in range(4)]
        tails = [len(backend.runs(f"yes{i}")[0].output) for i in range(4)]
    finally:
        backend.close()
    assert all(b > 64 << 20 for b in stored)  # they wrote more than the limit
    assert all(64 << 20 <= t < (64 << 20) + 200 for t in tails)  # the tail, and its mark
    # the tails themselves are 4 x 64 MiB: what a worker must hold is bounded by its slots
    assert peak < 4 * 64 * 3 + 150, peak
    print(f"worker peak RSS {peak:.0f} MB for 4 x 64 MiB tails")


@contextlib.contextmanager
def _small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only: the suite runs as root in CI)."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr!r}")
        pytest.skip(f"a full-disk test needs to mount a tmpfs (root): {mounted.stderr!r}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_results_held_through_a_full_disk(tmp_path: Path) -> None:
    """The review's third repro: the SQLite file's disk full for 20 s while 8 `sleep 4` jobs
    finish. Every write fails ("database or disk is full"); the results used to be dropped
    and all 8 jobs ran again. They are held, and written once there is room."""
    with _small_disk(tmp_path / "disk", "8m") as disk:
        cli = Cli(f"sqlite:///{disk}/queue.db", tmp_path)
        marker = tmp_path / "ran.txt"
        durations = {f"j{i}": 4.0 for i in range(8)}
        procs = _fleet(cli)
        with _processes(procs, cli):
            _run_until_the_fault(cli, procs, marker, durations)
            filler = disk / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
            try:
                wait_for(lambda: len(_lines(marker, "end")) == 8, timeout=15, every=0.1)
                time.sleep(20 - 3)
                full = cli.json("status", "--json")["jobs"]  # readers still read
            finally:
                filler.unlink()
            freed = time.monotonic()
            _wait_until_completed(cli, 8)
            written_s = time.monotonic() - freed
        assert full["completed"] == 0 and full["processing"] == 8, full
        _held_and_written_once(cli, procs, marker, durations)
        logged = "".join(cli.log(p) for p in procs)
        assert "full" in logged  # the writes did fail meanwhile
    print(f"disk full 20 s; all 8 results written {written_s:.1f}s after room was made")
