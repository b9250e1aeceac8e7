"""What a queue's limits cost the claim: noop drains of one queue unlimited, under a
concurrency limit that never binds, one that does, and a rate limit that never binds.

    python benchmarks/limited_claim.py DATABASE_URL [--jobs 10000] [--rounds 3]

Each round runs every mode once (interleaved, so drift hits them alike) on a fresh queue:
2 worker processes x 4 slots, `--burst --noop` (the queue's own cost, no shells). Prints the
median jobs/s per mode and its ratio to the unlimited drain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from queuectl import Client

MODES: dict[str, dict[str, object]] = {
    "unlimited": {},
    "concurrency 64 (never binds: 8 slots)": {"concurrency": 64},
    "concurrency 4 (binds)": {"concurrency": 4},
    "rate 100000/1s (never binds)": {"rate": "100000/1s"},
}
QUEUE = "flowbench"


def drain(url: str, jobs: int, limits: dict[str, object]) -> float:
    with Client(url) as client:
        client.migrate()
        client.set_queue(QUEUE, concurrency=None, rate=None)
        if limits:
            client.set_queue(QUEUE, **limits)
        client.enqueue_bulk([{"command": "true", "queue": QUEUE} for _ in range(jobs)])
    env = {**os.environ, "QUEUECTL_DATABASE_URL": url, "QUEUECTL_LOG_LEVEL": "warning"}
    args = [sys.executable, "-m", "queuectl", "worker", "start", "--count", "4"]
    args += ["--burst", "--noop", "--queue", QUEUE]
    started = time.perf_counter()
    procs = [subprocess.Popen(args, env=env) for _ in range(2)]
    for proc in procs:
        proc.wait(timeout=600)
    took = time.perf_counter() - started
    with Client(url) as client:
        done = client.list(queue=QUEUE, state="completed", limit=jobs + 1)
        assert len(done) == jobs, len(done)
        client.backend.prune_finished(client.get(done[0].id).state, older_than_s=0)
    return jobs / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(opts.rounds):
        for mode, limits in MODES.items():
            rates[mode].append(drain(opts.url, opts.jobs, limits))
    base = statistics.median(rates["unlimited"])
    for mode, values in rates.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{mode:40} {median:8,.0f} jobs/s  {median / base:.2f}x  ({runs})")


if __name__ == "__main__":
    main()
