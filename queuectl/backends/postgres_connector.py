"""The Postgres connector: connections (one, or a pool), transactions, error translation.

Through a pooler in transaction mode (PgBouncer's `pool_mode = transaction`; say so with
QUEUECTL_DATABASE_POOLER=pgbouncer) a client's consecutive transactions may run on different
server connections, so nothing here may rely on session state across transactions: psycopg
prepares no statement (PgBouncer 1.18 cannot carry them), the time zone is set with a SET
PgBouncer tracks per client instead of the `options` startup parameter it refuses, and the
LISTEN connection goes to QUEUECTL_LISTEN_URL (a direct URL) or is not opened at all.
Everything else already fits: one statement or one transaction per call, advisory locks only
transaction-scoped (migrate), no temporary tables, no server-side cursors.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row

from queuectl import errors
from queuectl.backends import common, scrub, secrets_of
from queuectl.backends.connector import Params, Row
from queuectl.backends.sqlfile import load_queries

Q = load_queries("postgres.sql")
MIGRATIONS = load_queries("postgres_schema.sql")
# the longest a pooled call waits for a connection; short, because only a caller that
# arrives while none is left makes the pool try to connect again once it gave up (below)
_POOL_WAIT_S = 2.0
_POOL_RECONNECT_S = 2.0  # a pool's background reconnection gives up after this

POOLER_ENV = "QUEUECTL_DATABASE_POOLER"
LISTEN_URL_ENV = "QUEUECTL_LISTEN_URL"
POOLERS = ("none", "pgbouncer")

Cursor = psycopg.Cursor[dict[str, Any]]


@contextlib.contextmanager
def _translated(secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Driver errors stop here and become queuectl errors (the CLI maps them to exit codes),
    without the password: libpq quotes a URL it cannot parse (`secrets`: secrets_of(url))."""
    try:
        yield
    except UnicodeEncodeError:
        # a lone surrogate: bytes that are not UTF-8 (an argument like $'\xff', which
        # Python decodes with surrogateescape) cannot name anything stored, nor be stored
        raise errors.UsageError("text must be valid UTF-8") from None
    except pgerrors.UndefinedTable:
        raise errors.SchemaMissing(
            "the database has no queuectl schema: run `queuectl db migrate`"
        ) from None
    except pgerrors.UniqueViolation as exc:
        raise common.unique_violation(exc.diag.table_name, _key(exc)) from None
    except psycopg.OperationalError as exc:
        hint = ""
        if "unsupported startup parameter" in str(exc):  # PgBouncer refusing `options`
            hint = f" (through PgBouncer? set {POOLER_ENV}=pgbouncer)"
        raise errors.BackendUnavailable(
            f"PostgreSQL unavailable: {first_line(exc, secrets)}{hint}"
        ) from None
    except psycopg.DataError as exc:
        # Postgres text cannot hold a NUL (SQLite can, and simply matches nothing): a
        # dashboard search or id with %00 is bad input, not a database failure
        if "NUL" in str(exc):
            raise errors.UsageError("text must not contain a NUL character") from None
        raise errors.BackendError(f"PostgreSQL error: {first_line(exc, secrets)}") from None
    except psycopg.Error as exc:
        raise errors.BackendError(f"PostgreSQL error: {first_line(exc, secrets)}") from None


def first_line(exc: Exception, secrets: tuple[str, ...] = ()) -> str:
    return scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0], secrets)


