"""`queuectl bench` runs end to end and cleans up after itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from queuectl import models
from queuectl.backends.base import Backend
from queuectl.bench import seed
from tests.conftest import Cli

PEERS_PYTHON = Path(__file__).resolve().parents[2] / ".venv-peers" / "bin" / "python"

pytestmark = pytest.mark.e2e


def test_bench_measures_and_leaves_no_jobs_behind(cli: Cli, tmp_path: Path) -> None:
    cli.enqueue({"id": "mine", "command": "true"})
    out = tmp_path / "bench.json"
    result = cli(
        "bench",
        "--jobs",
        "300",  # a drain long enough for the server's CPU to pass a /proc tick (40 read 0 s once)
        "--workers",
        "1",
        "--slots",
        "2",
        "--only",
        "drain",
        "--only",
        "enqueue",
        "--json",
        str(out),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    values = {r["name"]: r["value"] for r in doc["results"]}
    assert values["drain, noop executor"] > 0
    assert values["drain, shell executor"] > 0
    assert values["shell / spawn ceiling"] > 0
    assert values["enqueue --file (bulk)"] > 0
    # the worker side of the cost: CPU seconds per 1,000 jobs, beside the spawn ceiling's
    for row in ("worker CPU per 1k jobs (noop)", "worker CPU per 1k jobs (shell)"):
        assert values[row] > 0
    assert values["spawn ceiling CPU per 1k jobs"] > 0
    # the database side: the local Postgres server's CPU (every process of it, from /proc);
    # SQLite runs inside the workers, so it has no rows of its own
    db_rows = {"db CPU per 1k jobs (noop)", "db CPU per 1k jobs (shell)"}
    if cli.url.startswith("postgres"):
        assert all(values[row] > 0 for row in db_rows), values
    else:
        assert not db_rows & set(values)
    assert doc["params"] == {"jobs": 300, "workers": 1, "slots": 2}
    assert "drain, noop executor" in result.stdout
    # the user's queue is untouched, and the benchmark's own jobs are gone
    assert [j["id"] for j in cli.json("list", "--json", "--limit", "1000")] == ["mine"]


def test_bench_rejects_an_unknown_section(cli: Cli) -> None:
    result = cli("bench", "--only", "everything")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1


def test_bench_pickup_latency_and_history(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = cli(
        "bench",
        "--jobs",
        "60",
        "--workers",
        "1",
        "--slots",
        "2",
        "--samples",
        "8",
        "--history",
        "3000",
        "--only",
        "pickup",
        "--only",
        "history",
        "--json",
        str(out),
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    values = {r["name"]: r["value"] for r in json.loads(out.read_text())["results"]}
    p50, p95, p99 = (values[f"pickup latency p{q}"] for q in (50, 95, 99))
    # idle workers are woken (NOTIFY, or the SQLite data_version watch), not polled at 0.2 s
    assert 0 < p50 <= p95 <= p99 and p50 < 100
    assert values["drain, noop, 3,000 completed rows"] > 0
    assert values["with history / empty"] > 0
    # the seeded history and the benchmark's queues are gone again
    assert cli.json("status", "--json")["total"] == 0


def test_bench_peers_needs_postgres(cli: Cli) -> None:
    result = cli("bench", "--scratch", "--only", "peers")  # --scratch: always SQLite
    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="no .venv-peers (make bench-peers-env)")
@pytest.mark.timeout(300)
def test_bench_peers_puts_database_cpu_per_job_beside_pgqueuer(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cli = Cli(pg_url, tmp_path)
    result = cli(
        "bench",
        "--only",
        "peers",
        "--jobs",
        "200",
        "--slots",
        "10",
        "--peers-python",
        str(PEERS_PYTHON),
        "--json",
        str(out),
        timeout=280,
    )
    assert result.returncode == 0, result.stderr
    values = {r["name"]: r["value"] for r in json.loads(out.read_text())["results"]}
    for row in (
        "queuectl noop drain",
        "PGQueuer drain",
        "queuectl / PGQueuer",
        "queuectl / bare SQL ceiling",
        # the server's CPU per 1,000 jobs, each drain, and their ratio
        "queuectl db CPU per 1k jobs",
        "PGQueuer db CPU per 1k jobs",
        "db CPU queuectl / PGQueuer",
        "queuectl worker CPU per 1k jobs",
        "PGQueuer worker CPU per 1k jobs",
    ):
        assert values[row] > 0, (row, values)
    assert "db CPU queuectl / PGQueuer" in result.stdout
    assert cli.json("status", "--json")["total"] == 0


def test_seeded_history_is_completed_jobs_with_one_run_each_and_purge_spares_running(
    backend: Backend, db_url: str
) -> None:
    """The benchmark's own SQL (no backend method) writes what a long-running system keeps, and
    its clean-up deletes a queue, runs and all, except a job still running."""
    backend.enqueue([models.JobSpec(command="true", id="running", queue="bench-h")])
    assert [j.id for j in backend.claim(["w"], ("bench-h",), host="h", lease_ttl_s=30)]
    seed.seed_completed(db_url, "bench-h", 3)
    seeded = [j for j in backend.list_jobs(queue="bench-h") if j.id != "running"]
    assert sorted(j.id for j in seeded) == ["bench-h-1", "bench-h-2", "bench-h-3"]
    day_ago = datetime.now(UTC) - timedelta(days=1)
    for job in seeded:
        assert job.state is models.JobState.COMPLETED and job.attempts == 1
        assert job.exit_code == 0 and job.finished_at is not None
        assert abs((job.finished_at - day_ago).total_seconds()) < 60
        (run,) = backend.runs(job.id)
        assert (run.attempt, run.outcome, run.exit_code) == (1, "succeeded", 0)
    assert seed.purge_queue(db_url, "bench-h") == 3
    assert [j.id for j in backend.list_jobs(queue="bench-h")] == ["running"]
    # the runs went with their jobs: seeding the same ids again would collide with a left-over
    seed.seed_completed(db_url, "bench-h", 3)
    assert len(backend.runs("bench-h-1")) == 1
