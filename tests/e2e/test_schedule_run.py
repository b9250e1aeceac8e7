"""`schedule run NAME` and what a worker process reports for the dashboard's workers page (jobs
done per slot, resident memory), through the real CLI on both backends."""

from __future__ import annotations

import re
import signal

import pytest

from tests.conftest import Cli
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_schedule_run_enqueues_the_job_now_and_leaves_the_slots_alone(cli: Cli) -> None:
    added = cli(
        "schedule",
        "add",
        "report",
        "--cron",
        "0 3 * * *",
        "-c",
        "echo report",
        "--queue",
        "ops",
        "--priority",
        "4",
        "--max-retries",
        "1",
        "--tz",
        "Europe/Berlin",
    )
    assert added.returncode == 0, added.stderr
    assert cli("schedule", "pause", "report").returncode == 0  # paused: run now still runs
    job = cli.json("schedule", "run", "report", "--json")
    assert re.fullmatch(r"report:now-[0-9a-z]{16}", job["id"])
    assert (job["command"], job["queue"], job["priority"], job["max_retries"]) == (
        "echo report",
        "ops",
        4,
        1,
    )
    assert job["state"] == "pending"
    assert cli.json("show", job["id"], "--json")["id"] == job["id"]
    text = cli("schedule", "run", "report")
    assert text.returncode == 0
    assert re.fullmatch(r"enqueued job report:now-[0-9a-z]{16} from schedule report\n", text.stdout)
    (listed,) = cli.json("schedule", "list", "--json")
    assert (listed["last_slot"], listed["fired"], listed["paused"]) == (None, 0, True)
    assert len(cli.json("list", "--json")) == 2


def test_schedule_run_of_an_unknown_name_is_exit_3_and_enqueues_nothing(cli: Cli) -> None:
    result = cli("schedule", "run", "nope", "--json")
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == "error: no schedule named 'nope'\n"
    assert cli.json("list", "--json") == []


def test_a_schedule_outside_allowed_commands_is_not_run(cli: Cli) -> None:
    assert cli("schedule", "add", "rm", "--cron", "@daily", "-c", "rm -rf /tmp/x").returncode == 0
    assert cli("config", "set", "allowed-commands", '["echo *"]').returncode == 0
    result = cli("schedule", "run", "rm")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr[-1] == "\n"
    assert result.stderr.count("\n") == 1
    assert cli.json("list", "--json") == []


def test_a_worker_reports_jobs_done_per_slot_and_its_memory(cli: Cli) -> None:
    for i in range(3):
        cli.enqueue({"id": f"j{i}", "command": "true"})
    worker = cli.popen("worker", "start", "--count", "2", QUEUECTL_HEARTBEAT="0.5")
    try:

        def reported() -> list[dict[str, object]] | None:
            slots = cli.json("worker", "list", "--json")
            done = sum(int(s["jobs_done"] or 0) for s in slots)
            return slots if len(slots) == 2 and done == 3 else None

        slots = wait_for(reported, timeout=30)
        assert {s["pid"] for s in slots} == {worker.pid}
        rss = {s["rss_bytes"] for s in slots}
        assert len(rss) == 1  # one process, one figure on every slot
        (value,) = rss
        assert isinstance(value, int) and 5 * 2**20 < value < 2**31  # a Python process
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0, cli.log(worker)
