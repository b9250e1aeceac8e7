"""Unit tests of queuectl.recovery and queuectl.sessions with real processes: when a sweeper
may write off an expired lease, and what of the lost run it kills on this host."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl import ids, models, sessions
from queuectl.recovery import Connectivity, Reaper, kill_orphans, owner_pid
from queuectl.runner import job_env
from tests.unit.factories import make_job


def _job(**changes: Any) -> models.Job:
    return make_job(**{**dict(id=ids.new_id()), **changes})


def _gone(pid: int, timeout: float = 3.0) -> bool:
    """The process exited (a zombie counts: it runs nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            return True
        if state in (b"Z", b"X"):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def orphan() -> Iterator[tuple[models.Job, subprocess.Popen[bytes]]]:
    """A process in its own session carrying a job's QUEUECTL_LEASE marker, as a lost
    worker would leave behind; killed and reaped at the end whatever happens."""
    job = _job(lease_token=7)
    proc = subprocess.Popen(
        ["sleep", "30"],
        start_new_session=True,
        env=job_env(job, os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_exec(proc.pid, b"sleep")
        yield job, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def escapee(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A job that shed everything but its session: `env -i` cleared the lease marker, and
    `set -m` put its background child in a process group of its own. Yields the job's shell
    and the escaped child's pid."""
    pidfile = tmp_path / "child.pid"
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f"exec env -i bash -c 'set -m; sleep 30 & echo $! > {pidfile}; wait'"],
        start_new_session=True,
        env=job_env(_job(), os.environ),
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the job did not start its child"
        time.sleep(0.02)
    child = int(pidfile.read_text())
    try:
        assert os.getpgid(child) != proc.pid  # it did leave the job's group
        assert os.getsid(child) == proc.pid  # but not the session
        yield proc, child
    finally:
        for pid in (child, proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _wait_for_exec(pid: int, name: bytes) -> None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(name):
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{name!r} did not start")


# --- kill_orphans ---------------------------------------------------------------------------
def test_kill_orphans_kills_the_lost_runs_process_group(orphan):
    job, proc = orphan
    assert kill_orphans(job) == 1
    assert proc.wait(timeout=3) == -signal.SIGKILL


def test_kill_orphans_spares_a_newer_lease_of_the_same_job(orphan):
    job, proc = orphan
    assert kill_orphans(dataclasses.replace(job, lease_token=job.lease_token + 1)) == 0
    time.sleep(0.1)
    assert proc.poll() is None


def test_kill_orphans_spares_other_jobs(orphan):
    job, proc = orphan
    assert kill_orphans(dataclasses.replace(job, id=ids.new_id())) == 0
    time.sleep(0.1)
    assert proc.poll() is None


def test_kill_orphans_finds_a_run_that_shed_its_environment_and_group_by_its_session(escapee):
    shell, child = escapee
    tag = sessions.tag(shell.pid)
    assert tag is not None
    job = _job()  # no process carries this job's marker: only the session finds them
    assert kill_orphans(job) == 0 and not _gone(child, timeout=0.2)
    assert kill_orphans(job, tag) >= 1
    assert _gone(child) and _gone(shell.pid)


def test_a_session_tag_whose_id_was_reused_kills_nothing(escapee):
    shell, child = escapee
    pid_text, start = (sessions.tag(shell.pid) or "").split(":")
    stale = f"{pid_text}:{int(start) - 1}"  # the same id, started at another time
    assert sessions.kill_tagged(stale) == 0
    assert not _gone(child, timeout=0.2)


def test_sessions_kill_never_touches_our_own_session():
    assert sessions.kill(os.getsid(0)) == 0
    assert sessions.members(os.getsid(0)) == []


# --- the reaper's judgement ------------------------------------------------------------------
def test_connectivity_counts_only_unbroken_access():
    db = Connectivity(max_gap_s=4)
    assert db.steady_for(100) == 0  # nothing known yet
    db.ok(10, 10.01)
    db.ok(12, 12.01)
    assert db.steady_for(20) == pytest.approx(9.99)
    db.ok(14, 30)  # a call that waited 16 s (a lock, a dead connection): a break
    assert db.steady_for(31) == pytest.approx(1)
    db.ok(40, 40.01)  # 10 s of silence (stopped, starved): a break too
    assert db.steady_for(41) == pytest.approx(0.99)
    db.failed()
    assert db.steady_for(50) == 0


def _steady(seconds: float) -> Connectivity:
    db = Connectivity(max_gap_s=4)
    now = time.monotonic()
    db.ok(now - seconds, now - seconds)
    return db


def test_a_sweeper_without_a_lease_of_steady_access_leaves_live_owners_alone(orphan):
    job, proc = orphan
    live = dataclasses.replace(job, worker_id=f"host-a-{os.getpid()}-1")  # our pid: alive
    reaper = Reaper(_steady(3), this_host="host-a", lease_ttl_s=10)
    assert reaper(live, "host-a", None) is False  # maybe it is alive, holding its result
    assert reaper(live, "host-b", None) is False
    time.sleep(0.1)
    assert proc.poll() is None  # and nothing was killed


def test_a_sweeper_recovers_at_once_when_the_owner_process_is_gone_from_this_host(orphan):
    job, proc = orphan
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer exists
    lost = dataclasses.replace(job, worker_id=f"host-a-{dead.pid}-3")
    reaper = Reaper(_steady(0), this_host="host-a", lease_ttl_s=10)
    assert reaper(lost, "host-a", None) is True
    assert proc.wait(timeout=3) == -signal.SIGKILL
    assert reaper.killed == {job.id: 1}


def test_after_a_lease_of_steady_access_every_expired_lease_is_recovered(orphan):
    job, proc = orphan
    live = dataclasses.replace(job, worker_id=f"host-b-{os.getpid()}-1")
    reaper = Reaper(_steady(11), this_host="host-a", lease_ttl_s=10)
    assert reaper(live, "host-b", None) is True  # another host: nothing to kill from here
    assert proc.poll() is None
    assert reaper(live, "host-a", None) is True  # this host: its remains are killed first
    assert proc.wait(timeout=3) == -signal.SIGKILL


def test_owner_pid_reads_the_slot_ids_workers_make():
    assert owner_pid("web-1.example-4242-3") == 4242
    assert owner_pid("host-7-1") == 7
    assert owner_pid("odd") is None and owner_pid(None) is None
