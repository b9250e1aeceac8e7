"""Enqueue -> start latency with one idle worker: p50/p95/max per backend.

    .venv/bin/python benchmarks/pickup_latency.py [--jobs 50] [--postgres URL]

Postgres wakes the worker with LISTEN/NOTIFY; SQLite workers poll (at most every 0.2 s).
Jobs are enqueued one at a time at random moments, so the poll phase is sampled fairly.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from queuectl import models
from queuectl.backends import open_backend


def measure(url: str, jobs: int) -> list[float]:
    env = {**os.environ, "QUEUECTL_DATABASE_URL": url}
    q = [sys.executable, "-m", "queuectl"]
    subprocess.run([*q, "db", "migrate"], env=env, check=True, capture_output=True)
    worker = subprocess.Popen(
        [*q, "worker", "start"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    backend = open_backend(url)
    latencies = []
    try:
        while not backend.list_workers(lease_ttl_s=10):
            time.sleep(0.05)
        time.sleep(1.5)  # idle long enough for the poll to back off fully
        rng = random.Random(7)  # noqa: S311 (timing jitter, not security)
        tag = uuid.uuid4().hex[:6]
        for i in range(jobs):
            (job,) = backend.enqueue([models.JobSpec(command="true", id=f"lat-{tag}-{i}")])
            while (started := backend.get_job(job.id).started_at) is None:
                time.sleep(0.002)
            latencies.append((started - job.created_at).total_seconds())
            time.sleep(rng.uniform(0.3, 0.6))  # back to idle before the next one
    finally:
        backend.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--postgres", default=os.environ.get("QUEUECTL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{tmp}/latency.db"}
        if args.postgres:
            urls["postgres"] = args.postgres
        for name, url in urls.items():
            ms = sorted(x * 1000 for x in measure(url, args.jobs))
            p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
            print(
                f"{name:<8} enqueue->start over {len(ms)} jobs: p50 {statistics.median(ms):6.1f} ms"
                f"  p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms"
            )


if __name__ == "__main__":
    main()
