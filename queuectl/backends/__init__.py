"""open_backend(url) -> Backend: `sqlite:///path` (or a bare path) or `postgresql://...`."""

from __future__ import annotations

from pathlib import Path

from queuectl import errors
from queuectl.backends.base import Backend


def open_backend(url: str, *, pool_size: int = 0) -> Backend:
    """Import only the driver the URL needs: the CLI must not pay for psycopg on SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        from queuectl.backends.postgres import PostgresBackend

        return PostgresBackend(url, pool_size=pool_size)
    if url.startswith("sqlite:"):
        rest = url.removeprefix("sqlite:")
        if not rest.startswith("///"):
            raise errors.UsageError(f"bad SQLite URL {url!r}: use sqlite:///path/to/file.db")
        path = rest[3:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise errors.UsageError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://"
        )
    else:
        path = url
    if not path:
        raise errors.UsageError(f"bad SQLite URL {url!r}: no file path")
    from queuectl.backends.sqlite import SqliteBackend

    return SqliteBackend(url, Path(path).expanduser())


def redact(url: str) -> str:
    """The URL with any password replaced, for logs and messages."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
