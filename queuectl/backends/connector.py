"""The thin per-dialect seam under backends/store.py: run one named query, hand back its rows.

Procrastinate's `BaseConnector` (execute_query_one/all) is the model. A connector owns the
connections, the transactions, the translation of driver errors and the few conversions in
which the dialects differ (times, arrays). Everything above it passes plain dicts of named
parameters; each connector runs its own dialect's SQL of that name (postgres.sql: %(name)s,
sqlite.sql: :name), so the two files define the same names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

# A row as the driver returns it, read by column name (psycopg's dict_row, sqlite3.Row).
Row = Any
Params = Mapping[str, Any]


class Session(Protocol):
    """Statements on one connection, inside the transaction (or not) its connector opened.
    SQLite binds `:now` in every statement to the session's one clock reading; Postgres
    uses the transaction's now()."""

    def all(self, name: str, params: Params | None = None) -> list[Row]:
        """Every row the named query returns."""

    def one(self, name: str, params: Params | None = None) -> Row | None:
        """The first row the named query returns, or None."""

    def run(self, name: str, params: Params | None = None) -> int:
        """Run the named statement; the number of rows it changed."""


class Connector(Protocol):
    def transaction(self) -> AbstractContextManager[Session]:
        """One write transaction (SQLite: BEGIN IMMEDIATE, the write lock taken up front)."""

    def snapshot(self) -> AbstractContextManager[Session]:
        """Several reads that must agree with each other."""

    def single(self) -> AbstractContextManager[Session]:
        """For one statement that is atomic by itself: no BEGIN and COMMIT (SQLite: reads
        only, since its writes queue for the write lock in `transaction`)."""

    def to_time(self, value: Any) -> datetime:
        """A stored time as a UTC datetime (Postgres: already one; SQLite: epoch seconds)."""

    def param_time(self, value: datetime | None) -> Any:
        """A datetime as this dialect binds it."""

    def param_ids(self, values: Sequence[str]) -> Any:
        """A list of strings as this dialect binds it (Postgres: an array; SQLite: JSON,
        read with json_each)."""

    def strings(self, value: Any) -> tuple[str, ...]:
        """An array column (Postgres text[]; SQLite: a JSON array as text)."""
