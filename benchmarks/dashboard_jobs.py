"""The dashboard's jobs list against 1,000,000 jobs in PostgreSQL: median response times.

.venv/bin/python benchmarks/dashboard_jobs.py --postgres postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import psycopg
from starlette.testclient import TestClient

from queuectl.backends import open_backend
from queuectl.web.app import create_app

FILL = """
INSERT INTO queuectl_jobs (id, command, state, queue, priority, max_retries, attempts,
                           run_at, created_at, updated_at, finished_at)
SELECT 'b' || lpad(i::text, 7, '0'),
       'echo job ' || i,
       (ARRAY['completed','completed','completed','completed','dead','failed','pending',
              'cancelled'])[1 + i %% 8],
       (ARRAY['default','mail','reports'])[1 + i %% 3],
       0, 3, 1, now(), now(), now(),
       CASE WHEN i %% 8 IN (0, 1, 2, 3, 4, 7) THEN now() END
  FROM generate_series(1, %(n)s) AS i
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", required=True, help="a server where we may create a db")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    name = f"queuectl_bench_{uuid.uuid4().hex[:8]}"
    base = args.postgres.rsplit("/", 1)[0]
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    url = f"{base}/{name}"
    try:
        backend = open_backend(url)
        backend.migrate()
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL, {"n": args.jobs})
            conn.execute("VACUUM ANALYZE queuectl_jobs")
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.1f}s")
        client = TestClient(create_app(backend))
        pages = {
            "/jobs (newest 50)": "/jobs",
            "/jobs?state=dead": "/jobs?state=dead",
            "/jobs?queue=mail": "/jobs?queue=mail",
            "/jobs page in the middle": "/jobs?before=b0500000",
            "/jobs?q=<exact id>": "/jobs?q=b0123456",
            "/ (overview)": "/",
        }
        print(f"{'page':<28} {'median':>8} {'p95':>8}   ({args.runs} runs, after 2 warm-ups)")
        for label, path in pages.items():
            for _ in range(2):
                client.get(path)
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                assert client.get(path).status_code == 200
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            p95 = times[max(0, round(0.95 * len(times)) - 1)]
            print(f"{label:<28} {statistics.median(times):7.1f}ms {p95:7.1f}ms")
        backend.close()
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


if __name__ == "__main__":
    main()