def _hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server already closed this idle connection. An idle connection has
    nothing to read, so a readable socket means a goodbye (FATAL: terminating connection)
    or end of file: one poll(2), no round trip. A silent network loss is not seen here."""
    if conn.closed:
        return True
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


def pooler_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """QUEUECTL_DATABASE_POOLER: `none` (the default: a direct connection) or `pgbouncer`
    (transaction pooling). Read from the environment, like libpq's PG* variables, so that
    every process that opens the URL (CLI, worker, orchestrator, dashboard, the Python API)
    connects the same way."""
    value = environ.get(POOLER_ENV, "").strip().lower() or "none"
    if value not in POOLERS:
        raise errors.ConfigError(f"{POOLER_ENV} must be one of {', '.join(POOLERS)}, not {value!r}")
    return value


def _key(exc: psycopg.Error) -> str | None:
    """The taken value of a unique violation: `Key (id)=(x) already exists.` -> x."""
    match = re.search(r"\)=\((.*)\) already exists", exc.diag.message_detail or "")
    return match.group(1) if match else None


def _utc(conn: psycopg.Connection[Any]) -> None:
    """Through a pooler: the session time zone a direct connection gets from `options`."""
    conn.execute("SET timezone TO 'UTC'")


def _unchanged(value: Any) -> Any:
    return value


def _as_list(values: Sequence[str]) -> list[str]:
    return list(values)


def _as_tuple(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(values)


class PgSession:
    """Named queries on one cursor (connector.Session)."""

    __slots__ = ("cur",)

    def __init__(self, cur: Cursor) -> None:
        self.cur = cur

    def all(self, name: str, params: Params | None = None) -> list[Row]:
        self.cur.execute(Q[name], params)
        return self.cur.fetchall()

    def one(self, name: str, params: Params | None = None) -> Row | None:
        self.cur.execute(Q[name], params)
        return self.cur.fetchone()

    def run(self, name: str, params: Params | None = None) -> int:
        self.cur.execute(Q[name], params)
        return self.cur.rowcount


class PgConnector:
    """connector.Connector on PostgreSQL: times are timestamptz (datetimes both ways), lists
    are arrays."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 0,
        pooler: str | None = None,
        listen_url: str | None = None,
    ) -> None:
        self.url = url
        self.secrets = secrets_of(url)
        # None: from the environment (QUEUECTL_DATABASE_POOLER, QUEUECTL_LISTEN_URL)
        self.pooler = pooler_from_env() if pooler is None else pooler
        listen_url = os.environ.get(LISTEN_URL_ENV) if listen_url is None else listen_url
        # where LISTEN goes: the URL itself when direct; through a pooler only a direct URL
        # given for it, else None (the worker polls)
        self.listen_url: str | None = listen_url or (url if self.pooler == "none" else None)
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": 5,
            "application_name": "queuectl",
            "options": "-c timezone=UTC",
            # A database created with SQL_ASCII (a plain initdb without a UTF-8 locale)
            # makes the session encoding SQL_ASCII too, and psycopg then returns bytes:
            # `status` counted 0 of 170 jobs and named a queue b'default'. Text is UTF-8
            # on our side; SQL_ASCII stores the bytes as given, so asking for UTF-8 makes
            # such a database work like any other.
            "client_encoding": "utf8",
            # a half-open connection (partition, dead host) is noticed in ~25 s, not hours
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        # the LISTEN connection is a direct one: it keeps the direct settings
        self.listen_kwargs = dict(self.kwargs)
        if self.pooler != "none":
            # PgBouncer 1.18 refuses the `options` startup parameter; the time zone is set
            # by a SET after connecting instead, which it tracks per client and replays on
            # whichever server connection runs the client's next transaction
            del self.kwargs["options"]
            # psycopg prepares a query run 5 times on one connection, by name, on the
            # server connection of that moment; the next transaction may run elsewhere
            self.kwargs["prepare_threshold"] = None
        self._pool: Any = None
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self.gate = common.Gate()
        self._version_checked = False
        if pool_size > 0:
            import logging

            from psycopg_pool import ConnectionPool  # only long-running processes need it

            # the pool would print multi-line warnings on its own; our callers log one event
            # per failed operation instead (claim_failed, heartbeat_failed, ...)
            logging.getLogger("psycopg.pool").propagate = False
            logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
            with _translated(self.secrets):
                self._connect().close()  # fail fast, one clear line
                self._pool = ConnectionPool(
                    url,
                    min_size=1,
                    max_size=pool_size,
                    kwargs=self.kwargs,
                    configure=None if self.pooler == "none" else _utc,
                    open=False,
                    name="queuectl",
                    # while the server is down a call fails after this wait (and its caller
                    # logs and backs off) instead of blocking 30 s: a stuck claim would
                    # ignore SIGTERM and return a lease already most of its age old
                    timeout=_POOL_WAIT_S,
                    # the pool retries a lost connection at 1, 3, 7, 15 ... s, so after a
                    # long outage it would stay idle for as long again; giving up early lets
                    # the next caller's request start a fresh attempt at once
                    reconnect_timeout=_POOL_RECONNECT_S,
                )
                self._pool.open(wait=True, timeout=10)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self.gate.passage(), _translated(self.secrets):
            if self._pool is not None:
                with self._pooled() as conn:
                    self._check_version(conn)
                    yield conn
                return
            with self._lock:
                if self._conn is not None and _hung_up(self._conn):
                    self._conn.close()
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                self._check_version(self._conn)
                yield self._conn

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        conn: psycopg.Connection[dict[str, Any]] = psycopg.connect(self.url, **self.kwargs)
        if self.pooler != "none":
            try:
                _utc(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    def connections(self) -> int:
        """Connections this connector holds open now (through a pooler: to the pooler)."""
        held = 0
        if self._pool is not None:
            held += int(self._pool.get_stats().get("pool_size", 0))
        if self._conn is not None and not self._conn.closed:
            held += 1
        return held

    def _check_version(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """Once per process: a schema that a newer queuectl migrated is refused before this
        one reads or writes anything (SQLite reads its version on open)."""
        if self._version_checked:
            return
        try:
            row = conn.execute("SELECT max(version) AS v FROM queuectl_schema").fetchone()
        except pgerrors.UndefinedTable:
            return  # no schema yet: `db migrate` creates it, anything else says so
        common.check_schema_version(int((row or {}).get("v") or 0), len(MIGRATIONS))
        self._version_checked = True

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection the server has not already hung up on. After a restart or a
        pg_terminate_backend every idle connection is dead, and each would fail the next
        statement sent on it (a claim, a heartbeat); they are replaced before use instead."""
        for _ in range(self._pool.max_size):
            with self._pool.connection() as conn:
                if not _hung_up(conn):
                    yield conn
                    return
                conn.close()  # the pool sees it closed and opens a replacement
        with self._pool.connection() as conn:  # every one was dead: a new one, or the error
            yield conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Cursor]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextlib.contextmanager
    def _one_statement(self) -> Iterator[Cursor]:
        """For a single statement: autocommit makes it atomic on its own, so there is no
        BEGIN and COMMIT, one round trip instead of three (claim and finish, the hot path)."""
        with self._connection() as conn, conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._conn is not None:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PgSession]:
        with self._tx() as cur:
            yield PgSession(cur)

    snapshot = transaction  # READ COMMITTED: one transaction is what several reads share

    @contextlib.contextmanager
    def single(self) -> Iterator[PgSession]:
        with self._one_statement() as cur:
            yield PgSession(cur)

    # Postgres binds and returns timestamptz as datetimes, text[] as lists
    to_time = param_time = staticmethod(_unchanged)
    param_ids = staticmethod(_as_list)
    strings = staticmethod(_as_tuple)
