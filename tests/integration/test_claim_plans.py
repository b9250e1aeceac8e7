"""The claim reads claimable rows in order from an index: no sort of the backlog, no scan."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from queuectl import models
from queuectl.backends import open_backend, sqlite_connector
from queuectl.backends import postgres as pg
from queuectl.backends import sqlite as lite

BACKLOG = 3000


def _fill(url: str) -> None:
    with contextlib.closing(open_backend(url)) as backend:
        specs = [
            models.JobSpec(command="true", queue=("a", "b", "c")[i % 3]) for i in range(BACKLOG)
        ]
        backend.enqueue(specs)


@pytest.mark.parametrize("queues", [[], ["a"], ["a", "b"]])
def test_sqlite_claim_plan_uses_the_claim_indexes_and_never_sorts_the_backlog(
    tmp_path: Path, queues: list[str]
) -> None:
    path = tmp_path / "plan.db"
    _fill(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    try:
        sql, params = lite._pick(queues)
        params |= {"now": time.time(), "limit": 4}
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        index = "queuectl_jobs_claim_queue" if queues else "queuectl_jobs_claim"
        assert f"USING INDEX {index}" in plan
        assert "queuectl_jobs_state_seq" not in plan
        # with queues, only the few rows each LIMITed pick returned are merged
        if not queues:
            assert "TEMP B-TREE" not in plan
        ids = [r[0] for r in conn.execute(sql, params)]
        assert len(ids) == 4
        update = {"ids": json.dumps(ids), "slots": "[]", "host": "h", "now": 0, "lease_s": 1}
        plan = " | ".join(
            r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sqlite_connector.Q["claim"], update)
        )
        assert "USING INDEX sqlite_autoindex_queuectl_jobs_1 (id=?)" in plan, plan
        assert "state_seq" not in plan
    finally:
        conn.close()


@pytest.mark.integration
@pytest.mark.parametrize("queues", [[], ["a"], ["a", "b"]])
def test_postgres_claim_plan_reads_the_claim_index_in_order(pg_url: str, queues: list[str]) -> None:
    import psycopg

    _fill(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("ANALYZE queuectl_jobs")
        params = {"limit": 4, "slots": ["s1", "s2", "s3", "s4"], "host": "h", "lease_s": 10.0}
        rows = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + pg._CLAIM[bool(queues)],
            params | {"queues": queues},
        ).fetchone()
        conn.rollback()
    assert rows is not None
    nodes = _nodes(rows[0][0]["Plan"])
    scans = [n for n in nodes if n.get("Relation Name") == "queuectl_jobs" and "Index Name" in n]
    picks = [
        n for n in scans if n["Index Name"] in ("queuectl_jobs_claim", "queuectl_jobs_claim_queue")
    ]
    assert picks, [n.get("Index Name") for n in scans]
    # the pick reads a few index entries in claim order, not the backlog (3,000 jobs) ...
    for node in picks:
        read = _int(node["Actual Rows"]) + _int(node.get("Rows Removed by Filter", 0))
        assert read <= 50 * max(1, len(queues)), node
    # ... and sorts at most the few rows each queue's range returned
    sorted_rows = [_int(n["Actual Rows"]) for n in nodes if n["Node Type"] == "Sort"]
    assert all(n <= 4 * max(1, len(queues)) for n in sorted_rows), sorted_rows


def _int(value: object) -> int:
    assert isinstance(value, int | float)
    return int(value)


def _nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    out = [plan]
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        out.extend(_nodes(child))
    return out
