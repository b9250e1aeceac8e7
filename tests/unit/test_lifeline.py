"""The lifeline watchdog with real processes: groups it must kill, groups it must spare."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl.lifeline import Lifeline


def _alive(pgid: int) -> bool:
    """Some process of the group still runs. (Zombies do not count: this test process is the
    parent of each group's shell and reaps it only at the end.)"""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                return True
    return False


def _gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pgid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Job-like process groups (`sleep` in its own session, with a child), killed at the end."""
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for proc in made:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _group(groups: list[subprocess.Popen[bytes]]) -> int:
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 61"], start_new_session=True)
    groups.append(proc)
    return proc.pid


def test_close_kills_what_is_still_watched_and_spares_what_was_forgotten(
    groups: list[subprocess.Popen[bytes]],
) -> None:
    lifeline = Lifeline()
    kept, done, never = _group(groups), _group(groups), _group(groups)
    lifeline.watch(kept)
    lifeline.watch(done)
    lifeline.forget(done)
    lifeline.close()
    assert _gone_within(kept, 5)
    assert _alive(done) and _alive(never)
    assert lifeline.pid is None
    lifeline.watch(never)  # after close: nothing happens, nothing raises
    lifeline.close()
    assert _alive(never)


def test_a_sigkilled_owner_takes_its_jobs_with_it() -> None:
    """The point of it: the owner dies without running any code, and its jobs die too."""
    owner_code = textwrap.dedent(
        """
        import subprocess, sys, time
        from queuectl.lifeline import Lifeline
        lifeline = Lifeline()
        job = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 61"], start_new_session=True)
        lifeline.watch(job.pid)
        print(job.pid, lifeline.pid, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE)
    assert owner.stdout is not None
    job_pgid, watchdog_pid = map(int, owner.stdout.readline().split())
    try:
        time.sleep(0.2)  # the watchdog has read the line: it is a separate process
        assert _alive(job_pgid)
        owner.kill()
        owner.wait()
        assert _gone_within(job_pgid, 5), "the job outlived its SIGKILLed worker"
        assert _gone_within(watchdog_pid, 5), "the watchdog did not exit"
    finally:
        owner.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job_pgid, signal.SIGKILL)


def test_a_lost_watchdog_is_noted_and_the_worker_goes_on(
    groups: list[subprocess.Popen[bytes]],
) -> None:
    lifeline = Lifeline()
    watchdog = lifeline.pid
    assert watchdog is not None
    os.kill(watchdog, signal.SIGKILL)
    time.sleep(0.2)
    pgid = _group(groups)
    lifeline.watch(pgid)  # the pipe is broken: no exception reaches a job's thread
    assert lifeline.pid is None
    lifeline.forget(pgid)
    lifeline.close()
    assert _alive(pgid)
