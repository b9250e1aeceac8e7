"""`queuectl bench`: drain throughput, the spawn ceiling, enqueue rates, pickup latency and
CLI start-up, measured side by side on one database."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queuectl import models
from queuectl.backends import open_backend
from queuectl.bench import seed, servercpu

QUEUECTL = [sys.executable, "-m", "queuectl"]


SLOW_JOBS = 5000  # jobs for the runs whose rate is flat and low (Procrastinate, 1 per commit)


@dataclass
class Result:
    name: str
    value: float | None  # None: not measurable here ("n/a", the note says why)
    unit: str
    note: str = ""


PER_1K = "CPU s / 1k jobs"


@dataclass(frozen=True)
class Drain:
    """One drain: its rate, and the CPU it cost the workers and the database server."""

    rate: float  # jobs/s
    jobs: int
    worker_cpu_s: float  # the worker processes and their children, start-up included
    db_cpu_s: float | None  # the server on the drain's database (servercpu.Meter); None: n/a
    db_statement_ms: float | None = None  # pg_stat_statements, when loaded
    db_server_s: float | None = None  # every process of the server, other databases' too

    def per_1k(self, seconds: float) -> float:
        return seconds * 1000 / self.jobs


@dataclass
class Bench:
    url: str
    jobs: int = 2000
    workers: int = 2
    slots: int = 4
    samples: int = 100  # pickup latency: jobs enqueued one at a time
    history: int = 1_000_000  # the history section: completed jobs already in the table
    peers_python: str | None = None  # an interpreter with pgqueuer and procrastinate
    results: list[Result] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)  # the matrix, for the plot
    _probe: servercpu.Probe | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        return {**os.environ, "QUEUECTL_DATABASE_URL": self.url, "QUEUECTL_LOG_LEVEL": "error"}

    def add(
        self, name: str, value: float | None, unit: str, note: str = "", digits: int = 2
    ) -> None:
        self.results.append(
            Result(name, None if value is None else round(value, digits), unit, note)
        )

    def server_probe(self) -> servercpu.Probe | None:
        """Where the Postgres server's CPU is read (None on SQLite); probed once per run."""
        if not seed.is_postgres(self.url):
            return None
        if self._probe is None:
            self._probe = servercpu.probe(self.url)
        return self._probe

    # --- drain ----------------------------------------------------------------------------------
    def drain(self, *, noop: bool, workers: int | None = None, slots: int | None = None) -> float:
        """Jobs/s from the first start to the last finish of N jobs, W processes x C slots."""
        return self.drain_measured(noop=noop, workers=workers, slots=slots).rate

    def drain_measured(
        self, *, noop: bool, workers: int | None = None, slots: int | None = None
    ) -> Drain:
        """A drain, with the CPU the worker processes used (their rusage, reaped by us) and
        the database server used (its processes in /proc) from the workers' start to their
        exit: the per-job cost includes their start-up and last empty claims."""
        workers = workers or self.workers
        slots = slots or self.slots
        queue = f"bench-{secrets.token_hex(4)}"
        backend = open_backend(self.url)
        meter: servercpu.Meter | None = None
        try:
            command = "true"
            backend.enqueue(
                [models.JobSpec(command=command, queue=queue) for _ in range(self.jobs)]
            )
            extra = ["--noop"] if noop else []
            probe = self.server_probe()
            meter = probe.meter().start() if probe else None  # this database's backends
            reaped = servercpu.children_cpu_seconds()
            procs = [
                subprocess.Popen(
                    [
                        *QUEUECTL,
                        "worker",
                        "start",
                        "--burst",
                        "--count",
                        str(slots),
                        "--queue",
                        queue,
                        *extra,
                    ],
                    env=self.env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(workers)
            ]
            for proc in procs:
                proc.wait()
            worker_cpu = servercpu.children_cpu_seconds() - reaped
            cost = meter.stop() if meter else servercpu.Cost(None, None, None)
            done = backend.list_jobs(queue=queue, limit=self.jobs + 1)
            starts = [j.started_at for j in done if j.started_at]
            ends = [j.finished_at for j in done if j.finished_at]
            completed = sum(j.state is models.JobState.COMPLETED for j in done)
            if completed != self.jobs or not starts or not ends:
                raise RuntimeError(f"drain finished {completed} of {self.jobs} jobs")
            seconds = max((max(ends) - min(starts)).total_seconds(), 1e-6)
            return Drain(
                self.jobs / seconds,
                self.jobs,
                worker_cpu,
                cost.database_s,
                cost.statement_ms,
                cost.server_s,
            )
        finally:
            if meter is not None:
                meter.stop()  # on a failure: the sampling thread ends
            backend.close()
            seed.purge_queue(self.url, queue)
            seed.vacuum(self.url)

    def spawn_ceiling(self, parallel: int | None = None) -> float:
        """`sh -c true` straight from Python at the same parallelism: the shell cost alone."""
        return self.spawn_ceiling_measured(parallel)[0]

    def spawn_ceiling_measured(self, parallel: int | None = None) -> tuple[float, float]:
        """The spawn ceiling's jobs/s and CPU seconds (this process's threads and the shells)."""
        cpu = servercpu.self_cpu_seconds() + servercpu.children_cpu_seconds()
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel or self.workers * self.slots) as pool:
            list(
                pool.map(
                    lambda _: subprocess.run(["/bin/sh", "-c", "true"], check=True),
                    range(self.jobs),
                )
            )
        rate = self.jobs / (time.perf_counter() - started)
        cpu = servercpu.self_cpu_seconds() + servercpu.children_cpu_seconds() - cpu
        return rate, cpu

    # --- enqueue --------------------------------------------------------------------------------
    def enqueue_bulk(self) -> float:
        queue = f"bench-{secrets.token_hex(4)}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "jobs.ndjson"
            line = json.dumps({"command": "true", "queue": queue})
            path.write_text((line + "\n") * self.jobs)
            started = time.perf_counter()
            subprocess.run(
                [*QUEUECTL, "enqueue", "--file", str(path)],
                env=self.env(),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            rate = self.jobs / (time.perf_counter() - started)
        seed.purge_queue(self.url, queue)
        return rate

    def cli_median(self, args: list[str], runs: int = 7) -> float:
        """Median wall time in ms of one CLI invocation."""
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(
                [*QUEUECTL, *args],
                env=self.env(),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    # --- pickup latency -------------------------------------------------------------------------
    def pickup(self) -> list[float]:
        """Enqueue -> start, in seconds, of jobs enqueued one at a time at random moments
        while W idle workers wait (Postgres: LISTEN/NOTIFY; SQLite: data_version watch)."""
        queue = f"bench-{secrets.token_hex(4)}"
        procs = [
            subprocess.Popen(
                [*QUEUECTL, "worker", "start", "--count", str(self.slots), "--queue", queue],
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(self.workers)
        ]
        backend = open_backend(self.url)
        latencies: list[float] = []
        try:
            deadline = time.monotonic() + 30
            while len(backend.list_workers(lease_ttl_s=10)) < self.workers * self.slots:
                if time.monotonic() > deadline:
                    raise RuntimeError("pickup: the workers did not start within 30 s")
                time.sleep(0.05)
            time.sleep(1.0)  # every worker idle, its poll backed off
            rng = random.Random(7)  # noqa: S311 (timing jitter, not security)
            for _ in range(self.samples):
                (job,) = backend.enqueue([models.JobSpec(command="true", queue=queue)])
                while (started := backend.get_job(job.id).started_at) is None:
                    time.sleep(0.001)
                latencies.append((started - job.created_at).total_seconds())
                time.sleep(rng.uniform(0.05, 0.15))  # idle again, at a random poll phase
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait()
            backend.close()
            seed.purge_queue(self.url, queue)
        return latencies

    # --- peers and the bare-SQL ceiling (Postgres) --------------------------------------------
    def peer(self, system: str, *, processes: int, batch: int, jobs: int | None = None) -> float:
        """Drain rate of a peer queue, run by the interpreter of its own environment."""
        return float(
            self.peer_record(system, processes=processes, batch=batch, jobs=jobs)["jobs_per_s"]
        )

    def peer_record(
        self, system: str, *, processes: int, batch: int, jobs: int | None = None
    ) -> dict[str, Any]:
        """peers.py's JSON record: jobs/s, and the CPU its workers and the server used."""
        if self.peers_python is None:
            raise RuntimeError("peer benchmarks need --peers-python")
        # -I: the script's directory is not put on sys.path (nor PYTHON* read), so nothing
        # beside it can shadow a module the peers import; it imports no queuectl module
        script = Path(__file__).with_name("peers.py")
        args = [self.peers_python, "-I", str(script), system, "--dsn", self.url]
        args += ["--jobs", str(jobs or self.jobs), "--processes", str(processes)]
        args += ["--batch", str(batch)]
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{system}: {done.stderr.strip().splitlines()[-1:]}")
        record: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return record

    def sql_ceiling(self, *, connections: int, batch: int, jobs: int | None = None) -> float:
        return self.sql_ceiling_cost(connections=connections, batch=batch, jobs=jobs)[0]

    def sql_ceiling_cost(
        self, *, connections: int, batch: int, jobs: int | None = None
    ) -> tuple[float, float | None]:
        """The bare-SQL loop's jobs/s and its server CPU seconds (None: not readable here)."""
        from queuectl.bench.baresql import sql_ceiling_cost

        n = jobs or self.jobs
        probe = self.server_probe()
        return sql_ceiling_cost(self.url, jobs=n, connections=connections, batch=batch, probe=probe)

    def run(self, *, sections: set[str], progress: Callable[[str], None]) -> list[Result]:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("drain", self._drain_section),
            ("pickup", self._pickup_section),
            ("enqueue", self._enqueue_section),
            ("cli", self._cli_section),
            ("peers", self._peers_section),
            ("history", self._history_section),
            ("matrix", self._matrix_section),
        ]
        for name, step in steps:
            if name in sections:
                progress(f"bench: {name} …")
                step()
        return self.results

    def _drain_section(self) -> None:
        shape = f"{self.jobs} jobs, {self.workers} processes x {self.slots} slots"
        noop = self.drain_measured(noop=True)
        self.add("drain, noop executor", noop.rate, "jobs/s", f"queue overhead only; {shape}")
        shell = self.drain_measured(noop=False)
        self.add("drain, shell executor", shell.rate, "jobs/s", f"/bin/sh -c true; {shape}")
        ceiling, ceiling_cpu = self.spawn_ceiling_measured()
        self.add("spawn ceiling", ceiling, "jobs/s", "sh -c true from Python, same parallelism")
        self.add("shell / spawn ceiling", shell.rate / ceiling, "ratio", "")
        note = f"worker processes' rusage, start-up included; {shape}"
        self.add("worker CPU per 1k jobs (noop)", noop.per_1k(noop.worker_cpu_s), PER_1K, note, 3)
        self.add(
            "worker CPU per 1k jobs (shell)",
            shell.per_1k(shell.worker_cpu_s),
            PER_1K,
            f"the shells included; {shape}",
            3,
        )
        self.add(
            "spawn ceiling CPU per 1k jobs",
            ceiling_cpu * 1000 / self.jobs,
            PER_1K,
            "the Python threads and the shells",
            3,
        )
        if (probe := self.server_probe()) is not None:
            for label, drain in (("noop", noop), ("shell", shell)):
                self._db_rows(f"db CPU per 1k jobs ({label})", drain, probe)

    def _db_rows(self, name: str, drain: Drain, probe: servercpu.Probe) -> None:
        """The server's CPU per 1k jobs (n/a, saying why, when it cannot be read here), and
        pg_stat_statements' time when the server has it loaded."""
        if drain.db_cpu_s is None:
            self.add(name, None, PER_1K, f"n/a ({probe.why})")
        else:
            note = "its database's backends + WAL writer, checkpointer..."
            if drain.db_server_s is not None:
                note += f"; whole server {drain.per_1k(drain.db_server_s):.3f}"
            self.add(name, drain.per_1k(drain.db_cpu_s), PER_1K, note, 3)
        if drain.db_statement_ms is not None:
            stmt = name.replace("db CPU", "db statement time")
            self.add(
                stmt,
                drain.per_1k(drain.db_statement_ms / 1000),
                "s / 1k jobs",
                "pg_stat_statements exec + plan time",
                3,
            )

    def _pickup_section(self) -> None:
        ms = sorted(x * 1000 for x in self.pickup())
        shape = f"{len(ms)} jobs, one at a time, {self.workers} idle x {self.slots} slots"
        for q in (50, 95, 99):
            value = ms[min(len(ms) - 1, max(0, round(q / 100 * len(ms)) - 1))]
            self.add(f"pickup latency p{q}", value, "ms", f"enqueue -> start; {shape}")

    def _peers_section(self) -> None:
        """Side by side on Postgres: our noop drain, PGQueuer and Procrastinate at the same
        batch (= our slots), and the bare-SQL claim/complete loop."""
        if not self.url.startswith("postgres"):
            raise RuntimeError("the peers section needs a PostgreSQL --db")
        shape = f"{self.jobs} jobs, {self.workers} processes, batch {self.slots}"
        drain = self.drain_measured(noop=True)
        ours = drain.rate
        self.add("queuectl noop drain", ours, "jobs/s", shape)
        probe = self.server_probe()
        assert probe is not None  # Postgres
        self._db_rows("queuectl db CPU per 1k jobs", drain, probe)
        note = f"worker processes' rusage, start-up included; {shape}"
        self.add(
            "queuectl worker CPU per 1k jobs", drain.per_1k(drain.worker_cpu_s), PER_1K, note, 3
        )
        if self.peers_python is not None:
            record = self.peer_record("pgqueuer", processes=self.workers, batch=self.slots)
            pgq = float(record["jobs_per_s"])
            self.add("PGQueuer drain", pgq, "jobs/s", shape)
            self.add("queuectl / PGQueuer", ours / pgq, "ratio", "target >= 1.5 (issue 16)")
            self._peer_db_rows(drain, record, probe, shape)
            # Procrastinate and the commit-per-job loop run at a flat few hundred jobs/s: a
            # capped N gives the same rate without minutes of waiting
            slow = min(self.jobs, SLOW_JOBS)
            proc = self.peer("procrastinate", processes=self.workers, batch=self.slots, jobs=slow)
            note = f"{slow} jobs, {self.workers} processes, concurrency {self.slots}"
            self.add("Procrastinate drain", proc, "jobs/s", note)
            self.add("queuectl / Procrastinate", ours / proc, "ratio", "target >= 10")
        slow = min(self.jobs, SLOW_JOBS)
        one = self.sql_ceiling(connections=1, batch=1, jobs=slow)
        note = f"claim, then complete; {slow} jobs"
        self.add("bare SQL, 1 connection, 1 per commit", one, "jobs/s", note)
        ceiling, ceiling_cpu = self.sql_ceiling_cost(connections=2, batch=100)
        self.add("bare SQL, 2 connections, 100 per batch", ceiling, "jobs/s", "the ceiling")
        self.add("queuectl / bare SQL ceiling", ours / ceiling, "ratio", "target >= 0.5")
        if ceiling_cpu is not None:  # the floor of a SKIP LOCKED queue's database work
            per_1k = ceiling_cpu * 1000 / self.jobs
            self.add("bare SQL db CPU per 1k jobs", per_1k, PER_1K, "2 connections x 100", 3)

    def _peer_db_rows(
        self, ours: Drain, record: dict[str, Any], probe: servercpu.Probe, shape: str
    ) -> None:
        """PGQueuer's server and worker CPU per 1k jobs (peers.py measures them from the
        release of its connected workers to their exit) beside ours, and the ratios."""
        theirs = Drain(
            float(record["jobs_per_s"]),
            int(record["jobs"]),
            float(record["worker_cpu_s"]),
            _opt(record.get("database_cpu_s")),
            _opt(record.get("statement_ms")),
            _opt(record.get("server_cpu_s")),
        )
        self._db_rows("PGQueuer db CPU per 1k jobs", theirs, probe)
        if ours.db_cpu_s is not None and theirs.db_cpu_s:
            ratio = ours.per_1k(ours.db_cpu_s) / theirs.per_1k(theirs.db_cpu_s)
            self.add("db CPU queuectl / PGQueuer", ratio, "ratio", "target <= 1.0")
        else:
            self.add("db CPU queuectl / PGQueuer", None, "ratio", f"n/a ({probe.why})")
        if ours.db_statement_ms is not None and theirs.db_statement_ms:
            ratio = ours.per_1k(ours.db_statement_ms) / theirs.per_1k(theirs.db_statement_ms)
            self.add("db statement time queuectl / PGQueuer", ratio, "ratio", "target <= 1.0")
        note = f"worker processes' rusage, start-up included; {shape}"
        self.add(
            "PGQueuer worker CPU per 1k jobs", theirs.per_1k(theirs.worker_cpu_s), PER_1K, note, 3
        )

    def _history_section(self) -> None:
        """Noop drain on an empty table, then with `history` completed jobs in it."""
        empty = self.drain(noop=True)
        queue = f"bench-history-{secrets.token_hex(4)}"
        try:
            seed.seed_completed(self.url, queue, self.history)
            full = self.drain(noop=True)
        finally:
            seed.purge_queue(self.url, queue)
            seed.vacuum(self.url)
        self.add("drain, noop, empty table", empty, "jobs/s", "")
        self.add(f"drain, noop, {self.history:,} completed rows", full, "jobs/s", "")
        self.add("with history / empty", full / empty, "ratio", "target >= 0.8")

    def _matrix_section(self) -> None:
        """Throughput against workers and slots, both executors and the spawn ceiling at the
        same parallelism: the data of the plot (`--json`, then benchmarks/plot.py)."""
        for workers in (1, 2, 4):
            for slots in (1, 4, 16):
                row: dict[str, Any] = {"workers": workers, "slots": slots}
                row["noop"] = self.drain(noop=True, workers=workers, slots=slots)
                row["shell"] = self.drain(noop=False, workers=workers, slots=slots)
                row["spawn"] = self.spawn_ceiling(workers * slots)
                self.series.append(row)
                for key in ("noop", "shell", "spawn"):
                    self.add(f"matrix {workers}x{slots} {key}", row[key], "jobs/s", "")

    def _enqueue_section(self) -> None:
        self.add("enqueue --file (bulk)", self.enqueue_bulk(), "jobs/s", f"{self.jobs} jobs")
        one = self.cli_median(["enqueue", '{"command": "true", "queue": "bench-single"}'])
        self.add("enqueue, one process per job", 1000 / one, "jobs/s", f"median {one:.0f} ms")
        seed.purge_queue(self.url, "bench-single")

    def _cli_section(self) -> None:
        for args in (["--help"], ["status"], ["list", "--json"]):
            self.add(f"queuectl {' '.join(args)}", self.cli_median(args), "ms", "median wall time")
        floor = [sys.executable, "-c", "import typer"]
        times = []
        for _ in range(7):
            started = time.perf_counter()
            subprocess.run(floor, check=True)
            times.append((time.perf_counter() - started) * 1000)
        self.add("python -c 'import typer'", statistics.median(times), "ms", "the floor")


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def as_json(
    results: list[Result],
    *,
    url: str,
    params: dict[str, Any],
    series: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "params": params,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "database": url.split("://", 1)[0],
        "results": [r.__dict__ for r in results],
    }
    if series:
        doc["series"] = series
    return doc
