"""The SQLite connector: a small per-process pool of connections, the write lock, errors."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from queuectl import errors
from queuectl.backends import common
from queuectl.backends.connector import Params, Row
from queuectl.backends.sqlfile import load_queries

Q = load_queries("sqlite.sql")
MIGRATIONS = load_queries("sqlite_schema.sql")
BUSY_TIMEOUT_MS = 30_000  # many worker processes queue for the one write lock; none waits long
_MAX_IDLE = 8  # idle pooled connections kept per process; more are opened when needed
_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.")


def ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@contextlib.contextmanager
def _translated(path: Path | None = None) -> Iterator[None]:
    """Driver errors stop here and become queuectl errors (the CLI maps them to exit codes);
    `path` names the file in the message (which of several databases is read-only?)."""
    try:
        yield
    except UnicodeEncodeError:
        # a lone surrogate: bytes that are not UTF-8 (an argument like $'\xff', which
        # Python decodes with surrogateescape) cannot name anything stored, nor be stored
        raise errors.UsageError("text must be valid UTF-8") from None
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "no such table" in text:
            raise errors.SchemaMissing(
                f"the database has no queuectl schema ({text}): run `queuectl db migrate`"
            ) from None
        where = "" if path is None else f" ({path})"
        raise errors.BackendUnavailable(f"SQLite unavailable: {text}{where}") from None
    except sqlite3.IntegrityError as exc:
        # the same translation as Postgres's (common.unique_violation); SQLite names only the
        # column: `UNIQUE constraint failed: queuectl_jobs.id`
        if match := _UNIQUE.match(str(exc)):
            raise common.unique_violation(match.group(1), None) from None
        raise errors.BackendError(f"SQLite constraint failed: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise errors.BackendUnavailable(f"SQLite error: {exc}") from None


def switch_to_wal(conn: sqlite3.Connection) -> None:
    """PRAGMA journal_mode = WAL, waiting as long as the busy timeout: the switch needs the
    file to itself and, unlike other statements, gives up at once ("database is locked")
    when another process holds it, as when several workers start on a new file together."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _from_json(value: str) -> tuple[str, ...]:
    return tuple(json.loads(value))


class SqliteSession:
    """Named queries on one connection (connector.Session); `:now` is bound in every one to
    the session's clock reading, taken when it began (inside the transaction, if any)."""

    __slots__ = ("conn", "now")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.now = time.time()

    def all(self, name: str, params: Params | None = None) -> list[Row]:
        return self.conn.execute(Q[name], {**(params or {}), "now": self.now}).fetchall()

    def one(self, name: str, params: Params | None = None) -> Row | None:
        return self.conn.execute(Q[name], {**(params or {}), "now": self.now}).fetchone()

    def run(self, name: str, params: Params | None = None) -> int:
        return self.conn.execute(Q[name], {**(params or {}), "now": self.now}).rowcount


class SqliteConnector:
    """connector.Connector on one SQLite file: times are epoch seconds (floats), lists JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # a small pool: a connection serves one thread at a time, and a worker's short-lived
        # job threads reuse the idle ones instead of each opening (and leaking) its own
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._writer = threading.RLock()
        self._closed = False

    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,  # pooled: used by one thread at a time
            )
        except sqlite3.OperationalError as exc:
            raise errors.BackendUnavailable(f"cannot open {self.path}: {exc}") from None
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextlib.contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection from the pool for one unit of work."""
        with _translated(self.path):
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self.connect()
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                with self._pool_lock:
                    keep = not self._closed and len(self._idle) < _MAX_IDLE
                    if keep:
                        self._idle.append(conn)
                if not keep:
                    conn.close()

    @contextlib.contextmanager
    def tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE for writes: the write lock is taken before the first read, so a
        read-then-write transaction cannot be overtaken by another process's write."""
        # Threads of this process queue for the write lock here, not inside SQLite: its busy
        # handler sleeps 1, 2, 5, 10... ms between tries, where a Python lock hands over at
        # once (claims and batched finishes of one worker alternate thousands of times a
        # second). Other processes still meet SQLite's lock and its busy timeout.
        with self._writer if write else contextlib.nullcontext(), self.use() as conn:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def hold_writes(self) -> Iterator[None]:
        with self._writer:  # every write transaction of this process runs under it (_tx)
            yield

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqliteSession]:
        with self.tx() as conn:
            yield SqliteSession(conn)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[SqliteSession]:
        with self.tx(write=False) as conn:
            yield SqliteSession(conn)

    @contextlib.contextmanager
    def single(self) -> Iterator[SqliteSession]:
        with self.use() as conn:
            yield SqliteSession(conn)

    # SQLite stores times as epoch seconds and lists as JSON text (read with json_each)
    to_time = staticmethod(ts)
    param_time = staticmethod(epoch)
    param_ids = staticmethod(_json_list)
    strings = staticmethod(_from_json)
