"""`queuectl enqueue --file` / `-`: NDJSON in bulk, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from queuectl.backends import open_backend
from tests.conftest import Cli

pytestmark = pytest.mark.e2e
JOBS = 5000


def ndjson(count: int) -> list[str]:
    lines = []
    for i in range(count):
        job: dict[str, object] = {"command": f'echo {i} ✓ "q" \\ \t'}
        if i % 2:
            job |= {"queue": "bulk", "priority": i % 7 - 3, "max_retries": i % 4}
        if i % 5 == 0:
            job |= {"id": f"bulk-{i}", "timeout": "1.5s", "run_at": "2031-01-02T03:04:05.678Z"}
        if i % 11 == 0:
            job |= {"ttl": "1h"} if "run_at" in job else {"delay": 30, "ttl": "1h"}
        lines.append(json.dumps(job, ensure_ascii=i % 3 == 0))
    return lines


def stored_lines(url: str) -> list[str]:
    """Every job as `show --json` prints it (without its runs), oldest first."""
    backend = open_backend(url)
    try:
        jobs = backend.list_jobs(limit=100_000)
    finally:
        backend.close()
    return [json.dumps(job.to_json(), ensure_ascii=False) for job in reversed(jobs)]


def test_enqueue_file_prints_every_job_exactly_as_stored(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.ndjson"
    lines = ndjson(JOBS)
    path.write_text("\n".join(lines) + "\n\n")  # a blank line at the end is fine
    result = cli("enqueue", "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"enqueued {JOBS} jobs\n"
    printed = result.stdout.splitlines()
    assert printed == stored_lines(cli.url)
    for line, job in zip(lines, map(json.loads, printed), strict=True):
        sent = json.loads(line)
        assert job["command"] == sent["command"]
        assert job["queue"] == sent.get("queue", "default")
        assert job["priority"] == sent.get("priority", 0)
        assert job["max_retries"] == sent.get("max_retries", 3)
        assert job["id"] == sent.get("id", job["id"])
        assert job["timeout"] == (1.5 if "timeout" in sent else None)
        if "run_at" in sent:
            assert job["run_at"] == "2031-01-02T03:04:05.678Z"
        assert (job["expires_at"] is None) == ("ttl" not in sent)


def test_stdin_is_read_like_a_file(cli: Cli) -> None:
    result = cli("enqueue", "-", input="\n".join(ndjson(50)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == stored_lines(cli.url)


@pytest.mark.parametrize(
    ("last", "message"),
    [
        ('{"command": "true"', "malformed JSON"),
        ('{"command": "true"} {"command": "x"}', "malformed JSON: Extra data"),
        ('{"command": "true", "priority": 1.5}', "priority must be a whole number"),
        ('{"command": "true", "colour": "red"}', "unknown field 'colour'"),
    ],
)
def test_a_bad_last_line_inserts_nothing(cli: Cli, tmp_path: Path, last: str, message: str) -> None:
    path = tmp_path / "jobs.ndjson"
    path.write_text("\n".join([*ndjson(JOBS), last]) + "\n")
    result = cli("enqueue", "--file", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: line {JOBS + 1}: {message}")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert stored_lines(cli.url) == []


def test_a_taken_id_at_the_end_inserts_nothing(cli: Cli, tmp_path: Path) -> None:
    taken = cli.enqueue({"command": "true", "id": "taken"})
    path = tmp_path / "jobs.ndjson"
    path.write_text("\n".join([*ndjson(JOBS), '{"command": "x", "id": "taken"}']))
    result = cli("enqueue", "--file", str(path))
    assert result.returncode == 4
    assert result.stderr == "error: duplicate job id: 'taken' already exists\n"
    assert stored_lines(cli.url) == [json.dumps(taken, ensure_ascii=False)]
