"""Wall time of CLI commands on SQLite: median (and min/max) of N runs each.

.venv/bin/python benchmarks/cli_timing.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "QUEUECTL_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}
        q = [sys.executable, "-m", "queuectl"]
        subprocess.run([*q, "db", "migrate"], env=env, check=True, capture_output=True)
        cases = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "queuectl --help": [*q, "--help"],
            "queuectl enqueue": [*q, "enqueue", '{"command": "true"}'],
            "queuectl status": [*q, "status"],
            "queuectl list --json": [*q, "list", "--json"],
        }
        print(f"{'command':<26} {'median':>8} {'min':>8} {'max':>8}   ({args.runs} runs)")
        for name, argv in cases.items():
            times = [timed(argv, env) for _ in range(args.runs)]
            print(
                f"{name:<26} {statistics.median(times) * 1000:7.0f}ms"
                f" {min(times) * 1000:7.0f}ms {max(times) * 1000:7.0f}ms"
            )


if __name__ == "__main__":
    main()
