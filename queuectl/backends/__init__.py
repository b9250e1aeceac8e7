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
    """The URL with any password (`user:pw@` or `?password=`) replaced, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url or not url.startswith(("postgresql://", "postgres://")):
        return url  # file paths carry no secrets
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        if ":" in creds:
            netloc = f"{creds.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{kv.split('=', 1)[0]}=***" if kv.split("=", 1)[0].lower() in _SECRET_PARAMS else kv
        for kv in parts.query.split("&")
        if kv
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_SECRET_PARAMS = {"password", "pass", "passfile", "sslpassword"}
