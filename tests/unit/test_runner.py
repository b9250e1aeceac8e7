"""Unit tests of queuectl.runner with real /bin/sh processes: outcomes, timeouts, kills, output."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from queuectl import ids, models
from queuectl.models import OutcomeKind
from queuectl.runner import TRUNCATION_MARK, Runner, job_env, without_mark
from tests.unit.factories import make_job


def _job(**changes: Any) -> models.Job:
    return make_job(**{**dict(id=ids.new_id()), **changes})


def _runner(
    command: str,
    *,
    timeout_s: float | None = None,
    kill_grace_s: float = 1.0,
    output_limit: int = 65536,
    env: Mapping[str, str] | None = None,
) -> Runner:
    return Runner(
        command,
        env=dict(os.environ) if env is None else env,
        timeout_s=timeout_s,
        kill_grace_s=kill_grace_s,
        output_limit=output_limit,
    )


def _run(command: str, **kw: Any) -> models.Outcome:
    runner = _runner(command, **kw)
    assert runner.start() is None
    return runner.wait(tick_s=0.05)


def _live_members(pgid: int) -> list[int]:
    """Pids of the process group that are still running (zombies are dead already)."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            live.append(int(entry.name))
    return live


def _group_gone(pgid: int, timeout: float = 3.0) -> bool:
    """True once the group is gone: killpg finds no process, or only unreaped zombies.

    Orphaned members are reaped by PID 1 of the host or container, on its own schedule.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if not _live_members(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# --- outcomes -------------------------------------------------------------------------------


def test_exit_zero_succeeds():
    outcome = _run("exit 0")
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.ok
    assert outcome.exit_code == 0
    assert outcome.error is None


def test_non_zero_exit_fails_with_its_exit_code():
    outcome = _run("exit 3")
    assert outcome.kind is OutcomeKind.FAILED
    assert not outcome.ok
    assert outcome.exit_code == 3
    assert outcome.error == "exit code 3"


def test_a_missing_command_fails_with_exit_127():
    outcome = _run("definitely-not-a-command-queuectl")
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.exit_code == 127
    assert outcome.error is not None
    assert "command not found" in outcome.error
    assert "definitely-not-a-command-queuectl" in outcome.output  # the shell's own message


def test_a_command_killed_by_a_signal_fails_naming_the_signal():
    outcome = _run("kill -9 $$")
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.error == "killed by signal SIGKILL"


def test_the_command_runs_in_its_own_process_group():
    runner = _runner("sleep 0.2")
    before = runner.pid
    assert runner.start() is None
    pid = runner.pid
    assert before is None
    assert pid is not None
    assert os.getpgid(pid) == pid != os.getpgrp()
    assert runner.wait(tick_s=0.05).ok


def test_a_shell_that_cannot_start_is_reported(monkeypatch):
    monkeypatch.setattr("queuectl.runner.SHELL", "/nonexistent/queuectl-sh")
    runner = _runner("true")
    try:
        error = runner.start()
    finally:
        runner._out.close()  # wait() is what closes it, and there is nothing to wait for
    assert error is not None
    assert "could not start /nonexistent/queuectl-sh" in error


def test_on_tick_is_called_while_the_command_runs():
    ticks = []
    runner = _runner("sleep 0.4")
    assert runner.start() is None
    outcome = runner.wait(on_tick=lambda: ticks.append(time.monotonic()), tick_s=0.05)
    assert outcome.ok
    assert len(ticks) >= 3
    assert outcome.duration_s >= 0.4


# --- timeouts and kills ---------------------------------------------------------------------


def test_timeout_kills_the_command_quickly():
    started = time.monotonic()
    outcome = _run("sleep 5", timeout_s=0.3, kill_grace_s=1.0)
    elapsed = time.monotonic() - started
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert outcome.error == "timed out after 0.3s"
    assert 0.3 <= elapsed < 2.0
    assert outcome.duration_s >= 0.3


def test_timeout_kills_background_children_in_the_same_group():
    runner = _runner("sleep 30 & sleep 30", timeout_s=0.4, kill_grace_s=1.0)
    assert runner.start() is None
    pid = runner.pid
    assert pid is not None
    seen: list[int] = []

    def look() -> None:
        if not seen:
            seen.extend(_live_members(pid))

    outcome = runner.wait(on_tick=look, tick_s=0.05)
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert len(seen) >= 3  # the shell and both sleeps really ran in the group
    # every member is dead: killpg finds nothing (or only zombies PID 1 has yet to reap)
    assert _group_gone(pid)


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period():
    started = time.monotonic()
    outcome = _run("trap '' TERM; sleep 30", timeout_s=0.2, kill_grace_s=0.3)
    elapsed = time.monotonic() - started
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert outcome.exit_code == -signal.SIGKILL
    assert 0.5 <= elapsed < 3.0


def test_kill_from_another_thread_cancels_the_command():
    runner = _runner("sleep 30", kill_grace_s=1.0)
    assert runner.start() is None
    timer = threading.Timer(0.2, runner.kill, args=(OutcomeKind.CANCELLED,))
    started = time.monotonic()
    timer.start()
    try:
        outcome = runner.wait(tick_s=0.05)
    finally:
        timer.join()
    assert outcome.kind is OutcomeKind.CANCELLED
    assert outcome.error == "cancelled"
    assert time.monotonic() - started < 3.0


def test_the_first_kill_reason_wins():
    runner = _runner("sleep 30", timeout_s=5.0)
    assert runner.start() is None
    runner.kill(OutcomeKind.LOST)
    runner.kill(OutcomeKind.CANCELLED)
    outcome = runner.wait(tick_s=0.05)
    assert outcome.kind is OutcomeKind.LOST
    assert outcome.error == "lease lost"


def test_force_kill_interrupts_at_once():
    runner = _runner("trap '' TERM; sleep 30", kill_grace_s=30.0)
    assert runner.start() is None
    started = time.monotonic()
    runner.force_kill(OutcomeKind.INTERRUPTED)
    outcome = runner.wait(tick_s=0.05)
    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert outcome.error == "interrupted: worker shut down"
    assert time.monotonic() - started < 3.0


# --- output ---------------------------------------------------------------------------------


def test_output_captures_stdout_and_stderr_in_order():
    outcome = _run("echo out; echo err >&2; echo out2")
    assert outcome.output == "out\nerr\nout2\n"
    assert outcome.output_bytes == len(b"out\nerr\nout2\n")


def test_output_keeps_the_tail_with_a_truncation_mark(tmp_path):
    data = b"a" * 5000 + b"THE-END"
    (tmp_path / "big.txt").write_bytes(data)
    outcome = _run(f"cat '{tmp_path / 'big.txt'}'", output_limit=1024)
    total = len(data)
    mark = TRUNCATION_MARK.format(dropped=total - 1024, total=total)
    assert "output truncated" in mark
    assert outcome.output == mark + "a" * (1024 - len("THE-END")) + "THE-END"
    assert outcome.output_bytes == total


def test_output_at_the_limit_is_not_marked(tmp_path):
    (tmp_path / "exact.txt").write_bytes(b"b" * 1024)
    outcome = _run(f"cat '{tmp_path / 'exact.txt'}'", output_limit=1024)
    assert outcome.output == "b" * 1024


def test_a_cut_inside_a_multibyte_character_drops_the_partial_character(tmp_path):
    (tmp_path / "utf8.txt").write_bytes("é".encode() * 1000)  # 2000 bytes
    outcome = _run(f"cat '{tmp_path / 'utf8.txt'}'", output_limit=1025)  # cut mid-character
    mark = TRUNCATION_MARK.format(dropped=975, total=2000)
    assert outcome.output == mark + "é" * 512


def test_nul_bytes_in_output_become_replacement_characters():
    outcome = _run("printf 'a\\000b'")
    assert outcome.output == "a\ufffdb"
    assert outcome.output_bytes == 3


def test_output_if_changed_reports_only_new_output():
    runner = _runner("echo one; sleep 30")
    assert runner.start() is None
    try:
        deadline = time.monotonic() + 3
        first = runner.output_if_changed()
        while first is None or first[1] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
            first = runner.output_if_changed()
        assert first == ("one\n", 4)
        assert runner.output_if_changed() is None
    finally:
        runner.kill(OutcomeKind.CANCELLED)
        runner.wait(tick_s=0.05)
    assert runner.output_if_changed() is None  # closed after wait()


# --- job_env --------------------------------------------------------------------------------


def test_job_env_names_the_job_attempt_queue_and_lease():
    job = _job(id="job-42", attempts=2, queue="emails", lease_token=9)
    env = job_env(job, {"PATH": "/usr/bin", "QUEUECTL_QUEUE": "stale"})
    assert env == {
        "PATH": "/usr/bin",
        "QUEUECTL_JOB_ID": "job-42",
        "QUEUECTL_ATTEMPT": "2",
        "QUEUECTL_QUEUE": "emails",
        "QUEUECTL_LEASE": "job-42#9",
    }


def test_job_env_does_not_change_the_base_environment():
    base = {"PATH": "/usr/bin"}
    job_env(_job(), base)
    assert base == {"PATH": "/usr/bin"}


def test_the_command_sees_its_job_environment():
    job = _job(id="job-42", attempts=3, queue="emails")
    outcome = _run(
        'echo "$QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $QUEUECTL_QUEUE"', env=job_env(job, os.environ)
    )
    assert outcome.ok
    assert outcome.output == "job-42 3 emails\n"


def test_the_command_sees_only_the_environment_it_is_given():
    outcome = _run('echo "[$QUEUECTL_JOB_ID][$HOME]"', env={"PATH": os.defpath})
    assert outcome.output == "[][]\n"


def test_a_kill_before_the_process_exists_still_kills_it():
    runner = Runner(
        "sleep 30", env=dict(os.environ), timeout_s=None, kill_grace_s=1, output_limit=1024
    )
    runner.force_kill(models.OutcomeKind.INTERRUPTED)
    assert runner.start() is None
    started = time.monotonic()
    outcome = runner.wait()
    assert outcome.kind is models.OutcomeKind.INTERRUPTED
    assert time.monotonic() - started < 5


def test_without_mark_strips_only_the_truncation_line():
    assert without_mark("plain\ntext") == "plain\ntext"
    marked = TRUNCATION_MARK.format(dropped=10, total=20) + "tail\n"
    assert without_mark(marked) == "tail\n"
