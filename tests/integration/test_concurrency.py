"""Many claimers at once, each job claimed exactly once (Postgres, and SQLite threads)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from queuectl import models
from queuectl.backends import open_backend

THREADS = 8
JOBS_PER_THREAD = 500


@pytest.mark.integration
def test_eight_threads_claim_each_of_4000_jobs_exactly_once(pg_url: str) -> None:
    setup = open_backend(pg_url)
    setup.enqueue([models.JobSpec(command=f"echo {i}") for i in range(THREADS * JOBS_PER_THREAD)])
    setup.close()
    claimed: list[list[str]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def claimer(n: int) -> None:
        backend = open_backend(pg_url)  # one connection per thread, as separate workers have
        try:
            start.wait()
            slots = [f"t{n}-{i}" for i in range(5)]
            while jobs := backend.claim(slots, (), host="h", lease_ttl_s=60):
                for job in jobs:
                    claimed[n].append(job.id)
                    ok = models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0)
                    assert backend.finish(job, ok, None)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            failures.append(exc)
        finally:
            backend.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    counts = Counter(job_id for ids in claimed for job_id in ids)
    assert len(counts) == THREADS * JOBS_PER_THREAD
    assert set(counts.values()) == {1}
    assert sum(1 for ids in claimed if ids) >= THREADS // 2  # the work was really shared
    check = open_backend(pg_url)
    try:
        assert check.stats(lease_ttl_s=30).by_state == {"completed": THREADS * JOBS_PER_THREAD}
    finally:
        check.close()


def test_sqlite_claims_across_threads_are_exclusive_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    setup = open_backend(url)
    setup.enqueue([models.JobSpec(command="true") for _ in range(800)])
    setup.close()
    seen: list[str] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        backend = open_backend(url)
        try:
            while jobs := backend.claim([f"s{n}-0", f"s{n}-1"], (), host="h", lease_ttl_s=60):
                with lock:
                    seen.extend(j.id for j in jobs)
        finally:
            backend.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(seen) == 800
    assert len(set(seen)) == 800
