"""A fleet of worker processes on one private Postgres (max_connections 100) through PgBouncer:
start it, measure what it costs idle, how fast one job is picked up, drain a burst exactly once,
kill some workers mid-drain, and count the claims one NOTIFY causes. Used small by
tests/e2e/test_fleet.py and at full size by benchmarks/fleet.py."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e import pgbouncer
from tests.e2e.pgbouncer import PooledCli
from tests.e2e.pgcluster import private_cluster
from tests.e2e.waiting import terminate_all, wait_for


@dataclass
class FleetSpec:
    workers: int = 200  # worker processes
    slots: int = 4  # --count of each
    orchestrators: int = 2
    jobs: int = 20_000  # per drain
    kill: int = 20  # workers SIGKILLed during the second drain
    max_connections: int = 100  # the server's
    pool_size: int = 40  # PgBouncer's server connections
    idle_s: float = 10.0  # how long the idle cost is measured
    pickups: int = 20  # single jobs enqueued one at a time into the idle fleet
    listeners: int = 40  # workers with a direct LISTEN URL for the NOTIFY measurement
    start_timeout_s: float = 300.0
    drain_timeout_s: float = 600.0


@dataclass
class Report:
    spec: FleetSpec
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, **figures: Any) -> None:
        self.figures.update(figures)


class Sampler(threading.Thread):
    """The server's client connections, sampled every 0.25 s on one direct connection."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.25):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)


class Fleet:
    """The processes of one fleet and the direct connection that watches them."""

    def __init__(self, cli: PooledCli, direct: str, spec: FleetSpec) -> None:
        self.cli = cli
        self.direct = direct
        self.spec = spec
        self.workers: list[subprocess.Popen[bytes]] = []
        self.orchestrators: list[subprocess.Popen[bytes]] = []
        self.db = psycopg.connect(direct, autocommit=True)

    # --- reading the database directly ----------------------------------------------------
    def scalar(self, sql: str, *args: Any) -> Any:
        row = self.db.execute(sql, args).fetchone()
        return row[0] if row else None

    def statements(self) -> dict[str, int]:
        """Calls per normalised statement since the last reset, for this database."""
        rows = self.db.execute(
            "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database()"
        ).fetchall()
        return {q: int(c) for q, c in rows if "pg_stat_" not in q}  # not the harness's own

    def reset_statements(self) -> None:
        self.db.execute("SELECT pg_stat_statements_reset()")

    # --- processes ----------------------------------------------------------------------------
    def start_workers(self, n: int, **env: str) -> list[subprocess.Popen[bytes]]:
        started = [
            self.cli.popen("worker", "start", "--count", str(self.spec.slots), **env)
            for _ in range(n)
        ]
        self.workers += started
        return started

    def registered(self) -> int:
        return int(self.scalar("SELECT count(DISTINCT pid) FROM queuectl_workers"))

    def wait_registered(self, n: int) -> float:
        began = time.monotonic()
        wait_for(lambda: self.registered() >= n, timeout=self.spec.start_timeout_s, every=0.5)
        return time.monotonic() - began

    def stop_workers(self, procs: list[subprocess.Popen[bytes]]) -> None:
        terminate_all(procs, timeout=60)
        self.workers = [p for p in self.workers if p not in procs]

    def close(self) -> None:
        self.stop_workers(self.workers + self.orchestrators)
        self.db.close()

    def logs_with(self, needle: str) -> list[str]:
        procs = self.workers + self.orchestrators
        return [self.cli.log(p) for p in procs if needle in self.cli.log(p)]

    # --- jobs ---------------------------------------------------------------------------------
    def enqueue_burst(self, prefix: str, n: int, command: Callable[[str], str]) -> list[str]:
        ids = [f"{prefix}{i:06d}" for i in range(n)]
        lines = "".join(json.dumps({"id": i, "command": command(i)}) + "\n" for i in ids)
        done = self.cli("enqueue", "--file", "-", input=lines, timeout=300)
        assert done.returncode == 0, done.stderr
        return ids

    def completed(self, prefix: str) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM queuectl_jobs WHERE state = 'completed' AND id LIKE %s",
                prefix + "%",
            )
        )

    def wait_completed(
        self, prefix: str, n: int, *, on_progress: Callable[[int], None] | None = None
    ) -> float:
        began = time.monotonic()
        deadline = began + self.spec.drain_timeout_s
        while (done := self.completed(prefix)) < n:
            if on_progress:
                on_progress(done)
            if time.monotonic() > deadline:
                raise AssertionError(f"{prefix}: {done} of {n} completed after the timeout")
            time.sleep(0.2)
        return time.monotonic() - began


