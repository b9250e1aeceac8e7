"""Bounded, read-only lookups for shell completion: job ids, queue and schedule names by prefix."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from queuectl.backends.sqlfile import load_queries

KINDS = ("jobs", "queues", "schedules")
# A value a shell can take as one word and that no shell reads as code: job ids are
# `[A-Za-z0-9._:-]` already; a queue or schedule name outside this cannot be completed
# usefully, and is never handed to the shell's eval (zsh) at all.
_SAFE_VALUE = re.compile(r"[\w.:@/+,%=-]+")
_UNSAFE_HELP = re.compile(r"[^\w .,:;/@+=*#()\[\]{}<>|&!?~%^-]+")

Candidate = tuple[str, str]  # (value, help)


def lookup(
    url: str,
    kind: str,
    prefix: str,
    *,
    states: Sequence[str] = (),
    limit: int = 50,
    timeout_s: float = 1.0,
) -> list[Candidate]:
    """Up to `limit` values of `kind` starting with `prefix` (jobs newest first, optionally only
    in `states`), each with a one-line help; [] when the database does not answer within
    `timeout_s` for any reason (unreachable, locked, missing, not a queuectl database). A
    shell waits on this with the user's cursor frozen, so it never waits longer, never
    creates a SQLite file and never raises."""
    found: list[Candidate] = []

    def run() -> None:
        try:
            rows = _query(url, kind, prefix, list(states), limit, timeout_s)
            found.extend(_clean(rows))
        except Exception:  # noqa: S110 -- a completion without candidates is the answer
            pass

    # a thread with a deadline bounds what no driver timeout does: libpq's connect_timeout
    # is at least 2 s per address, a DNS lookup has none
    thread = threading.Thread(target=run, name="queuectl-candidates", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return list(found) if not thread.is_alive() else []


def _query(
    url: str, kind: str, prefix: str, states: list[str], limit: int, timeout_s: float
) -> list[tuple[Any, Any]]:
    if kind not in KINDS:
        raise ValueError(kind)
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url, kind, prefix, states, limit, timeout_s)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
    elif "://" in url:
        return []
    else:
        path = url
    return _sqlite(Path(path).expanduser(), kind, prefix, states, limit, timeout_s)


def _sqlite(
    path: Path, kind: str, prefix: str, states: list[str], limit: int, timeout_s: float
) -> list[tuple[Any, Any]]:
    import sqlite3
    import time
    from urllib.parse import quote

    if not path.is_file():
        return []  # mode=rw would refuse too; this spares the open
    # mode=rw: an existing file only, never a new one; the busy timeout stays under the
    # deadline, and the progress handler interrupts a long scan at it
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=rw", uri=True, timeout=timeout_s / 2, check_same_thread=False
    )
    try:
        deadline = time.monotonic() + timeout_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        params = {"prefix": prefix, "limit": limit, "states": json.dumps(states)}
        return conn.execute(load_queries("candidates_sqlite.sql")[kind], params).fetchall()
    finally:
        conn.close()


def _postgres(
    url: str, kind: str, prefix: str, states: list[str], limit: int, timeout_s: float
) -> list[tuple[Any, Any]]:
    import psycopg

    with psycopg.connect(
        url,
        connect_timeout=max(2, round(timeout_s)),  # libpq's floor; the thread's deadline rules
        application_name="queuectl-completion",
        client_encoding="utf8",
        prepare_threshold=None,  # one statement, and PgBouncer-safe
    ) as conn:
        conn.read_only = True
        with conn.cursor() as cur:
            # SET LOCAL: scoped to this transaction, so a transaction pooler carries it nowhere
            cur.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            cur.execute(
                load_queries("candidates_postgres.sql")[kind],
                {"prefix": prefix, "limit": limit, "states": states},
            )
            rows = cur.fetchall()
        conn.rollback()
        return rows


def _clean(rows: list[tuple[Any, Any]]) -> list[Candidate]:
    """Values a shell can complete, each with one line of printable help."""
    out = []
    for value, help_ in rows:
        if isinstance(value, str) and _SAFE_VALUE.fullmatch(value):
            help_text = _UNSAFE_HELP.sub(" ", str(help_ or "")).strip()
            out.append((value, re.sub(r" {3,}", "  ", help_text)))
    return out
