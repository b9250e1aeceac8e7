"""Worst-case crash recovery at default settings: SIGKILL a worker just after it renewed its
lease (the worst moment) and time until the job is recovered and until it completes again.

    .venv/bin/python benchmarks/recovery.py [--runs 3] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

Q = [sys.executable, "-m", "queuectl"]
COMMAND = 'if [ "$QUEUECTL_ATTEMPT" = 1 ]; then sleep 120; fi'


def cli(env: dict[str, str], *args: str) -> object:
    out = subprocess.run([*Q, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def state(env: dict[str, str], job_id: str) -> str:
    shown = cli(env, "show", job_id, "--json")
    assert isinstance(shown, dict)
    return str(shown["state"])


def worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*Q, "worker", "start"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def one_run(env: dict[str, str], n: int, *, survivor_running: bool) -> tuple[float, float]:
    job_id = f"victim-{uuid.uuid4().hex[:8]}"
    cli(env, "enqueue", json.dumps({"id": job_id, "command": COMMAND}))
    victim = worker(env)
    while state(env, job_id) != "processing":
        time.sleep(0.05)
    survivor = worker(env) if survivor_running else None
    # wait for a heartbeat (it renews the lease in the same transaction), then kill at once
    from queuectl.backends import open_backend

    backend = open_backend(env["QUEUECTL_DATABASE_URL"])
    try:
        while True:
            mine = [w for w in backend.list_workers(lease_ttl_s=10) if w.pid == victim.pid]
            if mine and (mine[0].heartbeat_age_s or 1) < 0.05:
                break
            time.sleep(0.01)
    finally:
        backend.close()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = time.monotonic()
    if survivor is None:
        survivor = worker(env)  # the "nothing was running at crash time" case
    recovered = completed = 0.0
    while True:
        current = state(env, job_id)
        if current != "processing" and not recovered:
            recovered = time.monotonic() - killed
        if current == "completed":
            completed = time.monotonic() - killed
            break
        time.sleep(0.1)
    survivor.send_signal(signal.SIGTERM)
    survivor.wait()
    return recovered, completed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("QUEUECTL_TEST_DATABASE_URL"))
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls: dict[str, str] = (
            {} if args.skip_sqlite else {"sqlite": f"sqlite:///{tmp}/recovery.db"}
        )
        if args.postgres:
            urls["postgres"] = args.postgres
        for name, url in urls.items():
            env = {**os.environ, "QUEUECTL_DATABASE_URL": url}
            subprocess.run([*Q, "db", "migrate"], env=env, check=True, capture_output=True)
            for survivor in (True, False):
                results = [one_run(env, i, survivor_running=survivor) for i in range(args.runs)]
                rec = [r for r, _ in results]
                done = [c for _, c in results]
                label = "survivor running" if survivor else "new worker after"
                print(
                    f"{name:<8} {label:<17} recovered: median {statistics.median(rec):5.1f}s "
                    f"max {max(rec):5.1f}s | runs again, done: median "
                    f"{statistics.median(done):5.1f}s max {max(done):5.1f}s  ({args.runs} runs)"
                )


if __name__ == "__main__":
    main()
