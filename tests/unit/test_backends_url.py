"""open_backend's URL handling and the password redaction used in logs."""

from __future__ import annotations

import pytest

from queuectl import errors
from queuectl.backends import open_backend, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgres://u:p%40ss@h/db?sslpassword=x", "postgres://u:***@h/db?sslpassword=***"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("sqlite:////tmp/q.db", "sqlite:////tmp/q.db"),
        ("/tmp/q.db", "/tmp/q.db"),
    ],
)
def test_redact_hides_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    ["mysql://x/y", "sqlite:/relative.db", "sqlite:///", "10.255.255.1", "localhost", "queue"],
)
def test_unsupported_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(errors.UsageError):
        open_backend(url)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("q.db", True),
        ("./queue", True),
        ("/var/lib/q", True),
        ("~/q", True),
        ("Q.SQLITE", True),
        ("10.255.255.1", False),
        ("db.example.com", False),
        ("queue", False),
    ],
)
def test_a_bare_value_is_a_sqlite_file_only_if_it_reads_as_a_path(value: str, path: bool) -> None:
    from queuectl.backends import looks_like_path

    assert looks_like_path(value) is path