def _statement_kind(query: str) -> str:
    q = " ".join(query.split())
    for needle, kind in (
        ("SKIP LOCKED", "claim"),
        ("WITH seed AS", "recovery turn"),  # sweep_turn (its name is a parameter)
        ("INSERT INTO queuectl_workers", "heartbeat"),
        ("pg_notify", "notify"),
        ("lease_expires_at <", "recovery"),
        ("queuectl_leader", "leadership"),
        ("queuectl_settings", "settings"),
    ):
        if needle in q:
            return kind
    if q.upper() in {"BEGIN", "COMMIT", "ROLLBACK"}:
        return "begin/commit"
    return q[:60]


def _by_kind(calls: dict[str, int]) -> dict[str, int]:
    kinds: Counter[str] = Counter()
    for query, n in calls.items():
        kinds[_statement_kind(query)] += n
    return dict(kinds.most_common())


def _pickup_latencies(fleet: Fleet, n: int, prefix: str) -> list[float]:
    """Enqueue -> claim of `n` single jobs enqueued one at a time into an idle fleet (the
    database's own clock at both ends)."""
    for k in range(n):
        time.sleep(random.uniform(0.2, 0.5))
        made = fleet.cli("enqueue", json.dumps({"id": f"{prefix}{k:03d}", "command": "true"}))
        assert made.returncode == 0, made.stderr
    fleet.wait_completed(prefix, n)
    rows = fleet.db.execute(
        "SELECT extract(epoch FROM r.started_at - j.created_at) FROM queuectl_runs r"
        " JOIN queuectl_jobs j ON j.id = r.job_id WHERE j.id LIKE %s AND r.attempt = 1",
        (prefix + "%",),
    ).fetchall()
    return sorted(float(r[0]) for r in rows)


