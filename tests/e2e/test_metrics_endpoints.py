"""Who exports what on /metrics, scraped over HTTP from real processes on both backends: the
queue gauges from a worker that embeds the orchestrator (SQLite), once per fleet; only owned
series everywhere; no `*_created` series."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from queuectl import models
from tests.conftest import Cli
from tests.e2e.test_orchestrator_cli import Samples, free_port, leader_pid, scrape
from tests.e2e.waiting import terminate_all, wait_for

pytestmark = pytest.mark.e2e

# the database collector's series: only a process that computes queue depth exports them
QUEUE_GAUGES = {
    "queuectl_queue_jobs",
    "queuectl_queue_oldest_job_age_seconds",
    "queuectl_queue_paused",
    "queuectl_workers_alive",
    "queuectl_workers_lost",
}
WORKER_SERIES = {"queuectl_worker_slots", "queuectl_worker_busy_slots"}
ORCHESTRATOR_SERIES = {"queuectl_orchestrator_leader", "queuectl_schedules_fired_total"}


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def answers(port: int) -> Samples | None:
    try:
        return scrape(port)
    except OSError:
        return None


def scrape_when(port: int, ok: Callable[[Samples], bool], *, timeout: float = 20) -> Samples:
    """Scrape until `ok` holds for a whole scrape; that scrape."""
    found: list[Samples] = []

    def probe() -> bool:
        samples = answers(port)
        if samples is not None and ok(samples):
            found[:] = [samples]
            return True
        return False

    wait_for(probe, timeout=timeout)
    return found[0]


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM drains: each exits 0."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=20) == 0


def test_a_worker_exports_queue_depth_where_it_embeds_the_orchestrator(cli: Cli) -> None:
    """SQLite: `worker start --metrics-port` alone is a complete system, queue gauges and all.
    Postgres: its workers leave queue depth to `orchestrator run` (scraped below), so a fleet
    of N workers does not run N copies of the queries."""
    sqlite = cli.url.startswith("sqlite")
    cli("queue", "pause", "held")
    overdue = models.iso(models.utcnow() - timedelta(seconds=600))
    cli.enqueue({"id": "old", "command": "true", "queue": "held", "run_at": overdue})
    cli.enqueue({"id": "ok", "command": "true", "queue": "mail"})
    cli.enqueue({"id": "bad", "command": "exit 3", "queue": "mail", "max_retries": 0})
    wport = free_port()
    worker = cli.popen("worker", "start", "--count", "2", "--metrics-port", str(wport))
    try:
        wait_for(lambda: cli.json("show", "bad", "--json")["state"] == "dead", timeout=30)
        if sqlite:
            dead = ("queuectl_queue_jobs", (("queue", "mail"), ("state", "dead")))
            got = scrape_when(wport, lambda s: s.get(dead) == 1)
            assert got[("queuectl_queue_jobs", (("queue", "mail"), ("state", "completed")))] == 1
            assert got[("queuectl_queue_jobs", (("queue", "held"), ("state", "pending")))] == 1
            age = got[("queuectl_queue_oldest_job_age_seconds", (("queue", "held"),))]
            assert 600 <= age < 660, age  # the paused queue's job, due 10 minutes ago
            assert got[("queuectl_queue_oldest_job_age_seconds", (("queue", "mail"),))] == 0
            assert got[("queuectl_queue_paused", (("queue", "held"),))] == 1
            assert got[("queuectl_workers_alive", (("state", "idle"),))] == 2
            assert got[("queuectl_workers_lost", ())] == 0
            assert got[("queuectl_db_up", ())] == 1
            assert got[("queuectl_orchestrator_leader", ())] == 1
            assert got[("queuectl_worker_slots", ())] == 2
        else:
            got = scrape_when(wport, lambda s: True)
            assert got[("queuectl_worker_slots", ())] == 2
            assert not names(got) & (QUEUE_GAUGES | ORCHESTRATOR_SERIES | {"queuectl_db_up"})
            oport = free_port()
            orch = cli.popen("orchestrator", "run", "--metrics-port", str(oport))
            try:
                leads = ("queuectl_orchestrator_leader", ())
                o = scrape_when(oport, lambda s: s.get(leads) == 1, timeout=30)
                assert o[("queuectl_queue_jobs", (("queue", "mail"), ("state", "dead")))] == 1
                age = o[("queuectl_queue_oldest_job_age_seconds", (("queue", "held"),))]
                assert 600 <= age < 660, age
                assert o[("queuectl_workers_alive", (("state", "idle"),))] == 2
                assert o[("queuectl_db_up", ())] == 1
                assert not names(o) & WORKER_SERIES  # an orchestrator has no slots
            finally:
                stop(orch)
        assert not [n for n in names(got) if n.endswith("_created")]
    finally:
        stop(worker)


def test_only_the_leading_worker_exports_queue_depth(tmp_path: Path) -> None:
    """Two SQLite worker processes on one file: the one holding the leader lease exports the
    queue gauges, the standby only queuectl_db_up; when the leader stops, the standby takes
    over the gauges too."""
    cli = Cli(f"sqlite:///{tmp_path}/q.db", tmp_path)
    cli.enqueue({"command": "true", "queue": "mail"})
    ports = [free_port(), free_port()]
    procs = [cli.popen("worker", "start", "--metrics-port", str(p)) for p in ports]
    try:
        wait_for(lambda: leader_pid(cli.url) in {p.pid for p in procs}, timeout=20)
        done = ("queuectl_queue_jobs", (("queue", "mail"), ("state", "completed")))

        def split() -> tuple[int, Samples, Samples] | None:
            """(index of the leader, its scrape, the standby's) once they agree on it."""
            scrapes = [answers(p) for p in ports]
            if None in scrapes:
                return None
            with_gauges = [i for i, s in enumerate(scrapes) if s and done in s]
            if len(with_gauges) != 1:
                return None
            i = with_gauges[0]
            return i, scrapes[i], scrapes[1 - i]  # type: ignore[return-value]

        i, leader, standby = wait_for(split, timeout=20)
        assert procs[i].pid == leader_pid(cli.url)
        assert leader[done] == 1 and leader[("queuectl_orchestrator_leader", ())] == 1
        assert standby[("queuectl_orchestrator_leader", ())] == 0
        assert standby[("queuectl_db_up", ())] == 1  # a standby still says it reaches the db
        assert not names(standby) & QUEUE_GAUGES
        stop(procs[i])
        survivor = ports[1 - i]
        took_over = scrape_when(survivor, lambda s: done in s)
        assert took_over[done] == 1
        assert took_over[("queuectl_orchestrator_leader", ())] == 1
    finally:
        terminate_all(procs, timeout=20)


def test_the_dashboard_exports_only_its_own_series(cli: Cli) -> None:
    """The dashboard's /metrics: build info, queue depth and db up, and no worker or
    orchestrator series reading 0 for work it never does."""
    cli.enqueue({"command": "true", "queue": "mail"})
    port = free_port()
    dashboard = cli.popen("dashboard", "--port", str(port))
    try:
        got = scrape_when(port, lambda s: True)
        assert got[("queuectl_queue_jobs", (("queue", "mail"), ("state", "pending")))] == 1
        assert got[("queuectl_db_up", ())] == 1
        assert got[("queuectl_build_info", (("role", "dashboard"), ("version", _version())))] == 1
        owned = {n for n in names(got) if not n.startswith("queuectl_queue_")}
        assert owned <= {
            "queuectl_build_info",
            "queuectl_db_up",
            "queuectl_workers_alive",
            "queuectl_workers_lost",
        }, owned
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert "_created" not in resp.read().decode()
    finally:
        stop(dashboard)


def _version() -> str:
    from queuectl import __version__

    return __version__
