"""Orchestrator, schedules, wake-ups, metrics and logs, through real processes."""

from __future__ import annotations

import json
import signal
import socket
import statistics
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuectl import models
from queuectl.backends import open_backend
from queuectl.orchestrator import LEADER_LEASE
from tests.conftest import Cli
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_until(
    port: int, name: str, labels: tuple[tuple[str, str], ...], value: float
) -> Samples:
    """Scrape until a sample has the value; the whole scrape of that moment."""
    found: list[Samples] = []

    def probe() -> bool:
        samples = scrape(port)
        found[:] = [samples]
        return samples.get((name, labels)) == value

    wait_for(probe, timeout=15)
    return found[0]


def leader_pid(url: str) -> int | None:
    backend = open_backend(url)
    try:
        holder = backend.leader(LEADER_LEASE)
    finally:
        backend.close()
    return None if holder is None else int(holder.rsplit("-", 2)[1])


def test_schedule_commands(cli: Cli) -> None:
    added = cli.json(
        "schedule",
        "add",
        "nightly",
        "--cron",
        "0 3 * * *",
        "-c",
        "echo hi",
        "--queue",
        "ops",
        "--json",
    )
    assert (added["name"], added["cron"], added["queue"], added["paused"]) == (
        "nightly",
        "0 3 * * *",
        "ops",
        False,
    )
    assert cli("schedule", "add", "nightly", "--cron", "@daily", "-c", "x").returncode == 4
    bad = cli("schedule", "add", "oops", "--cron", "61 * * * *", "-c", "x")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    (listed,) = cli.json("schedule", "list", "--json")
    assert listed["next_slot"].endswith("T03:00:00.000Z")
    assert cli("schedule", "pause", "nightly").returncode == 0
    assert cli.json("schedule", "list", "--json")[0]["next_slot"] is None
    assert cli("schedule", "resume", "nightly").returncode == 0
    assert cli("schedule", "remove", "nightly").returncode == 0
    assert cli("schedule", "remove", "nightly").returncode == 3
    assert cli.json("schedule", "list", "--json") == []


def test_schedule_in_a_time_zone(cli: Cli) -> None:
    berlin = ("berlin", "--cron", "30 2 * * *", "-c", "true", "--tz", "Europe/Berlin")
    added = cli.json("schedule", "add", *berlin, "--json")
    assert (added["cron"], added["tz"]) == ("30 2 * * *", "Europe/Berlin")
    assert (
        cli.json("schedule", "add", "utc", "--cron", "@daily", "-c", "true", "--json")["tz"]
        == "UTC"
    )
    bad = cli(
        "schedule", "add", "mars", "--cron", "0 3 * * *", "-c", "true", "--tz", "Mars/Olympus"
    )
    assert bad.returncode == 2
    assert (
        bad.stderr == "error: unknown time zone 'Mars/Olympus' (an IANA name like Europe/Berlin)\n"
    )
    listed = {s["name"]: s for s in cli.json("schedule", "list", "--json")}
    assert {name: s["tz"] for name, s in listed.items()} == {
        "berlin": "Europe/Berlin",
        "utc": "UTC",
    }
    # the next slot is 02:30 Berlin time (03:00 the day the clocks skip 02:30), in UTC in JSON
    slot = datetime.fromisoformat(listed["berlin"]["next_slot"].replace("Z", "+00:00"))
    local = slot.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.strftime("%H:%M") in {"02:30", "03:00"}
    assert listed["utc"]["next_slot"].endswith("T00:00:00.000Z")
    # the table shows the zone and the next slot as that zone's wall clock, offset included
    table = cli("schedule", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "CRON", "TZ"]
    (row,) = [line for line in table if line.startswith("berlin")]
    assert "Europe/Berlin" in row
    assert local.isoformat(timespec="minutes") in row


def test_an_expired_job_goes_to_the_dlq_instead_of_running(cli: Cli) -> None:
    # one slot, busy for 3 s with a more urgent job: the other one outlives its 1 s ttl
    cli.enqueue({"id": "blocker", "command": "sleep 3", "priority": 5})
    cli.enqueue({"id": "stale", "command": "echo too late", "ttl": 1})
    # on SQLite the worker carries the orchestrator's sweeps; on Postgres run one
    extra = [] if cli.url.startswith("sqlite") else [cli.popen("orchestrator", "run")]
    worker = cli.popen("worker", "start")
    try:
        wait_for(lambda: cli.json("show", "stale", "--json")["state"] == "dead", timeout=20)
    finally:
        for proc in [worker, *extra]:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    shown = cli.json("show", "stale", "--json")
    assert shown["last_error"] == "expired before it ran"
    assert shown["runs"] == []


