"""queuectl.Client, the public Python API (DESIGN.md §8), on both backends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from queuectl import Client, errors, models
from queuectl.backends import open_backend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "client_example.py"


@pytest.fixture
def q(db_url: str) -> Iterator[Client]:
    with Client(db_url) as client:
        yield client


def worker(url: str, *args: str) -> subprocess.Popen[bytes]:
    """A real `worker start` process against the same database."""
    return subprocess.Popen(
        [sys.executable, "-m", "queuectl", "worker", "start", *args],
        env={**os.environ, "QUEUECTL_DATABASE_URL": url, "QUEUECTL_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stored_ids(url: str) -> set[str]:
    """What the database holds, read without the Client."""
    backend = open_backend(url)
    try:
        return {job.id for job in backend.list_jobs(limit=10_000)}
    finally:
        backend.close()


# --- enqueue, get, list ---------------------------------------------------------------------


def test_enqueue_returns_the_job_as_stored_and_get_and_list_find_it(q: Client) -> None:
    before = datetime.now(UTC)
    job = q.enqueue("echo hi", id="a", queue="mail", priority=5, delay="5m", max_retries=1)
    assert (job.id, job.command, job.state, job.queue) == ("a", "echo hi", "pending", "mail")
    assert (job.priority, job.max_retries, job.attempts) == (5, 1, 0)
    assert before + timedelta(minutes=5) <= job.run_at <= datetime.now(UTC) + timedelta(minutes=5)
    assert q.get("a") == job
    assert q.list() == [job]
    assert q.list(queue="mail", state="pending") == [job]
    assert q.list(state=models.JobState.PENDING, search="echo") == [job]
    assert q.list(queue="other") == []
    assert q.list(state="DEAD") == []  # states are case-blind, as in `list --state`


def test_defaults_come_from_the_database_policy(q: Client) -> None:
    assert q.config_set("max-retries", 7) == "7"
    assert q.config_set("job-timeout", timedelta(minutes=2)) == "120"
    job = q.enqueue("true")
    assert (job.max_retries, job.timeout_s) == (7, 120.0)
    assert re.fullmatch(r"[A-Za-z0-9._:-]+", job.id)
    assert q.config_get("max-retries") == "7"
    entries = {e.key: (e.value, e.source) for e in q.config_list()}
    assert entries["max-retries"] == ("7", "database")
    assert entries["backoff-base"] == ("2", "default")


@pytest.mark.parametrize("timeout", [90, 90.0, "90s", "1.5m", timedelta(seconds=90)])
def test_a_duration_is_seconds_a_timedelta_or_text(q: Client, timeout: object) -> None:
    assert q.enqueue("true", timeout=timeout).timeout_s == 90.0  # type: ignore[arg-type]


def test_timeout_zero_means_no_limit_even_under_a_configured_default(q: Client) -> None:
    q.config_set("job-timeout", "10m")
    assert q.enqueue("true", timeout=0).timeout_s in (0.0, None)
    assert q.enqueue("true").timeout_s == 600.0


def test_run_at_is_a_datetime_naive_meaning_utc_or_text(q: Client) -> None:
    at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert q.enqueue("true", run_at=at).run_at == at
    assert q.enqueue("true", run_at=at.replace(tzinfo=None)).run_at == at
    assert q.enqueue("true", run_at="2031-01-02T03:04:05Z").run_at == at


def test_a_job_can_be_a_json_shaped_dict_or_a_jobspec_and_arguments_override_it(
    q: Client,
) -> None:
    job = q.enqueue({"command": "echo hi", "queue": "mail", "priority": 3}, priority=9)
    assert (job.command, job.queue, job.priority) == ("echo hi", "mail", 9)
    job = q.enqueue(models.JobSpec(command="true", id="spec", max_retries=2), queue="q2")
    assert (job.id, job.queue, job.max_retries) == ("spec", "q2", 2)


def test_ttl_dead_letters_a_job_not_started_in_time(q: Client) -> None:
    job = q.enqueue("true", run_at="2031-01-01T00:00:00Z", ttl="1h")
    assert job.expires_at == datetime(2031, 1, 1, 1, tzinfo=UTC)


def test_enqueue_many_inserts_every_job_in_order(q: Client) -> None:
    jobs = q.enqueue_many(
        [
            {"command": "echo 1", "id": "one"},
            models.JobSpec(command="echo 2", id="two", queue="other"),
            "echo 3",
        ]
    )
    assert [j.command for j in jobs] == ["echo 1", "echo 2", "echo 3"]
    assert [j.id for j in jobs][:2] == ["one", "two"]
    assert {j.id for j in q.list()} == {j.id for j in jobs}
    assert q.enqueue_many([]) == []


def test_enqueue_bulk_returns_the_rows_it_inserted(q: Client) -> None:
    batch = q.enqueue_bulk([{"command": f"echo {i}", "id": f"b{i}"} for i in range(50)])
    assert [row[0] for row in batch.rows] == [f"b{i}" for i in range(50)]
    assert len(q.list(limit=1000)) == 50


# --- bad input raises before anything is written ---------------------------------------------


BAD_ENQUEUES: list[tuple[object, dict[str, object], str]] = [
    ("", {}, '"command" must be a non-empty string'),
    ("a\x00b", {}, "NUL"),
    ("x" * (64 * 1024 + 1), {}, "the limit is 65536"),
    ("true", {"id": "no spaces"}, "bad job id"),
    ("true", {"queue": ""}, "bad queue name"),
    ("true", {"priority": True}, "priority must be a whole number"),
    ("true", {"priority": 2**31}, "priority must be between"),
    ("true", {"max_retries": -1}, "max_retries must be between"),
    ("true", {"delay": "soon"}, "delay: 'soon' is not a duration"),
    ("true", {"delay": -5}, "delay must not be negative"),
    ("true", {"delay": 5, "run_at": "2031-01-01T00:00:00Z"}, "give delay or run_at, not both"),
    ("true", {"run_at": "tomorrow"}, "run_at: 'tomorrow' is not a time"),
    ("true", {"run_at": 1234}, "run_at must be a datetime"),
    ("true", {"timeout": float("inf")}, "timeout must be a finite number"),
    ("true", {"ttl": 0}, "ttl must be longer than 0s"),
    ({"command": "true", "colour": "blue"}, {}, "unknown field 'colour'"),
    ({"queue": "x"}, {}, 'missing required field "command"'),
    (models.JobSpec(command="true", queue="a b"), {}, "bad queue name"),
    (models.JobSpec(command="true", timeout_s=-1), {}, "timeout must not be negative"),
    (42, {}, "a job must be a JobSpec or a dict"),
]


@pytest.mark.parametrize(("job", "kwargs", "message"), BAD_ENQUEUES)
def test_bad_input_is_a_usage_error_and_inserts_nothing(
    q: Client, db_url: str, job: object, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(errors.UsageError, match=re.escape(message)) as info:
        q.enqueue(job, **kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    assert stored_ids(db_url) == set()


def test_one_bad_job_in_enqueue_many_names_it_and_inserts_none(q: Client, db_url: str) -> None:
    with pytest.raises(errors.UsageError, match=r"^job 2: bad queue name"):
        q.enqueue_many([{"command": "true"}, {"command": "true", "queue": "a b"}])
    q.enqueue("true", id="taken")
    with pytest.raises(errors.DuplicateJob) as info:
        q.enqueue_many([{"command": "true", "id": "new"}, {"command": "true", "id": "taken"}])
    assert info.value.exit_code == 4
    assert stored_ids(db_url) == {"taken"}


def test_a_duplicate_id_is_a_conflict(q: Client) -> None:
    q.enqueue("true", id="dup")
    with pytest.raises(errors.DuplicateJob):
        q.enqueue("false", id="dup")
    assert q.get("dup").command == "true"


def test_allowed_commands_refuse_before_inserting(q: Client, db_url: str) -> None:
    q.config_set("allowed-commands", ["echo *"])
    assert q.enqueue("echo fine").command == "echo fine"
    with pytest.raises(errors.UsageError, match="not allowed by allowed-commands"):
        q.enqueue("rm -rf /tmp/x")
    with pytest.raises(errors.UsageError, match=r"^job 2 of the input: command not allowed"):
        q.enqueue_many(["echo a", "echo b; rm -rf ~"])
    with pytest.raises(errors.UsageError, match="not allowed"):
        q.add_schedule("nightly", cron="0 3 * * *", command="reboot")
    assert q.schedules() == []
    assert len(stored_ids(db_url)) == 1


def test_unknown_ids_states_and_keys(q: Client) -> None:
    with pytest.raises(errors.JobNotFound) as info:
        q.get("nope")
    assert info.value.exit_code == 3
    for call in (lambda: q.cancel("nope"), lambda: q.retry("nope"), lambda: q.logs("nope")):
        with pytest.raises(errors.NotFound):
            call()
    with pytest.raises(errors.UsageError, match="unknown state 'done' \\(one of: pending"):
        q.list(state="done")
    with pytest.raises(errors.UsageError, match="limit must be"):
        q.list(limit=0)
    with pytest.raises(errors.UsageError, match="unknown config key 'retries'"):
        q.config_set("retries", 3)
    with pytest.raises(errors.UsageError, match="bad value for max-retries"):
        q.config_set("max-retries", -1)
    assert q.config_get("max-retries") == "3"


# --- cancel, retry, the DLQ ------------------------------------------------------------------


def test_cancel_then_retry(q: Client) -> None:
    q.enqueue("true", id="c")
    assert q.cancel("c").state is models.JobState.CANCELLED
    with pytest.raises(errors.InvalidTransition) as info:
        q.cancel("c")
    assert info.value.exit_code == 4
    job = q.retry("c")
    assert (job.state, job.attempts) == (models.JobState.PENDING, 0)
    with pytest.raises(errors.InvalidTransition):
        q.retry("c")  # pending: nothing to retry
    q.enqueue("true", id="d")
    q.cancel("d")
    with pytest.raises(errors.InvalidTransition):
        q.retry_many(["d", "c"])  # all or nothing
    assert q.get("d").state is models.JobState.CANCELLED


# --- wait and logs, with a real worker --------------------------------------------------------


def test_wait_returns_once_a_worker_has_finished_every_job(q: Client, db_url: str) -> None:
    q.enqueue("echo out; echo err >&2", id="ok")
    q.enqueue("echo no; exit 3", id="bad", max_retries=0)
    proc = worker(db_url, "--burst")
    try:
        jobs = q.wait(["bad", "ok"], timeout=60)
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert [(j.id, j.state, j.exit_code) for j in jobs] == [
        ("bad", models.JobState.DEAD, 3),
        ("ok", models.JobState.COMPLETED, 0),
    ]
    assert q.wait("ok") == [jobs[1]]  # already finished: at once
    assert sorted(q.logs("ok").splitlines()) == ["err", "out"]
    assert q.logs("bad", attempt=1) == q.logs("bad") == "no\n"
    with pytest.raises(errors.NotFound, match="has 1 attempts, no attempt 2"):
        q.logs("bad", attempt=2)
    assert [j.id for j in q.dlq()] == ["bad"]
    assert q.status().dlq == 1
    assert q.stats("1h")["all"]["finished"] == 2
    assert q.dlq_retry(["bad"])[0].state is models.JobState.PENDING
    assert q.dlq_purge() == 0


def test_wait_times_out_with_the_unfinished_ids(q: Client) -> None:
    q.enqueue("true", id="later", delay="1h")
    q.enqueue("true", id="gone")
    q.cancel("gone")
    started = time.monotonic()
    with pytest.raises(errors.WaitTimeout) as info:
        q.wait(["gone", "later"], timeout=timedelta(milliseconds=300))
    assert 0.25 <= time.monotonic() - started < 5
    assert info.value.unfinished == ["later"]
    assert info.value.exit_code == 124
    assert "1 of 2 jobs (later)" in str(info.value)


def test_wait_on_an_unknown_id_fails_at_once(q: Client) -> None:
    with pytest.raises(errors.JobNotFound):
        q.wait(["nope"], timeout=30)
    with pytest.raises(errors.UsageError):
        q.wait([], timeout=1)


def test_logs_of_a_job_that_has_not_run_are_empty(q: Client) -> None:
    q.enqueue("true", id="p")
    assert q.logs("p") == ""
    assert q.run("p") is None
    assert q.runs("p") == []


# --- schedules --------------------------------------------------------------------------------


def test_schedules(q: Client) -> None:
    made = q.add_schedule("nightly", cron="0 3 * * *", command="echo hi", queue="mail")
    assert (made.name, made.queue, made.command) == ("nightly", "mail", "echo hi")
    with pytest.raises(errors.DuplicateSchedule):
        q.add_schedule("nightly", cron="0 4 * * *", command="true")
    with pytest.raises(errors.UsageError, match="cron"):
        q.add_schedule("bad", cron="every day", command="true")
    with pytest.raises(errors.UsageError, match="longer than 64"):
        q.add_schedule("n" * 65, cron="@daily", command="true")
    assert q.next_slot(made, datetime(2031, 1, 1, tzinfo=UTC)) == datetime(
        2031, 1, 1, 3, tzinfo=UTC
    )
    assert q.pause_schedule("nightly").paused
    assert q.next_slot(q.schedules()[0]) is None
    assert not q.resume_schedule("nightly").paused
    q.remove_schedule("nightly")
    with pytest.raises(errors.NotFound):
        q.remove_schedule("nightly")
    assert q.schedules() == []


def test_schedules_in_a_time_zone(q: Client) -> None:
    made = q.add_schedule("berlin", cron="30 2 * * *", command="true", tz="Europe/Berlin")
    assert (made.tz, q.add_schedule("utc", cron="@daily", command="true").tz) == (
        "Europe/Berlin",
        "UTC",
    )
    with pytest.raises(errors.UsageError, match="unknown time zone 'Europe/Berln'"):
        q.add_schedule("typo", cron="@daily", command="true", tz="Europe/Berln")
    assert sorted(s.name for s in q.schedules()) == ["berlin", "utc"]
    # 02:30 in Berlin: 01:30 UTC in winter, 00:30 in summer, 01:00 (03:00 CEST) on the skip
    for after, slot in [
        (datetime(2031, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, 1, 30, tzinfo=UTC)),
        (datetime(2031, 7, 1, tzinfo=UTC), datetime(2031, 7, 1, 0, 30, tzinfo=UTC)),
        (datetime(2031, 3, 30, tzinfo=UTC), datetime(2031, 3, 30, 1, 0, tzinfo=UTC)),
    ]:
        assert q.next_slot(made, after) == slot


# --- which database, and the client's life ----------------------------------------------------


def test_client_without_a_url_resolves_the_database_like_the_cli(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUEUECTL_DATABASE_URL", db_url)
    with Client() as client:
        assert client.settings.database_url == db_url
        client.enqueue("true", id="via-env")
    assert stored_ids(db_url) == {"via-env"}
    # what the CLI sees, too
    done = subprocess.run(
        [sys.executable, "-m", "queuectl", "show", "via-env", "--json"],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert '"id": "via-env"' in done.stdout


def test_client_without_a_url_or_env_uses_the_config_file_then_the_default(
    tmp_path: Path,
) -> None:
    # conftest clears QUEUECTL_* and points XDG_DATA_HOME into tmp_path; cwd is tmp_path
    with Client() as client:
        client.enqueue("true", id="default")
    assert (tmp_path / "xdg" / "queuectl" / "queuectl.db").exists()
    (tmp_path / "queuectl.toml").write_text(f'database-url = "sqlite:///{tmp_path}/from.db"\n')
    with Client() as client:
        assert client.settings.database_url == f"sqlite:///{tmp_path}/from.db"
        assert client.list() == []
    # an explicit url wins over both, as --db does
    with Client(f"sqlite:///{tmp_path}/flag.db") as client:
        assert client.settings.database_url.endswith("/flag.db")


def test_a_bad_url_is_a_usage_error_on_first_use() -> None:
    client = Client("mysql://x/y")
    with pytest.raises(errors.UsageError, match="unsupported database URL scheme"):
        client.list()


def test_a_closed_client_refuses_and_close_is_idempotent(db_url: str) -> None:
    client = Client(db_url)
    client.enqueue("true")
    client.close()
    client.close()
    with pytest.raises(errors.UsageError, match="closed"):
        client.list()


def test_a_client_over_a_backend_leaves_it_open(db_url: str) -> None:
    backend = open_backend(db_url)
    try:
        with Client.over(backend) as client:
            client.enqueue("true", id="x")
        assert backend.get_job("x").state == "pending"
    finally:
        backend.close()


def test_the_package_exports_the_client_lazily() -> None:
    code = "import sys, queuectl; a = 'queuectl.client' in sys.modules; queuectl.Client; print(a)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False", done.stderr
    assert (ROOT / "queuectl" / "py.typed").exists()


# --- the README's example -----------------------------------------------------------------------

EXAMPLE_OUTPUT = """\
hello pending mail
hello completed 0
flaky dead 3
hello from hello
broken
not finished: ['later'] exit code 124
cancelled
refused: bad queue name 'no spaces': use 1-64 of A-Z a-z 0-9 . _ : - exit code 2
3 jobs, 1 in the DLQ
"""


def test_the_readme_example_runs_and_prints_what_the_readme_shows(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env={**os.environ, "QUEUECTL_DATABASE_URL": f"sqlite:///{tmp_path}/example.db"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXAMPLE_OUTPUT


def test_the_readme_shows_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Python API\n(.*?)(?=^## )", readme, re.M | re.S)
    assert section is not None, "README has no '## Python API' section"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block is not None, "no ```python block under the Python API heading"
    assert block.group(1) == EXAMPLE.read_text()
