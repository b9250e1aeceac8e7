"""Each worker fast path switched off and on: noop drain rate of one worker process.

    .venv/bin/python benchmarks/fastpaths.py [--jobs 20000] [--slots 100] [--postgres URL]

One in-process worker (`Worker(executor=NoopExecutor())`, burst) drains N jobs of its own
queue; every configuration runs 3 times in a fresh interpreter and the median is printed.
Switches:
- batched completion off: every result written on its own (a batch of 1 never lingers);
- prepared statements off (Postgres): psycopg's prepare_threshold=None;
- claim batch: the slot count, 1 vs --slots.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
from queuectl import completer, config, logs, models
from queuectl.backends import open_backend
from queuectl.bench import seed
from queuectl.executors import NoopExecutor
from queuectl.worker import Worker

url, jobs, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
batched, prepared = sys.argv[4] == "1", sys.argv[5] == "1"
logs.configure(fmt="json", level="error")
if not batched:
    completer.MAX_BATCH = 1  # no batch: each result is written alone, without a linger
pg = url.startswith("postgres")
backend = open_backend(url, pool_size=slots + 4) if pg else open_backend(url)
if not prepared:  # the connector's private pool, rebuilt without server-side prepares
    pg_connector = backend._pg
    pg_connector.kwargs["prepare_threshold"] = None
    pg_connector._pool.close()
    from psycopg_pool import ConnectionPool
    pg_connector._pool = ConnectionPool(
        url, min_size=1, max_size=slots + 4, kwargs=pg_connector.kwargs, open=True
    )
backend.migrate()
seed.purge_queue(url, "fastpaths")  # the benchmark's own SQL
backend.enqueue([models.JobSpec(command="true", queue="fastpaths") for _ in range(jobs)])
settings = config.load_settings({})
worker = Worker(backend, settings, executor=NoopExecutor(), count=slots, queues=["fastpaths"])
started = time.perf_counter()
worker.run(burst=True)
seconds = time.perf_counter() - started
seed.purge_queue(url, "fastpaths")  # the benchmark's own SQL
print(json.dumps({"jobs_per_s": jobs / seconds}))
"""


def measure(url: str, jobs: int, slots: int, *, batched: bool, prepared: bool) -> float:
    rates = []
    for _ in range(3):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                url,
                str(jobs),
                str(slots),
                str(int(batched)),
                str(int(prepared)),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "QUEUECTL_LOG_LEVEL": "error"},
        )
        rates.append(float(json.loads(done.stdout.strip().splitlines()[-1])["jobs_per_s"]))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--postgres", default=os.environ.get("QUEUECTL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{tmp}/fastpaths.db"}
        if args.postgres:
            urls["postgres"] = args.postgres
        print("| backend | configuration | jobs/s (median of 3) |")
        print("|---|---|---|")
        for name, url in urls.items():
            configs = [
                (f"all fast paths, {args.slots} slots", args.slots, True, True),
                ("batched completion off", args.slots, False, True),
                ("claim batch of 1 (1 slot)", 1, True, True),
            ]
            if name == "postgres":
                configs.append(("prepared statements off", args.slots, True, False))
            for label, slots, batched, prepared in configs:
                rate = measure(url, args.jobs, slots, batched=batched, prepared=prepared)
                print(f"| {name} | {label} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