def test_metrics_move_as_jobs_run(cli: Cli) -> None:
    wport, oport = free_port(), free_port()
    orch = cli.popen("orchestrator", "run", "--metrics-port", str(oport))
    # the orchestrator leads before the worker starts: on SQLite a worker carries a standby
    # orchestrator of its own, which would otherwise win the lease half of the time
    wait_for(lambda: leader_pid(cli.url) == orch.pid, timeout=15)
    worker = cli.popen("worker", "start", "--count", "2", "--metrics-port", str(wport))
    try:
        wait_for(lambda: _up(wport) and _up(oport), timeout=15)
        before = scrape(wport)
        assert before[("queuectl_worker_slots", ())] == 2
        for _ in range(3):
            cli.enqueue({"command": "true", "queue": "mail"})
        cli.enqueue({"command": "exit 3", "queue": "mail", "max_retries": 0})
        done = (("outcome", "succeeded"), ("queue", "mail"))
        scrape_until(wport, "queuectl_jobs_completed_total", done, 3)
        failed = (("outcome", "failed"), ("queue", "mail"))
        after = scrape_until(wport, "queuectl_jobs_completed_total", failed, 1)
        assert after[("queuectl_jobs_claimed_total", (("queue", "mail"),))] >= 3
        assert after[("queuectl_job_run_duration_seconds_count", (("queue", "mail"),))] >= 3
        assert after[("queuectl_claim_duration_seconds_count", ())] > 0
        orch_metrics = scrape_until(oport, "queuectl_orchestrator_leader", (), 1)
        assert orch_metrics[("queuectl_db_up", ())] == 1
        dead = (("queue", "mail"), ("state", "dead"))
        assert orch_metrics[("queuectl_queue_jobs", dead)] == 1
        assert orch_metrics[("queuectl_workers_alive", (("state", "idle"),))] == 2
        labels = {k for (_, ls) in orch_metrics for k, _ in ls} | {
            k for (_, ls) in after for k, _ in ls
        }
        # closed label sets only: never job ids, commands or hostnames
        assert labels <= {
            "queue",
            "state",
            "outcome",
            "sweep",
            "result",
            "operation",
            "le",
            "version",
            "role",
        }
    finally:
        for proc in (worker, orch):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0


def _up(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def test_json_logs_carry_bound_fields_and_no_password(cli: Cli) -> None:
    url = cli.url
    if url.startswith("postgresql://"):
        # trust auth ignores the password, so it can be given and must never be printed
        url = url.replace("postgresql://postgres@", "postgresql://postgres:s3cr3t-pw@")
    secret_cli = Cli(url, cli.cwd)
    secret_cli.enqueue({"id": "j1", "command": "echo out"})
    run = secret_cli("--log-format", "json", "worker", "start", "--burst")
    assert run.returncode == 0
    events = [json.loads(line) for line in run.stderr.splitlines()]
    by_name = {e["event"]: e for e in events}
    assert {
        "process_starting",
        "worker_started",
        "job_claimed",
        "job_finished",
        "worker_stopped",
    } <= set(by_name)
    finished = by_name["job_finished"]
    assert finished["job_id"] == "j1"
    assert finished["queue"] == "default"
    assert finished["worker_id"].endswith("-1")
    assert finished["outcome"] == "succeeded"
    assert finished["duration_s"] >= 0
    assert "s3cr3t-pw" not in run.stderr + run.stdout
    if url != cli.url:
        assert "***" in by_name["process_starting"]["db"]


@pytest.mark.integration
def test_the_standby_orchestrator_takes_over_within_the_lease(pg_url: str, tmp_path: Path) -> None:
    cli = Cli(pg_url, tmp_path)
    ttl = 3.0
    procs = [cli.popen("orchestrator", "run", QUEUECTL_LEADER_TTL=str(ttl)) for _ in range(2)]
    try:
        first = wait_for(lambda: leader_pid(pg_url), timeout=15)
        leader = next(p for p in procs if p.pid == first)
        standby = next(p for p in procs if p.pid != first)
        time.sleep(ttl / 3 + 0.2)  # let the leader renew once more: the worst case for us
        leader.kill()
        leader.wait()
        killed = time.monotonic()
        wait_for(lambda: leader_pid(pg_url) == standby.pid, timeout=3 * ttl, every=0.05)
        takeover = time.monotonic() - killed
        assert takeover <= ttl + 0.5, takeover
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(timeout=15) == 0
        assert leader_pid(pg_url) is None  # released on shutdown, not left to expire
        print(f"failover in {takeover:.2f}s (lease ttl {ttl:g}s)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.integration
def test_notify_wakes_an_idle_worker_within_milliseconds(pg_url: str, tmp_path: Path) -> None:
    cli = Cli(pg_url, tmp_path)
    worker = cli.popen("worker", "start")
    backend = open_backend(pg_url)
    try:
        wait_for(lambda: backend.list_workers(lease_ttl_s=10), timeout=15)
        time.sleep(1.5)  # let the idle poll back off to its longest interval
        latencies = []
        for i in range(50):
            (job,) = backend.enqueue([models.JobSpec(command="true", id=f"w{i}")])

            def started(job_id: str = job.id) -> datetime | None:
                return backend.get_job(job_id).started_at

            at = wait_for(started, timeout=10, every=0.005)
            latencies.append((at - job.created_at).total_seconds())
            time.sleep(0.05)
    finally:
        backend.close()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    p50 = statistics.median(latencies)
    print(f"enqueue->start p50 {p50 * 1000:.1f} ms")
    assert p50 < 0.05  # polling alone would be ~500 ms here
