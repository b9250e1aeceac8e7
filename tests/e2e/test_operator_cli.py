"""The operator's CLI (issue 18), on both backends: batches and --json shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e


def states(cli: Cli) -> dict[str, str]:
    return {j["id"]: j["state"] for j in cli.json("list", "--json")}


def test_cancel_and_retry_take_several_ids_all_or_none_and_print_one_array(cli: Cli) -> None:
    for job_id in ("a", "b"):
        cli.enqueue({"id": job_id, "command": "true"})
    cli.enqueue({"id": "c", "command": "true", "after": ["b"]})
    cancelled = cli.json("cancel", "a", "b", "--json")
    assert [(j["id"], j["state"]) for j in cancelled] == [("a", "cancelled"), ("b", "cancelled")]
    assert states(cli)["c"] == "cancelled"  # b's dependent, with it
    cli.enqueue({"id": "d", "command": "true"})
    refused = cli("cancel", "d", "a")  # a is cancelled already: nothing changes
    assert refused.returncode == 4 and refused.stderr.startswith("error: cannot cancel job 'a'")
    assert states(cli)["d"] == "pending"
    retried = cli("retry", "a", "b", "--json")
    assert retried.returncode == 0, retried.stderr
    doc = json.loads(retried.stdout)  # one document, not one per job
    assert [(j["id"], j["state"]) for j in doc] == [("a", "pending"), ("b", "pending")]
    text = cli("cancel", "a", "b")
    assert text.stdout.splitlines() == ["cancelled a", "cancelled b"]


def test_failed_attempts_log_at_warning_level_and_successes_at_info(cli: Cli) -> None:
    cli.enqueue({"id": "bad", "command": "exit 3", "max_retries": 0})
    cli.enqueue({"id": "good", "command": "true"})
    run = cli("--log-format", "json", "--log-level", "warning", "worker", "start", "--burst")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines()]
    finished = [(e["job_id"], e["level"]) for e in events if e["event"] == "job_finished"]
    assert finished == [("bad", "warning")]  # the success is info: below the level


def test_a_db_value_that_is_neither_url_nor_path_is_refused_and_creates_nothing(
    cli: Cli,
) -> None:
    result = cli("--db", "10.255.255.1", "status")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --db '10.255.255.1' is neither a database URL")
    assert not (cli.cwd / "10.255.255.1").exists()
    ok = cli("--db", "./q.db", "status", "--json")
    assert ok.returncode == 0, ok.stderr
    assert (cli.cwd / "q.db").exists()


def test_dashboard_says_its_url_and_a_port_in_use_is_one_error_line(cli: Cli) -> None:
    import socket
    import urllib.request

    from tests.e2e.test_orchestrator_cli import free_port
    from tests.e2e.waiting import terminate_all, wait_for

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    refused = cli("dashboard", "--port", str(taken))
    busy.close()
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == (
        f"error: port {taken} on 127.0.0.1 is in use (another dashboard?): pick one with --port\n"
    )
    port = free_port()
    served = cli.popen("dashboard", "--port", str(port))
    try:
        wait_for(lambda: f"http://127.0.0.1:{port}/" in cli.log(served), timeout=20)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            assert reply.status == 200
    finally:
        terminate_all([served], timeout=10)


def test_worker_stop_counts_processes_and_slots_and_names_the_jobs_it_waits_for(
    cli: Cli, tmp_path: Path
) -> None:
    from tests.e2e.waiting import terminate_all, wait_for

    go = tmp_path / "go"
    cli.enqueue({"id": "held", "command": f"while [ ! -e {go} ]; do sleep 0.05; done"})
    worker = cli.popen("worker", "start", "--count", "4")
    try:
        wait_for(lambda: cli.json("show", "held", "--json")["state"] == "processing", timeout=15)
        stop = cli.popen("worker", "stop", "--timeout", "30")
        try:
            wait_for(lambda: "waiting for 1 job: held" in cli.log(stop), timeout=15)
        except AssertionError as exc:  # what it said instead, and what the worker did
            raise AssertionError(
                f"{exc}\nstop: {cli.log(stop)}\nworker: {cli.log(worker)}"
            ) from None
        assert "asked 1 worker process (4 slots) to stop" in cli.log(stop)
        go.touch()
        assert stop.wait(timeout=30) == 0, cli.log(stop)
        assert worker.wait(timeout=15) == 0
    finally:
        terminate_all([worker], timeout=10)


def test_config_list_shows_durations_as_people_write_them_and_json_keeps_seconds(
    cli: Cli,
) -> None:
    assert (
        cli("config", "set", "retention-completed", "14d").stdout == "retention-completed = 14d\n"
    )
    table = {line.split()[0]: line.split()[1] for line in cli("config", "list").stdout.splitlines()}
    assert (table["retention-completed"], table["retention-dead"]) == ("14d", "30d")
    assert (table["backoff-max"], table["job-timeout"], table["max-retries"]) == ("1h", "none", "3")
    assert cli.json("config", "list", "--json")["retention-completed"] == "1209600"
    assert cli("config", "get", "retention-completed").stdout == "1209600\n"


def dead_jobs(cli: Cli, *queues: str) -> None:
    for i, queue in enumerate(queues):
        cli.enqueue({"id": f"d{i}", "command": "exit 1", "queue": queue, "max_retries": 0})
    run = cli("worker", "start", "--burst")
    assert run.returncode == 0, run.stderr


def test_dlq_purge_filters_by_queue_and_age_and_never_asks_a_pipe(cli: Cli) -> None:
    dead_jobs(cli, "mail", "mail", "api")
    assert cli.json("dlq", "purge", "--older-than", "1h", "--json") == {"purged": 0}
    assert cli.json("dlq", "purge", "--queue", "mail", "--json") == {"purged": 2}
    assert [j["id"] for j in cli.json("dlq", "list", "--json")] == ["d2"]
    bad = cli("dlq", "purge", "--older-than", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    assert cli.json("dlq", "purge", "--json") == {"purged": 1}


def on_a_terminal(cli: Cli, answer: bytes, *args: str, **env: str) -> tuple[int, str]:
    """`queuectl ARGS` with stdin, stdout and stderr on a pseudo-terminal (as a person
    runs it), `answer` typed in; its exit code and everything it wrote."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuectl", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli.env(**env),
        cwd=cli.cwd,
    )
    os.close(follower)
    os.write(leader, answer)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_dlq_purge_asks_on_a_terminal(cli: Cli) -> None:
    dead_jobs(cli, "mail")
    code, text = on_a_terminal(cli, b"n\n", "dlq", "purge")
    assert code == 1, text
    assert "delete 1 dead jobs and their attempts? [y/N]" in text
    assert "purge cancelled: nothing deleted" in text
    assert len(cli.json("dlq", "list", "--json")) == 1
    code, text = on_a_terminal(cli, b"", "dlq", "purge", "--yes")
    assert code == 0 and "purged 1 dead jobs" in text and "[y/N]" not in text


