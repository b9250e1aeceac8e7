"""A job that sheds what orphan hunts look for (`env -i` clears the lease marker, `set -m`
moves its child to a process group of its own) still dies with its worker: the lifeline and
the recovery sweep find it by its session, which it cannot leave without setsid()."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.test_db_faults import events
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e


def _escaping_job(pidfile: Path, marker: Path) -> str:
    """Attempt 1 escapes and hangs; attempt 2 reports whether attempt 1's child still runs."""
    return (
        f'if [ "$QUEUECTL_ATTEMPT" = 1 ]; then exec env -i /bin/bash -c '
        f"'set -m; sleep 60 & echo $! > {pidfile}; wait'; fi; "
        f"if kill -0 $(cat {pidfile}) 2>/dev/null; then echo overlap >> {marker}; fi; "
        f"echo end-$QUEUECTL_ATTEMPT >> {marker}"
    )


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def _lifeline_of(worker_pid: int) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == worker_pid and b"queuectl.lifeline" in cmdline:
            return int(entry.name)
    raise AssertionError("the worker has no lifeline process")


def _start(cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    pidfile, marker = tmp_path / "child.pid", tmp_path / "runs.txt"
    cli.enqueue({"id": "escapee", "command": _escaping_job(pidfile, marker), "max_retries": 1})
    return pidfile, marker


def _child(pidfile: Path) -> int:
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20, every=0.05)
    child = int(pidfile.read_text())
    assert os.getpgid(child) == child  # `set -m`: it leads a group of its own
    return child


def test_the_lifeline_kills_a_job_that_left_its_group_and_cleared_its_environment(
    cli: Cli, tmp_path: Path
) -> None:
    pidfile, _ = _start(cli, tmp_path)
    worker = cli.popen("worker", "start")
    try:
        child = _child(pidfile)
        worker.kill()  # SIGKILL: only the lifeline acts at once
        worker.wait()
        killed_at = time.monotonic()
        wait_for(lambda: not _running(child), timeout=3, every=0.02)
        print(f"escaped child killed {time.monotonic() - killed_at:.2f}s after the worker")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if pidfile.exists() and _running(child := int(pidfile.read_text())):
            os.kill(child, signal.SIGKILL)


def test_a_recovery_sweep_kills_a_job_that_left_its_group_and_cleared_its_environment(
    cli: Cli, tmp_path: Path
) -> None:
    """The lifeline dies too (it is a process like any other): the next worker's sweep
    finds the run by the session its owner's heartbeat recorded, and kills it before the
    retry starts. It used to run 11.5 s next to attempt 2."""
    pidfile, marker = _start(cli, tmp_path)
    first = cli.popen("worker", "start")
    second = None
    try:
        child = _child(pidfile)
        time.sleep(2.5)  # one heartbeat records the session
        os.kill(_lifeline_of(first.pid), signal.SIGKILL)
        first.kill()
        first.wait()
        time.sleep(0.5)
        assert _running(child)  # nothing killed it so far
        second = cli.popen("worker", "start")
        wait_for(lambda: marker.exists() and "end-2" in marker.read_text(), timeout=40)
        assert marker.read_text().split() == ["end-2"]  # no overlap
        assert not _running(child)
        assert cli.json("show", "escapee", "--json")["state"] == "completed"
        (recovered,) = [e for e in events(cli.log(second)) if e["event"] == "job_recovered"]
        assert recovered["orphans_killed"] >= 1, recovered
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        if pidfile.exists() and _running(child := int(pidfile.read_text())):
            os.kill(child, signal.SIGKILL)
