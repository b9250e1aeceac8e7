"""The bare-SQL ceiling of `queuectl bench`: every row ends completed, the rate is real."""

from __future__ import annotations

import psycopg
import pytest

from queuectl.bench.baresql import sql_ceiling


def _scratch_databases(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_peer\\_sql\\_%'"
        ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.integration
def test_two_connections_complete_every_job_and_drop_their_database(postgres_url: str) -> None:
    before = _scratch_databases(postgres_url)
    rate = sql_ceiling(postgres_url, jobs=2000, connections=2, batch=100)  # raises unless all done
    assert rate > 0
    assert _scratch_databases(postgres_url) <= before


@pytest.mark.integration
def test_rejects_a_batch_of_zero(postgres_url: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        sql_ceiling(postgres_url, jobs=10, connections=1, batch=0)
