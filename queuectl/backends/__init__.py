"""open_backend(url) -> Backend: `sqlite:///path` (or a bare path) or `postgresql://...`."""

from __future__ import annotations

import re
from pathlib import Path

from queuectl import errors
from queuectl.backends.base import Backend


def open_backend(url: str, *, pool_size: int = 0, create_dir: bool = False) -> Backend:
    """Import only the driver the URL needs: the CLI must not pay for psycopg on SQLite.
    `create_dir`: make a SQLite file's missing directories (the default data dir)."""
    if url.startswith(("postgresql://", "postgres://")):
        from queuectl.backends.postgres import PostgresBackend

        return PostgresBackend(url, pool_size=pool_size)
    if url.startswith("sqlite:"):
        rest = url.removeprefix("sqlite:")
        if not rest.startswith("///"):
            # redacted: `sqlite://user:pw@host/db` is a typo of a server URL, password and all
            raise errors.UsageError(
                f"bad SQLite URL {redact(url)!r}: use sqlite:///path/to/file.db"
            )
        path = rest[3:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise errors.UsageError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://"
        )
    else:
        path = url
        if not looks_like_path(path):
            # `--db 10.255.255.1` (a host) would otherwise become a new SQLite file of that
            # name, and `status` would report an empty queue with exit 0
            raise errors.UsageError(
                f"--db {url!r} is neither a database URL nor a file path: use "
                "sqlite:///PATH, postgresql://HOST/DB, or a path like ./queue.db"
            )
    if not path:
        raise errors.UsageError(f"bad SQLite URL {url!r}: no file path")
    from queuectl.backends.sqlite import SqliteBackend

    return SqliteBackend(url, Path(path).expanduser(), create_dir=create_dir)


_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")


def looks_like_path(value: str) -> bool:
    """A bare --db value is taken as a SQLite file only if it reads as one: it has a
    directory part (`./q`, `/var/q`), starts with `~`, or ends like a SQLite file (`q.db`)."""
    return "/" in value or value.startswith("~") or value.lower().endswith(_SQLITE_SUFFIXES)


def redact(url: str) -> str:
    """The URL with any password (`user:pw@` or `?password=`) replaced, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url:
        return url  # file paths carry no secrets
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed `[` of an IPv6 host: keep only the scheme
        return url.split("://", 1)[0] + "://***"
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
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret; and urlunsplit would turn sqlite://// into sqlite://
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_SECRET_PARAMS = {"password", "pass", "passfile", "sslpassword"}
# `scheme://user:secret@` and `password=secret` (URI query or libpq key=value) inside a text
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*):[^\s@'\"]*@")
_KEY_CREDENTIALS = re.compile(r"(?i)\b(password|pass|sslpassword)(\s*=\s*)('[^']*'|[^\s&'\"]+)")


def secrets_of(url: str) -> tuple[str, ...]:
    """The password of a database URL in every form a driver's message could quote it: as
    written, decoded, as libpq splits it, and its pieces around a stray `@` (where parsers
    disagree on where the host begins). Short pieces are left out: replacing every `t` in
    a message protects nothing; so are the URL's user and database names, which queuectl
    shows anyway: with the compose defaults (user, password and database all `queuectl`)
    an error read `database "***" does not exist`. A password equal to one of them is
    still masked where it stands as a password (`user:***@`, `password=***`)."""
    from urllib.parse import unquote

    if "://" not in url or "@" not in url.split("://", 1)[1].split("/", 1)[0]:
        return ()
    creds = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[0]
    raw = creds.split(":", 1)[1] if ":" in creds else ""
    found = {raw, unquote(raw), *raw.split("@")}
    public = {unquote(creds.split(":", 1)[0]), unquote(url.rsplit("/", 1)[-1].split("?", 1)[0])}
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
        found.add(str(parts.get("password") or ""))
        public |= {str(parts.get("user") or ""), str(parts.get("dbname") or "")}
    except Exception:  # noqa: S110 (no driver, or a URL it cannot parse: the rest still apply)
        pass
    return tuple(sorted((s for s in found - public if len(s) >= 4), key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` (a driver's error message) without credentials: libpq quotes a URL it cannot
    parse whole, and a bad percent-escape by itself."""
    for secret in secrets:  # longest first: a piece must not leave the rest of a password
        text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(r"\1:***@", text)
    return _KEY_CREDENTIALS.sub(r"\1\2***", text)
