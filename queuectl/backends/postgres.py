"""PostgresBackend: the Backend contract on PostgreSQL through psycopg 3.

store.SqlBackend writes the one-query methods; this module keeps what only Postgres does:
the SKIP LOCKED claim, COPY for bulk enqueue, finish batches as arrays, LISTEN/NOTIFY and the
advisory-locked migration. postgres_connector.py holds the connections.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from queuectl import config, models
from queuectl.backends import common, flow, secrets_of, store
from queuectl.backends.base import Enqueued, Names, OnError, OnNotify
from queuectl.backends.connector import Row, Session
from queuectl.backends.postgres_connector import (
    MIGRATIONS,
    PgConnector,
    PgSession,
    Q,
    first_line,
)

if TYPE_CHECKING:
    from queuectl.backends.base import Running, Workers

# the claim statement for every queue (False) and for a list of queues (True)
_CLAIM = {
    bool(named): Q["claim"].replace("/* pick */", Q["pick_queues" if named else "pick_any"])
    for named in (0, 1)
}
# a worker serving every queue while some queue is paused or limited: per queue, over the
# queues that have claimable jobs
_UNNEST = "unnest(%(queues)s::text[])"
assert _UNNEST in Q["pick_queues"]
_CLAIM_ACTIVE = Q["claim"].replace(
    "/* pick */", Q["pick_queues"].replace(_UNNEST, "(" + Q["active_queues"] + ")")
)
# the limited queues' claim: their own pick, the same update
_CLAIM_LIMITED = Q["claim"].replace("/* pick */", Q["pick_limited"])
_DONE_PAYLOAD = 7000  # bytes of job ids per NOTIFY (the server's limit is 8000)
_MIGRATE_LOCK = 0x71756575  # pg_advisory_xact_lock key: one migrator at a time
_LISTEN_RETRY_S = (1.0, 8.0)  # the LISTEN session reconnects after 1, 2, 4, 8, 8 ... s


class PostgresBackend(store.SqlBackend):
    notifies = True
    single_host = False
    idle_beat_is_one_statement = True  # beat_workers, for every slot at once

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 0,
        pooler: str | None = None,
        listen_url: str | None = None,
    ) -> None:
        """`pooler` and `listen_url`: None reads QUEUECTL_DATABASE_POOLER and
        QUEUECTL_LISTEN_URL (postgres_connector.py)."""
        self.url = url
        self._pg = PgConnector(url, pool_size=pool_size, pooler=pooler, listen_url=listen_url)
        self._listening = False
        super().__init__(self._pg)

    def connections(self) -> int:
        """Database connections this process holds now: the pool's (or the one connection)
        plus the LISTEN connection's."""
        return self._pg.connections() + self._listening

    def hold_writes(self) -> contextlib.AbstractContextManager[None]:
        return self._pg.gate.hold()

    def close(self) -> None:
        self._pg.close()

    def migrate(self) -> int:
        with self._pg.transaction() as s:
            cur = s.cur
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS queuectl_schema ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT coalesce(max(version), 0) AS v FROM queuectl_schema")
            current = int((cur.fetchone() or {"v": 0})["v"])
            common.check_schema_version(current, len(MIGRATIONS))
            for name, sql in MIGRATIONS.items():
                version = int(name.removeprefix("v"))
                if version > current:
                    cur.execute(sql.encode())
                    cur.execute("INSERT INTO queuectl_schema (version) VALUES (%s)", (version,))
                    current = version
            return int(current)

    # --- jobs ------------------------------------------------------------------------------------
    def _insert(self, s: Session, specs: Sequence[models.JobSpec]) -> Enqueued:
        assert isinstance(s, PgSession)
        job_ids = common.check_ids(specs)
        snapshot = s.one("enqueue_snapshot")
        assert snapshot is not None
        # now() is the transaction's start: created_at and updated_at default to it too
        now = snapshot["now"]
        rows = common.job_rows(specs, job_ids, config.policy_from_rows(snapshot["settings"]), now)
        # COPY streams the rows in one go (values resolved here, nothing read back); a taken
        # id fails it with a UniqueViolation, which the connector makes DuplicateJob.
        # Times go as ISO text: psycopg's datetime dumper costs more than the rest of a row.
        stamp = now.isoformat()
        with s.cur.copy(Q["enqueue_copy"]) as copy:
            write = copy.write_row
            for job_id, command, queue, priority, run_at, timeout_s, retries, expires in rows:
                write(
                    (
                        job_id,
                        command,
                        queue,
                        priority,
                        stamp if run_at is now else run_at.isoformat(),
                        timeout_s,
                        retries,
                        None if expires is None else expires.isoformat(),
                    )
                )
        self._notify(s, Counter(queue for _, _, queue, _, run_at, *_ in rows if run_at <= now))
        return Enqueued(now, rows)

    # --- workers ---------------------------------------------------------------------------------
    def _claim(self, slots: Names, queues: Names, host: str, lease_s: float) -> list[Row]:
        params = _claim_params(slots, queues, host, lease_s)
        sql = _CLAIM[bool(queues)] if queues or not self._any_flow else _CLAIM_ACTIVE
        # one statement, atomic by itself: no BEGIN and COMMIT (one round trip, not three)
        with self._pg.single() as s:
            s.cur.execute(sql, params)
            return s.cur.fetchall()

    def finish_many(self, items: Sequence[models.Finish]) -> list[bool]:
        if not items:
            return []
        # One statement updates a row once, from an arbitrary one of the items naming it, and
        # would report every such item applied; so a job named again goes to a later
        # statement, which finds it finished (the k-th report of a job runs in round k).
        rounds: list[list[int]] = []
        reports: dict[str, int] = {}  # job id -> its reports so far in this batch
        for index, item in enumerate(items):
            k = reports.get(item.job.id, 0)
            reports[item.job.id] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(index)
        with self._pg.transaction() if len(rounds) > 1 else self._pg.single() as s:
            applied, rows = self._finish_rounds(s, items, rounds)
        # What the ended jobs set off, in a transaction after theirs: only then does the
        # last of several dependencies completing at once find the others completed. A
        # crash in between leaves it to the orchestrator's settle sweep.
        ended = flow.flagged(rows)
        limited = Counter(r["queue"] for r in rows if r["queue"] in (self._limited or ()))
        if ended or limited:
            with self._pg.transaction() as s:
                if ended:
                    flow.settle(s, self._pg, ended, self._notify, self._done)
                if limited:
                    self._notify(s, limited)  # a limited queue has room again
        return applied

    def _finish_in(self, s: Session, items: Sequence[models.Finish]) -> list[bool]:
        applied, rows = self._finish_rounds(s, items, [list(range(len(items)))])
        self._settle(s, rows)
        return applied

    @staticmethod
    def _finish_rounds(
        s: Session, items: Sequence[models.Finish], rounds: list[list[int]]
    ) -> tuple[list[bool], list[Row]]:
        applied = [False] * len(items)
        ended: list[Row] = []
        for batch in rounds:
            rows = s.all("finish", common.finish_columns([items[i] for i in batch]))
            ended += rows
            done = {r["id"] for r in rows}
            for i in batch:
                applied[i] = items[i].job.id in done
        return applied, ended

    def _claim_limited(self, slots: Names, queues: Names, host: str, lease_s: float) -> list[Row]:
        # Three statements in one transaction: lock the queues' rows (claimers of a limited
        # queue take turns), claim what the limits allow (a fresh snapshot, which sees every
        # claim before), log the starts for the rate limits.
        params = _claim_params(slots, queues, host, lease_s)
        with self._pg.transaction() as s:
            if not s.all("lock_limited", params):
                return []
            s.cur.execute(_CLAIM_LIMITED, params)
            rows: list[Row] = s.cur.fetchall()
            if rows:
                s.run("log_starts", {"queues": list(queues), "started": [r["queue"] for r in rows]})
        return rows

    def _beat(self, s: Session, workers: Workers, running: Running, lease_s: float) -> store.Beat:
        # one statement per table for every slot and job of this process (arrays)
        stop = False
        renewed: dict[str, bool] = {}
        if workers:
            first = workers[0]
            params = {
                "host": first.host,
                "pid": first.pid,
                "queues": list(first.queues),
                "ids": [w.id for w in workers],
                "connections": first.connections,
                "done": [w.jobs_done for w in workers],
                "rss_bytes": first.rss_bytes,
            }
            stop = any(r["stop_requested"] for r in s.all("beat_workers", params))
        if running:
            beats = {
                "ids": [r.job.id for r in running],
                "tokens": [r.job.lease_token for r in running],
                "sessions": [r.session for r in running],
                "lease_s": lease_s,
            }
            renewed = {r["id"]: r["cancel_requested"] for r in s.all("beat_jobs", beats)}
            changed = [r for r in running if r.output is not None and r.job.id in renewed]
            if changed:
                outputs = {
                    "ids": [r.job.id for r in changed],
                    "attempts": [r.job.run_count for r in changed],
                    "outputs": [r.output for r in changed],
                    "bytes": [r.output_bytes for r in changed],
                }
                s.run("beat_output", outputs)
        return stop, renewed

    def notify_due(self, *, window_s: float) -> int:
        return len(self._read("notify_due", {"window_s": window_s}))

    def _watch(self, on_notify: OnNotify, stop: threading.Event, on_error: OnError) -> bool:
        """Deliver wake-up and control notifications until `stop`, on a connection of its own
        (LISTEN); re-listen after a lost connection. False at once when there is nowhere to
        LISTEN: through a pooler in transaction mode without a direct QUEUECTL_LISTEN_URL
        (a LISTEN there would hold for one transaction, on a server connection that then
        serves other clients)."""
        url = self._pg.listen_url
        if url is None:
            return False
        secrets = self._pg.secrets + secrets_of(url)
        pause = _LISTEN_RETRY_S[0]
        while not stop.is_set():
            try:
                with psycopg.connect(url, **self._pg.listen_kwargs) as conn:
                    self._listening = True
                    conn.execute("LISTEN queuectl_wake")
                    conn.execute("LISTEN queuectl_control")
                    pause = _LISTEN_RETRY_S[0]
                    on_notify("queuectl_wake", "")  # whatever was missed while not listening
                    while not stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            on_notify(note.channel, note.payload)
            except Exception as exc:  # this thread must outlive any error: it re-listens
                if on_error is not None:
                    on_error(first_line(exc, secrets))
                # backing off: while the server is down, one line per try; polling covers
                # the wake-ups missed meanwhile
                stop.wait(pause)
                pause = min(pause * 2, _LISTEN_RETRY_S[1])
            finally:
                self._listening = False
        return True

    def _notify(self, s: Session, queues: Mapping[str, int]) -> None:
        if names := sorted(queues):
            s.run("notify_queues", {"queues": names, "counts": [queues[q] for q in names]})

    def _signal(self, s: Session, payload: str) -> None:
        s.run("notify_control", {"payload": payload})

    def _done(self, s: Session, job_ids: Sequence[str]) -> None:
        chunk: list[str] = []
        for job_id in [*job_ids, ""]:
            if chunk and (
                not job_id or sum(map(len, chunk)) + len(chunk) + len(job_id) > _DONE_PAYLOAD
            ):
                s.run("notify_done", {"payload": " ".join(chunk)})
                chunk = []
            if job_id:
                chunk.append(job_id)

    def done_listener(self) -> contextlib.AbstractContextManager[store.Listener]:
        url = self._pg.listen_url
        if url is None:  # through a pooler without a direct URL: `wait` polls
            return super().done_listener()
        return _DoneListener(url, self._pg.listen_kwargs)


def _claim_params(slots: Names, queues: Names, host: str, lease_s: float) -> dict[str, Any]:
    return {
        "limit": len(slots),
        "slots": list(slots),
        "host": host,
        "lease_s": lease_s,
        "queues": list(queues),
    }


class _DoneListener(store.Listener):
    """`wait`'s LISTEN on queuectl_done, on a connection of its own (direct, never through a
    pooler in transaction mode)."""

    def __init__(self, url: str, kwargs: dict[str, object]) -> None:
        self._url, self._kwargs = url, kwargs
        self._conn: psycopg.Connection[object] | None = None

    def __enter__(self) -> _DoneListener:
        self._conn = psycopg.connect(self._url, **self._kwargs)  # type: ignore[arg-type]
        self._conn.autocommit = True
        self._conn.execute("LISTEN queuectl_done")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            self._conn.close()

    def wait(self, timeout_s: float) -> bool:
        """True when some awaited job ended (or a NOTIFY of another waiter came), False after
        `timeout_s` without one."""
        assert self._conn is not None
        return any(True for _ in self._conn.notifies(timeout=timeout_s, stop_after=1))
