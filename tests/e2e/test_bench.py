"""`queuectl bench` runs end to end and cleans up after itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e


def test_bench_measures_and_leaves_no_jobs_behind(cli: Cli, tmp_path: Path) -> None:
    cli.enqueue({"id": "mine", "command": "true"})
    out = tmp_path / "bench.json"
    result = cli(
        "bench",
        "--jobs",
        "40",
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
    assert doc["params"] == {"jobs": 40, "workers": 1, "slots": 2}
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
