"""The five classic scenarios, end to end through `python -m queuectl`, on both backends."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_job_completes(cli: Cli) -> None:
    job = cli.enqueue({"id": "hello", "command": "echo hello; echo oops >&2"})
    assert job["state"] == "pending" and job["attempts"] == 0
    run = cli("worker", "start", "--burst")
    assert run.returncode == 0, run.stderr
    shown = cli.json("show", "hello", "--json")
    assert shown["state"] == "completed" and shown["exit_code"] == 0 and shown["attempts"] == 1
    assert [r["outcome"] for r in shown["runs"]] == ["succeeded"]
    assert cli("logs", "hello").stdout == "hello\noops\n"


@pytest.mark.slow
def test_a_failing_job_retries_with_backoff_then_lands_in_the_dlq(cli: Cli) -> None:
    cli.enqueue({"id": "bad", "command": "exit 3", "max_retries": 2})
    worker = cli.popen("worker", "start")
    try:
        failed = wait_for(lambda: cli.json("list", "--state", "failed", "--json"), timeout=20)
        assert failed[0]["id"] == "bad" and failed[0]["last_error"] == "exit code 3"
        dead = wait_for(lambda: cli.json("dlq", "list", "--json"), timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert dead[0]["id"] == "bad" and dead[0]["state"] == "dead" and dead[0]["attempts"] == 3
    runs = cli.json("show", "bad", "--json")["runs"]
    assert [r["exit_code"] for r in runs] == [3, 3, 3]
    starts = [ts(r["started_at"]) for r in runs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # backoff-base 2: 2 s then 4 s, plus at most one idle poll (1 s) each
    assert 2.0 <= gaps[0] < 3.5, gaps
    assert 4.0 <= gaps[1] < 5.5, gaps
    assert cli.json("status", "--json")["dlq"] == 1


def test_two_worker_processes_run_every_job_exactly_once(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    lines = "".join(
        json.dumps({"id": f"j{i:03d}", "command": f"sleep 0.05; echo {i} >> {marker}"}) + "\n"
        for i in range(60)
    )
    assert cli("enqueue", "-", input=lines).returncode == 0
    workers = [cli.popen("worker", "start", "--burst", "--count", "2") for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=90) == 0, cli.log(w)
    tokens = marker.read_text().split()
    assert sorted(tokens, key=int) == [str(i) for i in range(60)]  # none twice, none missing
    jobs = cli.json("list", "--json", "--limit", "1000")
    assert {j["state"] for j in jobs} == {"completed"}
    pids = {j["worker_id"].rsplit("-", 2)[1] for j in jobs}
    assert pids == {str(w.pid) for w in workers}  # both processes did work


@pytest.mark.slow
def test_a_sigkilled_worker_job_is_recovered_and_completes(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    # the first attempt hangs (and would write "end 1" if its orphan survived recovery)
    command = (
        f'echo "start $QUEUECTL_ATTEMPT" >> {marker}; '
        f'if [ "$QUEUECTL_ATTEMPT" = 1 ]; then sleep 40; fi; '
        f'echo "end $QUEUECTL_ATTEMPT" >> {marker}'
    )
    cli.enqueue({"id": "victim", "command": command})
    first = cli.popen("worker", "start")
    wait_for(lambda: marker.exists() and "start 1" in marker.read_text(), timeout=20)
    first.kill()  # SIGKILL: no cleanup, the lease is left to expire
    first.wait()
    killed_at = time.monotonic()
    # the dead worker's lifeline kills its job at once, long before any recovery sweep
    wait_for(lambda: not _processes_with("QUEUECTL_LEASE=victim#1"), timeout=5)
    orphan_gone_s = time.monotonic() - killed_at
    assert cli.json("show", "victim", "--json")["state"] == "processing"
    second = cli.popen("worker", "start")
    try:
        wait_for(lambda: cli.json("show", "victim", "--json")["state"] == "completed", timeout=60)
        recovery_s = time.monotonic() - killed_at
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert recovery_s < 60
    shown = cli.json("show", "victim", "--json")
    assert [(r["outcome"], r["error"]) for r in shown["runs"]] == [
        ("lost", "worker lost"),
        ("succeeded", None),
    ]
    assert marker.read_text().split("\n")[:3] == ["start 1", "start 2", "end 2"]
    assert not _processes_with("QUEUECTL_LEASE=victim#1")  # the orphan was killed
    assert cli.json("list", "--state", "processing", "--json") == []
    print(f"SIGKILL -> job killed in {orphan_gone_s:.2f}s, completed again in {recovery_s:.1f}s")


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_jobs_and_config_survive_a_restart(cli: Cli) -> None:
    assert cli("config", "set", "max-retries", "5").returncode == 0
    assert cli("config", "set", "backoff-base", "3").returncode == 0
    cli.enqueue({"id": "done", "command": "true"})
    assert cli("worker", "start", "--burst").returncode == 0
    cli.enqueue({"id": "later", "command": "echo later"})
    before = cli.json("status", "--json")
    # every process is gone; new ones see the same queue, jobs and settings
    after = cli.json("status", "--json")
    assert after == before
    assert cli("config", "get", "max-retries").stdout.strip() == "5"
    assert cli.json("config", "list", "--json")["backoff-base"] == "3"
    assert cli.json("show", "later", "--json")["max_retries"] == 5
    assert cli("worker", "start", "--burst").returncode == 0
    assert cli.json("show", "later", "--json")["state"] == "completed"
    assert cli.json("show", "done", "--json")["state"] == "completed"


def test_env_reaches_the_job(cli: Cli) -> None:
    cli.enqueue(
        {"id": "env", "command": 'echo "$QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $QUEUECTL_QUEUE"'},
        "--queue",
        "mail",
    )
    assert cli("worker", "start", "--burst", "--queue", "mail").returncode == 0
    assert cli("logs", "env").stdout == "env 1 mail\n"


def test_default_database_is_shared_per_user(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg-shared"
    a = Cli("", tmp_path)
    env = {"XDG_DATA_HOME": str(xdg)}
    base = {k: v for k, v in os.environ.items() if k != "QUEUECTL_DATABASE_URL"}
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "queuectl", *args],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )

    assert run("enqueue", '{"id": "shared", "command": "true"}').returncode == 0
    assert (xdg / "queuectl" / "queuectl.db").exists()
    assert json.loads(run("show", "shared", "--json").stdout)["id"] == "shared"
    del a


def test_dlq_retry_resets_attempts_and_purge_deletes(cli: Cli) -> None:
    cli.enqueue({"id": "d", "command": "exit 9", "max_retries": 0})
    assert cli("worker", "start", "--burst").returncode == 0
    assert [j["id"] for j in cli.json("dlq", "list", "--json")] == ["d"]
    (retried,) = cli.json("dlq", "retry", "d", "--json")
    assert (retried["state"], retried["attempts"], retried["max_retries"]) == ("pending", 0, 0)
    assert cli.json("dlq", "list", "--json") == []
    assert cli("worker", "start", "--burst").returncode == 0
    shown = cli.json("show", "d", "--json")
    assert shown["state"] == "dead"
    assert [r["attempt"] for r in shown["runs"]] == [1, 2]  # history kept across the retry
    assert cli.json("dlq", "retry", "--all", "--json") == {"retried": 1}
    assert cli("worker", "start", "--burst").returncode == 0
    assert cli.json("dlq", "purge", "--json") == {"purged": 1}
    assert cli("show", "d").returncode == 3
    assert cli.json("status", "--json")["dlq"] == 0


def test_stats_report_what_ran(cli: Cli) -> None:
    for i in range(3):
        cli.enqueue({"command": f"sleep 0.{i + 1}"})
    cli.enqueue({"command": "exit 1", "max_retries": 0, "queue": "mail"})
    assert cli("worker", "start", "--burst", "--count", "2").returncode == 0
    doc = cli.json("stats", "--json", "--since", "10m")
    assert doc["window_s"] == 600
    assert (doc["all"]["finished"], doc["all"]["succeeded"]) == (4, 3)
    assert doc["queues"]["mail"]["success_rate"] == 0.0
    assert 0.1 <= doc["queues"]["default"]["run_s"]["p50"] < 1.0
    assert doc["queues"]["default"]["run_s"]["max"] >= 0.3
    human = cli("stats")
    assert human.returncode == 0
    assert "mail" in human.stdout
    assert cli("stats", "--since", "0s").returncode == 2
