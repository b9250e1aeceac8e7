"""DESIGN §8 from the terminal, on both backends: `queue`, `enqueue --after/--unique-key`,
`wait`, blocked jobs in `status`/`list`/`show`, with real workers where jobs must run."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.waiting import terminate_all, wait_for

pytestmark = pytest.mark.e2e


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ids(cli: Cli) -> list[str]:
    return sorted(j["id"] for j in cli.json("list", "--json"))


def test_queue_commands_pause_limit_and_list(cli: Cli) -> None:
    assert cli.json("queue", "list", "--json") == []
    paused = cli.json("queue", "pause", "mail", "--json")
    assert paused == [{"name": "mail", "paused": True, "concurrency": None, "rate": None}]
    assert cli("queue", "pause", "mail").returncode == 0  # idempotent
    cli.json("queue", "set", "api", "--concurrency", "3", "--rate", "100/1m", "--json")
    cli.enqueue({"command": "true", "queue": "api"})
    listed = {q["name"]: q for q in cli.json("queue", "list", "--json")}
    assert listed["mail"]["paused"] is True
    assert (listed["api"]["concurrency"], listed["api"]["rate"]) == (3, "100/1m")
    assert listed["api"]["jobs"]["pending"] == 1
    assert listed["api"]["oldest_due_age_s"] >= 0
    table = cli("queue", "list").stdout
    assert "paused" in table and "0/3" in table and "100/1m" in table
    resumed = cli("queue", "resume", "mail", "never-seen")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed mail: active" in resumed.stdout
    cli.json("queue", "set", "api", "--concurrency", "none", "--rate", "none", "--json")
    assert [q["name"] for q in cli.json("queue", "list", "--json")] == ["api"]  # it has a job


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("queue", "set", "api", "--concurrency", "-1"), 2, "concurrency"),
        (("queue", "set", "api", "--rate", "0/1m"), 2, "rate"),
        (("queue", "set", "api", "--rate", "5/potato"), 2, "potato"),
        (("queue", "set", "api"), 2, "give a limit"),
        (("queue", "pause", "bad queue"), 2, "queue name"),
        (("enqueue", "-c", "true", "--after", "nope"), 3, "nope"),
        (("enqueue", "-c", "true", "--id", "me", "--after", "me"), 2, "itself"),
        (("enqueue", "-c", "true", "--unique-for", "1h"), 2, "--unique-key"),
        (("enqueue", "-c", "true", "--unique-key", "k", "--unique-for", "soon"), 2, "duration"),
        (("enqueue", '{"command": "true", "after": 5}'), 2, "after"),
        (("wait", "nope"), 3, "nope"),
        (("wait", "x", "--timeout", "later"), 2, "timeout"),
    ],
)
def test_bad_flow_input_is_one_line_and_the_documented_exit_code(
    cli: Cli, args: tuple[str, ...], code: int, says: str
) -> None:
    cli.enqueue({"id": "x", "command": "true"})
    result = cli(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert ids(cli) == ["x"]  # nothing inserted
    assert cli.json("queue", "list", "--json")[0]["paused"] is False
    assert cli.json("queue", "list", "--json")[0]["concurrency"] is None


def test_unique_key_prints_the_existing_job_and_says_so(cli: Cli) -> None:
    first = cli.json("enqueue", "-c", "echo 1", "--unique-key", "nightly")
    again = cli("enqueue", "-c", "echo 2", "--unique-key", "nightly")
    assert again.returncode == 0
    assert json.loads(again.stdout)["id"] == first["id"]
    assert json.loads(again.stdout)["unique_key"] == "nightly"
    assert again.stderr.count("\n") == 1 and "already holds unique key" in again.stderr
    assert ids(cli) == [first["id"]]


def test_blocked_jobs_in_status_list_show_and_bulk_files(cli: Cli, tmp_path: Path) -> None:
    lines = [
        {"id": "build", "command": "true"},
        {"id": "test", "command": "true", "after": ["build"]},
        {"id": "ship", "command": "true", "after": ["build", "test"], "unique_key": "ship"},
    ]
    path = tmp_path / "jobs.ndjson"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = cli("enqueue", "--file", str(path))
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(j["id"], j["state"]) for j in printed] == [
        ("build", "pending"),
        ("test", "blocked"),
        ("ship", "blocked"),
    ]
    assert cli.json("status", "--json")["jobs"]["blocked"] == 2
    assert [j["id"] for j in cli.json("list", "--state", "blocked", "--json")] == ["ship", "test"]
    shown = cli.json("show", "ship", "--json")
    assert shown["after"] == [
        {"id": "build", "state": "pending"},
        {"id": "test", "state": "blocked"},
    ]
    assert cli.json("show", "build", "--json")["dependents"] == [
        {"id": "ship", "state": "blocked"},
        {"id": "test", "state": "blocked"},
    ]
    assert "after" in cli("show", "ship").stdout
    # a later line cannot be named: the whole file is refused
    path.write_text(
        json.dumps({"id": "p", "command": "true", "after": ["r"]})
        + "\n"
        + json.dumps({"id": "r", "command": "true"})
        + "\n"
    )
    refused = cli("enqueue", "--file", str(path))
    assert refused.returncode == 2 and "later one" in refused.stderr
    assert ids(cli) == ["build", "ship", "test"]


def test_dependents_run_promptly_and_wait_reports_how_jobs_ended(cli: Cli) -> None:
    cli.enqueue({"id": "a", "command": "sleep 0.3"})
    cli.enqueue({"id": "b", "command": "true"}, "--after", "a")
    cli.enqueue({"id": "c", "command": "exit 3", "max_retries": 0})
    cli.enqueue({"id": "d", "command": "true"}, "--after", "c")
    worker = cli.popen("worker", "start", "--count", "2")
    try:
        started = time.monotonic()
        done = cli("wait", "a", "b", "--timeout", "60s", "--json")
        assert done.returncode == 0, done.stderr
        assert [j["state"] for j in json.loads(done.stdout)] == ["completed", "completed"]
        waited = time.monotonic() - started
        failed = cli("wait", "c", "d", "--timeout", "60s")
        assert failed.returncode == 1, failed.stderr
        assert "c  dead" in failed.stdout and "d  cancelled" in failed.stdout
        assert failed.stderr.startswith("error: 2 of 2 jobs did not complete")
        a, b = cli.json("show", "a", "--json"), cli.json("show", "b", "--json")
        # b became pending when a completed and was claimed within the pickup latency (no
        # sweep period): a wake-up on Postgres, the commit watch on SQLite
        gap = (ts(b["started_at"]) - ts(a["finished_at"])).total_seconds()
        assert 0 <= gap < 0.5, gap
        assert cli.json("show", "d", "--json")["last_error"] == "dependency c dead"
        assert waited < 30
        cli.enqueue({"id": "slow", "command": "sleep 30"})
        wait_for(lambda: cli.json("show", "slow", "--json")["state"] == "processing", timeout=15)
        timed_out = cli("wait", "slow", "--timeout", "0.5s")
        assert timed_out.returncode == 124
        assert timed_out.stderr.startswith("error: timed out waiting for 1 of 1 jobs")
        cli("cancel", "slow")
    finally:
        terminate_all([worker], timeout=20)
