"""`queuectl bench`: drain throughput, the spawn ceiling, enqueue rates, pickup latency and
CLI start-up, measured side by side on one database."""

from __future__ import annotations

import json
import os
import secrets
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

QUEUECTL = [sys.executable, "-m", "queuectl"]


@dataclass
class Result:
    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Bench:
    url: str
    jobs: int = 2000
    workers: int = 2
    slots: int = 4
    results: list[Result] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "QUEUECTL_DATABASE_URL": self.url, "QUEUECTL_LOG_LEVEL": "error"}

    def add(self, name: str, value: float, unit: str, note: str = "") -> None:
        self.results.append(Result(name, round(value, 2), unit, note))

    # --- drain ----------------------------------------------------------------------------------
    def drain(self, *, noop: bool) -> float:
        """Jobs/s from the first start to the last finish of N jobs, W processes x C slots."""
        queue = f"bench-{secrets.token_hex(4)}"
        backend = open_backend(self.url)
        try:
            command = "true"
            backend.enqueue(
                [models.JobSpec(command=command, queue=queue) for _ in range(self.jobs)]
            )
            extra = ["--noop"] if noop else []
            procs = [
                subprocess.Popen(
                    [
                        *QUEUECTL,
                        "worker",
                        "start",
                        "--burst",
                        "--count",
                        str(self.slots),
                        "--queue",
                        queue,
                        *extra,
                    ],
                    env=self.env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(self.workers)
            ]
            for proc in procs:
                proc.wait()
            done = backend.list_jobs(queue=queue, limit=self.jobs + 1)
            starts = [j.started_at for j in done if j.started_at]
            ends = [j.finished_at for j in done if j.finished_at]
            completed = sum(j.state is models.JobState.COMPLETED for j in done)
            if completed != self.jobs or not starts or not ends:
                raise RuntimeError(f"drain finished {completed} of {self.jobs} jobs")
            seconds = max((max(ends) - min(starts)).total_seconds(), 1e-6)
            return self.jobs / seconds
        finally:
            backend.purge_queue(queue)
            backend.close()

    def spawn_ceiling(self) -> float:
        """`sh -c true` straight from Python at the same parallelism: the shell cost alone."""
        started = time.perf_counter()
        with ThreadPoolExecutor(self.workers * self.slots) as pool:
            list(
                pool.map(
                    lambda _: subprocess.run(["/bin/sh", "-c", "true"], check=True),
                    range(self.jobs),
                )
            )
        return self.jobs / (time.perf_counter() - started)

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
        backend = open_backend(self.url)
        backend.purge_queue(queue)
        backend.close()
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

    def run(self, *, sections: set[str], progress: Callable[[str], None]) -> list[Result]:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("drain", self._drain_section),
            ("enqueue", self._enqueue_section),
            ("cli", self._cli_section),
        ]
        for name, step in steps:
            if name in sections:
                progress(f"bench: {name} …")
                step()
        return self.results

    def _drain_section(self) -> None:
        shape = f"{self.jobs} jobs, {self.workers} processes x {self.slots} slots"
        noop = self.drain(noop=True)
        self.add("drain, noop executor", noop, "jobs/s", f"queue overhead only; {shape}")
        shell = self.drain(noop=False)
        self.add("drain, shell executor", shell, "jobs/s", f"/bin/sh -c true; {shape}")
        ceiling = self.spawn_ceiling()
        self.add("spawn ceiling", ceiling, "jobs/s", "sh -c true from Python, same parallelism")
        self.add("shell / spawn ceiling", shell / ceiling, "ratio", "")

    def _enqueue_section(self) -> None:
        self.add("enqueue --file (bulk)", self.enqueue_bulk(), "jobs/s", f"{self.jobs} jobs")
        one = self.cli_median(["enqueue", '{"command": "true", "queue": "bench-single"}'])
        self.add("enqueue, one process per job", 1000 / one, "jobs/s", f"median {one:.0f} ms")
        backend = open_backend(self.url)
        backend.purge_queue("bench-single")
        backend.close()

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


def as_json(results: list[Result], *, url: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": params,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "results": [r.__dict__ for r in results],
    } | {"database": url.split("://", 1)[0]}