def _ran(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


@contextmanager
def _environment(spec: FleetSpec, workdir: Path) -> Iterator[tuple[PooledCli, str, str]]:
    settings = {
        "max_connections": str(spec.max_connections),
        "shared_preload_libraries": "pg_stat_statements",
    }
    with private_cluster(settings) as cluster:
        cluster.sql("CREATE DATABASE fleet")
        cluster.sql("CREATE EXTENSION pg_stat_statements", database="fleet")
        direct = cluster.url("fleet")
        clients = spec.workers * 2 + spec.listeners + 50
        with pgbouncer.running(direct, pool_size=spec.pool_size, max_clients=clients) as bouncer:
            yield PooledCli(bouncer.url, workdir), direct, bouncer.url


def run(spec: FleetSpec, workdir: Path, say: Callable[[str], None] = print) -> Report:
    """Every phase, in order; the report carries the figures and any problem seen."""
    report = Report(spec)
    with _environment(spec, workdir) as (cli, direct, _):
        migrated = cli("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr
        fleet = Fleet(cli, direct, spec)
        sampler = Sampler(direct)
        sampler.start()
        try:
            _phases(fleet, report, workdir, say)
        finally:
            sampler.stop.set()
            sampler.join(timeout=5)
            fleet.close()
        report.add(server_connections_peak=sampler.peak)
        refused = fleet.logs_with("too many clients")
        if refused:
            report.problems.append(f"{len(refused)} processes were refused connections")
        crashed = fleet.logs_with("Traceback")
        if crashed:
            report.problems.append(f"a traceback in {len(crashed)} logs: {crashed[0][-2000:]}")
    return report


def _phases(fleet: Fleet, report: Report, workdir: Path, say: Callable[[str], None]) -> None:
    spec = fleet.spec
    cli = fleet.cli
    fleet.orchestrators = [cli.popen("orchestrator", "run") for _ in range(spec.orchestrators)]
    fleet.start_workers(spec.workers)
    took = fleet.wait_registered(spec.workers)
    report.add(start_s=round(took, 1))
    say(f"{spec.workers} workers registered in {took:.1f} s")

    # idle: what 200 workers waiting for work cost the server
    time.sleep(3)
    fleet.reset_statements()
    time.sleep(spec.idle_s)
    calls = fleet.statements()
    idle_qps = sum(calls.values()) / spec.idle_s
    kinds = {k: round(v / spec.idle_s, 1) for k, v in _by_kind(calls).items()}
    report.add(idle_statements_per_s=round(idle_qps, 1), idle_by_kind_per_s=kinds)
    say(f"idle: {idle_qps:.0f} statements/s {kinds}")

    pickups = _pickup_latencies(fleet, spec.pickups, "p")
    report.add(
        pickup_p50_s=round(statistics.median(pickups), 4), pickup_max_s=round(max(pickups), 4)
    )
    p50 = statistics.median(pickups)
    say(f"pickup (polling): p50 {p50 * 1000:.0f} ms, max {max(pickups):.2f} s")

    # a burst drains exactly once
    ran1 = workdir / "ran-a.txt"
    ids = fleet.enqueue_burst("a", spec.jobs, lambda i: f"echo {i} >> {ran1}")
    took = fleet.wait_completed("a", spec.jobs)
    seen = _ran(ran1)
    report.add(drain_s=round(took, 1), drain_jobs_per_s=round(spec.jobs / took))
    say(f"drain: {spec.jobs} jobs in {took:.1f} s ({spec.jobs / took:.0f}/s)")
    if sorted(seen) != ids:
        report.problems.append(f"drain: {len(set(ids) - set(seen))} jobs never ran")
    if twice := [i for i, n in seen.items() if n > 1]:
        report.problems.append(f"drain: {len(twice)} jobs ran more than once")

    _kill_drain(fleet, report, workdir, say)
    _notify_claims(fleet, report, say)


def _kill_drain(fleet: Fleet, report: Report, workdir: Path, say: Callable[[str], None]) -> None:
    """A second burst of short sleeps; when a quarter is done, SIGKILL `kill` workers."""
    spec = fleet.spec
    ran = workdir / "ran-b.txt"
    ids = fleet.enqueue_burst("b", spec.jobs, lambda i: f"sleep 0.2; echo {i} >> {ran}")
    victims = random.sample(fleet.workers, spec.kill)
    killed_pids = {p.pid for p in victims}

    def kill_at_a_quarter(done: int) -> None:
        if victims and done >= spec.jobs // 4:
            for proc in victims:
                proc.kill()
            victims.clear()

    took = fleet.wait_completed("b", spec.jobs, on_progress=kill_at_a_quarter)
    for proc in fleet.workers:
        if proc.pid in killed_pids:
            proc.wait(timeout=10)
    fleet.workers = [p for p in fleet.workers if p.pid not in killed_pids]
    seen = _ran(ran)
    # a job may run twice only if one of its runs belonged to a killed worker
    lost = {
        row[0]
        for row in fleet.db.execute(
            "SELECT DISTINCT job_id FROM queuectl_runs WHERE job_id LIKE 'b%%'"
            " AND split_part(worker_id, '-', -2)::int = ANY(%s)",
            (list(killed_pids),),
        ).fetchall()
    }
    twice = {i for i, n in seen.items() if n > 1}
    not_completed = spec.jobs - fleet.completed("b")
    report.add(
        kill_drain_s=round(took, 1),
        killed=spec.kill,
        jobs_on_killed_workers=len(lost),
        jobs_run_twice=len(twice),
    )
    say(
        f"kill drain: {spec.jobs} jobs in {took:.1f} s with {spec.kill} workers killed; "
        f"{len(lost)} jobs were on them, {len(twice)} ran twice"
    )
    if missing := set(ids) - set(seen):
        report.problems.append(f"kill drain: {len(missing)} jobs never ran")
    if not_completed:
        report.problems.append(f"kill drain: {not_completed} jobs not completed")
    if unexplained := twice - lost:
        report.problems.append(f"kill drain: {len(unexplained)} jobs ran twice on live workers")


def _notify_claims(fleet: Fleet, report: Report, say: Callable[[str], None]) -> None:
    """Replace the fleet by `listeners` workers that LISTEN on a direct URL; count the claims
    each single enqueue causes beyond the idle polling, and their pickup latency."""
    spec = fleet.spec
    fleet.stop_workers(list(fleet.workers))
    fleet.db.execute("DELETE FROM queuectl_workers")
    fleet.start_workers(spec.listeners, QUEUECTL_LISTEN_URL=fleet.direct)
    fleet.wait_registered(spec.listeners)
    time.sleep(3)
    fleet.reset_statements()
    time.sleep(spec.idle_s)
    idle_claims = _by_kind(fleet.statements()).get("claim", 0) / spec.idle_s
    fleet.reset_statements()
    began = time.monotonic()
    pickups = _pickup_latencies(fleet, spec.pickups, "n")
    spent = time.monotonic() - began
    claims = _by_kind(fleet.statements()).get("claim", 0)
    per_job = (claims - idle_claims * spent) / spec.pickups
    report.add(
        listeners=spec.listeners,
        listen_idle_claims_per_s=round(idle_claims, 1),
        claims_per_notified_job=round(per_job, 1),
        listen_pickup_p50_s=round(statistics.median(pickups), 4),
    )
    say(
        f"LISTEN x{spec.listeners}: {per_job:.1f} claims per enqueued job beyond "
        f"{idle_claims:.1f}/s idle; pickup p50 {statistics.median(pickups) * 1000:.0f} ms"
    )
