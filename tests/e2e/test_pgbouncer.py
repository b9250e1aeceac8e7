"""Every process through PgBouncer in transaction pooling mode (Debian's pgbouncer 1.18, which
carries no prepared statements in that mode), started here on a free port in front of the test
database: migrate, enqueue, two workers and an orchestrator draining 300 jobs exactly once,
status and list, a cancel reaching a running job, and the pickup path with and without a
direct LISTEN URL (QUEUECTL_LISTEN_URL)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Cli
from tests.e2e import pgbouncer
from tests.e2e.pgbouncer import Bouncer, PooledCli
from tests.e2e.test_orchestrator_cli import free_port
from tests.e2e.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def bouncer(pg_url: str) -> Iterator[Bouncer]:
    if pgbouncer.binary() is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed; .ci/run installs Debian's `pgbouncer`")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    with pgbouncer.running(pg_url) as running:
        yield running


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _stop(proc: subprocess.Popen[bytes], cli: Cli) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, cli.log(proc)


def _connections(port: int) -> float:
    """queuectl_db_connections of the process serving metrics on `port`."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        text = page.read().decode()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("queuectl_db_connections{")]
    return float(line.rsplit(" ", 1)[1])


def _listeners(direct: str) -> int:
    """Server sessions of this database whose last statement was the worker's LISTEN."""
    with psycopg.connect(direct, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = 'LISTEN queuectl_control'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_fleet_drains_through_pgbouncer_exactly_once(bouncer: Bouncer, tmp_path: Path) -> None:
    # the default (a direct connection) is refused by PgBouncer, with the way out named
    refused = Cli(bouncer.url, tmp_path)("status")
    assert refused.returncode != 0
    assert "QUEUECTL_DATABASE_POOLER=pgbouncer" in refused.stderr, refused.stderr

    cli = PooledCli(bouncer.url, tmp_path)
    migrated = cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    done = tmp_path / "done.txt"
    ids = [f"j{i:03d}" for i in range(300)]
    lines = "".join(json.dumps({"id": i, "command": f"echo {i} >> {done}"}) + "\n" for i in ids)
    enqueued = cli("enqueue", "--file", "-", input=lines)
    assert enqueued.returncode == 0, enqueued.stderr

    orchestrator = cli.popen("orchestrator", "run")
    workers = [cli.popen("worker", "start", "--count", "4", "--burst") for _ in range(2)]
    try:
        for worker in workers:
            assert worker.wait(timeout=40) == 0, cli.log(worker)
        # the orchestrator led through PgBouncer too (its lease is a row, not a session lock)
        wait_for(lambda: "leader_elected" in cli.log(orchestrator), timeout=15)
    finally:
        for proc in [*workers, orchestrator]:
            _stop(proc, cli)
    for proc in [*workers, orchestrator]:
        assert "Traceback" not in cli.log(proc), cli.log(proc)
        assert "prepared statement" not in cli.log(proc), cli.log(proc)
    for worker in workers:  # said once, then polled
        assert cli.log(worker).count("listen_unavailable") == 1, cli.log(worker)

    ran = Counter(done.read_text().split())
    assert sorted(ran) == ids  # every job ran ...
    assert [i for i, n in ran.items() if n > 1] == []  # ... once
    status = cli.json("status", "--json")
    assert status["jobs"]["completed"] == 300 and status["total"] == 300, status
    listed = cli.json("list", "--json", "--limit", "1000")
    assert sorted(j["id"] for j in listed) == ids
    assert {j["state"] for j in listed} == {"completed"}
    assert cli.json("worker", "list", "--json") == []


def _pickups(cli: Cli, n: int) -> list[float]:
    """Enqueue -> start of `n` jobs enqueued one at a time while one worker idles."""
    latencies = []
    for k in range(n):
        time.sleep(0.3 + 0.1 * (k % 3))  # idle again, at a different poll phase
        job = cli.json("enqueue", json.dumps({"command": "true"}))

        def started(job_id: str = job["id"]) -> str | None:
            shown = cli.json("show", job_id, "--json")
            return shown["started_at"] if shown["started_at"] else None

        latencies.append(
            (
                _ts(wait_for(started, timeout=10, every=0.02)) - _ts(job["created_at"])
            ).total_seconds()
        )
    return latencies


def test_cancel_and_pickup_through_pgbouncer_with_and_without_a_listen_url(
    bouncer: Bouncer, tmp_path: Path
) -> None:
    cli = PooledCli(bouncer.url, tmp_path)
    # without a listen URL: no LISTEN at all, cancels arrive with the heartbeat, pickup polls
    port = free_port()
    worker = cli.popen("worker", "start", "--count", "2", "--metrics-port", str(port))
    try:
        wait_for(lambda: len(cli.json("worker", "list", "--json")) == 2, timeout=15)
        wait_for(lambda: "listen_unavailable" in cli.log(worker), timeout=10)
        assert _listeners(bouncer.direct) == 0
        assert _connections(port) == 1  # one to PgBouncer, whatever the slots
        wait_for(
            lambda: {w["connections"] for w in cli.json("worker", "list", "--json")} == {1},
            timeout=10,
        )
        cli.json("enqueue", json.dumps({"id": "slow", "command": "sleep 60"}))
        wait_for(
            lambda: cli.json("show", "slow", "--json")["state"] == "processing",
            timeout=15,
        )
        asked = time.monotonic()
        assert cli("cancel", "slow").returncode == 0
        wait_for(lambda: cli.json("show", "slow", "--json")["state"] == "cancelled", timeout=15)
        assert time.monotonic() - asked < 10  # a heartbeat (2 s) plus the kill
        shown = cli.json("show", "slow", "--json")
        assert shown["runs"][-1]["outcome"] == "cancelled"
        polled = _pickups(cli, 5)
    finally:
        _stop(worker, cli)
    assert cli.log(worker).count("listen_unavailable") == 1
    assert max(polled) < 1.0 + 1.5, polled  # poll-interval 1 s, plus a claim

    # with a direct listen URL: the worker LISTENs there and is woken at once
    cli = PooledCli(bouncer.url, tmp_path, QUEUECTL_LISTEN_URL=bouncer.direct)
    port = free_port()
    worker = cli.popen("worker", "start", "--count", "2", "--metrics-port", str(port))
    try:
        wait_for(lambda: _listeners(bouncer.direct) == 1, timeout=15)
        assert _connections(port) == 2  # and one direct, for LISTEN
        wait_for(
            lambda: {w["connections"] for w in cli.json("worker", "list", "--json")} == {2},
            timeout=10,
        )
        woken = _pickups(cli, 5)
    finally:
        _stop(worker, cli)
    assert "listen_unavailable" not in cli.log(worker)
    assert statistics.median(woken) < 0.5, woken
    print(f"pickup through PgBouncer: polled {polled}, woken {woken}")


def test_the_pooler_setting_changes_only_what_a_pooler_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No server needed: a connector without a pool connects on first use only."""
    from queuectl import errors
    from queuectl.backends.postgres_connector import PgConnector, pooler_from_env

    url = "postgresql://u:s3cret-pw@db.example:5432/q"
    direct = PgConnector(url)
    assert direct.pooler == "none" and direct.listen_url == url
    assert "prepare_threshold" not in direct.kwargs  # psycopg's default: prepared after 5 runs
    assert direct.kwargs["options"] == "-c timezone=UTC"

    pooled = PgConnector(url, pooler="pgbouncer")
    assert pooled.kwargs["prepare_threshold"] is None
    assert "options" not in pooled.kwargs  # PgBouncer 1.18 refuses the startup parameter
    assert pooled.listen_url is None  # nowhere to LISTEN: the worker polls
    assert pooled.listen_kwargs["options"] == "-c timezone=UTC"  # a direct connection's

    monkeypatch.setenv("QUEUECTL_DATABASE_POOLER", "PgBouncer")
    monkeypatch.setenv("QUEUECTL_LISTEN_URL", "postgresql://u@db-direct:5432/q")
    from_env = PgConnector(url)
    assert from_env.pooler == "pgbouncer"
    assert from_env.listen_url == "postgresql://u@db-direct:5432/q"
    monkeypatch.setenv("QUEUECTL_LISTEN_URL", "")  # compose's empty default: unset
    assert PgConnector(url).listen_url is None
    with pytest.raises(errors.ConfigError, match="none, pgbouncer"):
        pooler_from_env({"QUEUECTL_DATABASE_POOLER": "pgcat"})
    assert pooler_from_env({}) == "none"