def test_bulk_enqueue_can_print_ids_only_or_nothing(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.ndjson"
    path.write_text(
        "".join(json.dumps({"id": f"b{i}", "command": "true"}) + "\n" for i in range(3))
    )
    ids = cli("enqueue", "--file", str(path), "--ids")
    assert (ids.returncode, ids.stdout) == (0, "b0\nb1\nb2\n")
    path.write_text(json.dumps({"command": "true"}) + "\n")
    quiet = cli("enqueue", "--file", str(path), "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "enqueued 1 jobs\n")
    one = cli("enqueue", "-c", "true", "--id", "solo", "--ids")
    assert one.stdout == "solo\n"


def test_status_names_the_database_it_reads(cli: Cli) -> None:
    shown = cli.json("status", "--json")["database"]
    if cli.url.startswith("sqlite:///"):
        assert shown == str(Path(cli.url.removeprefix("sqlite:///")).resolve())
        local = cli("--db", "./here.db", "status")
        assert local.stdout.splitlines()[-1] == f"database: {cli.cwd.resolve() / 'here.db'}"
        return
    assert shown == cli.url
    # trust auth ignores the password: it only has to stay out of the output
    secret = cli.url.replace("postgres@", "postgres:s3cret-pw@", 1)
    text = cli("--db", secret, "status")
    assert text.returncode == 0, text.stderr
    assert "s3cret-pw" not in text.stdout
    assert text.stdout.splitlines()[-1] == f"database: {secret.replace('s3cret-pw', '***')}"


def test_a_burst_worker_says_what_it_waits_for_and_until_when(cli: Cli) -> None:
    from tests.e2e.waiting import terminate_all, wait_for

    cli("config", "set", "backoff-base", "600")
    cli.enqueue({"id": "flaky", "command": "exit 1", "max_retries": 1})
    worker = cli.popen("--log-format", "json", "worker", "start", "--burst")
    try:
        line = wait_for(
            lambda: next((x for x in cli.log(worker).splitlines() if "burst_waiting" in x), None),
            timeout=30,
        )
    finally:
        terminate_all([worker], timeout=20)
    event = json.loads(line)
    assert event["jobs"] == 1
    assert event["due_in"].startswith(("9m", "10m"))  # the 600 s backoff, give or take jitter
    retry_at = cli.json("show", "flaky", "--json")["run_at"]
    assert event["next_due"] == retry_at


def test_logs_follow_says_what_it_waits_for(cli: Cli) -> None:
    from tests.e2e.waiting import terminate_all, wait_for

    cli.enqueue({"id": "later", "command": "echo hi", "run_at": "2099-01-01T00:00:00Z"})
    once = cli("logs", "later")
    assert once.returncode == 0
    assert once.stderr.startswith(
        "no attempt yet: job later is pending, due 2099-01-01T00:00:00.000Z (in "
    )
    cli.enqueue({"id": "first", "command": "true"})
    cli.enqueue({"id": "second", "command": "echo hi", "after": ["first"]})
    follow = cli.popen("logs", "-f", "second")
    try:
        wait_for(
            lambda: (
                "waiting: job second is blocked until its dependencies complete" in cli.log(follow)
            ),
            timeout=20,
        )
        cli("worker", "start", "--burst")  # first completes, then second runs: hi
        assert follow.wait(timeout=20) == 0
    finally:
        terminate_all([follow], timeout=10)
    assert "hi" in cli.log(follow).splitlines()


def test_run_at_without_a_zone_is_local_time_and_says_so(cli: Cli) -> None:
    typed = cli("enqueue", "-c", "true", "--run-at", "2030-07-01 09:00", TZ="Europe/Berlin")
    assert typed.returncode == 0, typed.stderr
    assert json.loads(typed.stdout)["run_at"] == "2030-07-01T07:00:00.000Z"  # CEST, +02:00
    assert typed.stderr == (
        "--run-at has no zone: read as local time 2030-07-01 09:00:00+02:00 (CEST),"
        " 2030-07-01T07:00:00.000Z\n"
    )
    zoned = cli("enqueue", "-c", "true", "--run-at", "2030-07-01T09:00Z", TZ="Europe/Berlin")
    assert (json.loads(zoned.stdout)["run_at"], zoned.stderr) == ("2030-07-01T09:00:00.000Z", "")
    bad = cli("enqueue", "-c", "true", "--run-at", "tomorrow 9am")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: --run-at: 'tomorrow 9am' is not a time")
    assert len(cli.json("list", "--json")) == 2


def test_tables_fit_the_terminal_and_colour_states_but_a_pipe_gets_plain_text(cli: Cli) -> None:
    long = "echo " + "x" * 45
    cli.enqueue({"id": "ok", "command": long})
    cli.enqueue({"id": "bad", "command": "exit 3", "max_retries": 0})
    cli("worker", "start", "--burst")
    code, text = on_a_terminal(cli, b"", "list", COLUMNS="64", TERM="xterm")
    assert code == 0, text
    rows = {line.split()[0]: line for line in text.splitlines()}
    assert "\x1b[32mcompleted\x1b[0m" in rows["ok"] and "\x1b[31mdead\x1b[0m" in rows["bad"]
    assert rows["ok"].endswith("…") and long not in text
    assert len(rows["ok"].replace("\x1b[32m", "").replace("\x1b[0m", "")) <= 64
    code, plain = on_a_terminal(cli, b"", "list", COLUMNS="64", NO_COLOR="1")
    assert "\x1b[" not in plain and "completed" in plain
    piped = cli("list", COLUMNS="64")
    assert "\x1b[" not in piped.stdout and long in piped.stdout
