"""A fleet through PgBouncer on a private Postgres of max_connections 100, at a size the suite
can afford on two cores (benchmarks/fleet.py runs the 200-worker one): it starts within the
connection budget, idles at a bounded cost, picks up a single job quickly by polling, drains a
burst exactly once, survives workers killed mid-drain with nothing lost, and a NOTIFY wakes a
few claims, not one per listener."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e import fleet, pgbouncer
from tests.e2e.pgcluster import missing_tools

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

SPEC = fleet.FleetSpec(
    workers=40,
    slots=4,
    orchestrators=2,
    jobs=4_000,
    kill=5,
    pool_size=20,
    idle_s=5.0,
    pickups=12,
    listeners=30,
    start_timeout_s=120.0,
    drain_timeout_s=180.0,
)


def test_a_fleet_of_workers_through_pgbouncer(tmp_path: Path) -> None:
    why = missing_tools() or (None if pgbouncer.binary() else "pgbouncer is not installed")
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the fleet test cannot run: {why}; .ci/run installs what it needs")
        pytest.skip(f"the fleet needs a private cluster and PgBouncer: {why}")
    report = fleet.run(SPEC, tmp_path)
    f = report.figures
    print(f"fleet of {SPEC.workers}: {f}")
    assert report.problems == []
    # the budget: PgBouncer's pool, the LISTEN connections of the last phase, the harness's 2
    assert f["server_connections_peak"] <= SPEC.pool_size + SPEC.listeners + 2 + 2, f
    # idle, a worker process sends about 2.2 statements a second (a claim per 0.85 s on
    # average, a heartbeat and a recovery turn every 2 s); the orchestrators a few in all
    assert f["idle_statements_per_s"] <= 3 * SPEC.workers + 20, f
    assert f["idle_by_kind_per_s"].get("recovery", 0) <= 2, f  # turns, not one per worker
    # 40 workers polling every 0.7-1 s, out of step: one of them looks every ~25 ms
    assert f["pickup_p50_s"] < 0.3, f
    assert f["jobs_on_killed_workers"] > 0, f  # the kill hit running jobs
    # a single enqueue wakes a few of the 30 listeners, not all of them
    assert f["claims_per_notified_job"] <= 8, f
    assert f["listen_pickup_p50_s"] < 0.1, f
