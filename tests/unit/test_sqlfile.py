"""Unit tests of queuectl.backends.sqlfile and the per-dialect query and schema files."""

from __future__ import annotations

import ast
import re
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from queuectl.backends import sqlfile
from queuectl.backends.sqlfile import load_queries

BACKENDS = Path(str(resources.files("queuectl.backends")))

# Names only one dialect needs (read off postgres.py and sqlite.py; store.py, shared by
# both, uses only names both files define):
# * the claim picks from one index range per queue: postgres with a LATERAL join over the
#   queue array (pick_queues), sqlite by a UNION of one pick_queue per queue;
# * sqlite has no RETURNING-from-CTE batches, so it writes an attempt's run row in a
#   statement of its own (finish_run);
# * only postgres has NOTIFY (sqlite workers poll; `wait` watches the commit counter);
# * the limited claim: postgres locks the limited queues' rows, then claims what their
#   limits allow in one statement and logs the starts; sqlite, under its one write lock,
#   reads the allowances, picks per queue and logs each start;
# * bulk enqueue: postgres COPYs the rows in after one read of the time and the settings,
#   sqlite runs multi-row INSERTs after looking for taken ids (its constraint error would
#   not name the id).
POSTGRES_ONLY = {
    "pick_queues",
    "notify_queues",
    "notify_control",
    "notify_due",
    "enqueue_snapshot",
    "enqueue_copy",
    "notify_done",
    "lock_limited",
    "log_starts",
}
SQLITE_ONLY = {
    "enqueue_values",
    "existing_ids",
    "pick_queue",
    "finish_run",
    "limited_allowance",
    "trim_starts",
    "log_start",
    "held_queues",
}
# the modules that look names up, per dialect: its own and the shared one
MODULES = {
    "postgres.sql": ("postgres.py", "postgres_connector.py", "store.py", "flow.py"),
    "sqlite.sql": ("sqlite.py", "sqlite_connector.py", "store.py", "flow.py"),
}
# methods whose first argument is a query name: the sessions' and SqlBackend's helpers
_NAMED_CALLS = {"all", "one", "run", "_read", "_write"}


def _used_query_names(module_file: Path) -> set[str]:
    """Every name the module looks up in its query dict `Q`, read from its source.

    A lookup through a variable (`Q[query]`) counts the strings assigned to that variable;
    `s.all("name", ...)`, `s.one`, `s.run` (a connector session) and `self._read` /
    `self._write` (store.SqlBackend) count too, as do both names of a conditional expression
    as their first argument.
    """
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    assigned: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            strings = {
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, set()).update(strings)
    used: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _NAMED_CALLS
            and node.args
        ):
            used |= {
                c.value
                for c in ast.walk(node.args[0])
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if node.value.id != "Q":
                continue
            for part in ast.walk(node.slice):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    used.add(part.value)
                elif isinstance(part, ast.Name):
                    used |= assigned.get(part.id, set())
    return used


@pytest.fixture
def fake_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """load_queries reads files from tmp_path instead of the installed package."""
    monkeypatch.setattr(sqlfile, "_HERE", tmp_path)
    return tmp_path


# --- the loader -----------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["postgres.sql", "sqlite.sql"])
def test_query_files_parse_into_named_non_empty_queries(filename):
    queries = load_queries(filename)
    assert len(queries) >= 20
    for name, sql in queries.items():
        assert re.fullmatch(r"\w+", name)
        assert sql
        assert sql == sql.strip()
        assert "-- name:" not in sql


def test_load_queries_splits_on_name_markers_and_drops_the_preamble(fake_package):
    (fake_package / "split-test.sql").write_text(
        "-- a preamble comment\n\n"
        "-- name: first\nSELECT 1;\n\n"
        "-- name: second\n-- a comment kept with the query\nSELECT 2\n  FROM t;\n",
        encoding="utf-8",
    )
    assert load_queries("split-test.sql") == {
        "first": "SELECT 1;",
        "second": "-- a comment kept with the query\nSELECT 2\n  FROM t;",
    }


def test_load_queries_rejects_a_name_defined_twice(fake_package):
    (fake_package / "dup-test.sql").write_text(
        "-- name: same\nSELECT 1;\n-- name: other\nSELECT 2;\n-- name: same\nSELECT 3;\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="defined twice"):
        load_queries("dup-test.sql")


def test_load_queries_caches_the_parsed_file():
    assert load_queries("sqlite.sql") is load_queries("sqlite.sql")


# --- the two dialects -----------------------------------------------------------------------


def test_dialects_differ_only_in_the_documented_dialect_specific_queries():
    postgres = set(load_queries("postgres.sql"))
    sqlite = set(load_queries("sqlite.sql"))
    assert postgres - sqlite == POSTGRES_ONLY
    assert sqlite - postgres == SQLITE_ONLY


def _used_by(filename: str) -> set[str]:
    return set().union(*(_used_query_names(BACKENDS / module) for module in MODULES[filename]))


@pytest.mark.parametrize("filename", ["postgres.sql", "sqlite.sql"])
def test_every_query_a_backend_uses_is_defined_in_its_file(filename):
    used = _used_by(filename)
    assert len(used) >= 20  # the source scan found the lookups
    assert used <= set(load_queries(filename))


@pytest.mark.parametrize("filename", ["postgres.sql", "sqlite.sql"])
def test_every_query_in_a_file_is_used_by_its_backend(filename):
    assert set(load_queries(filename)) <= _used_by(filename)


def test_the_shared_store_uses_only_names_both_files_define():
    shared = _used_query_names(BACKENDS / "store.py")
    assert len(shared) >= 30  # the one-query wrappers, written once
    assert shared <= set(load_queries("postgres.sql"))
    assert shared <= set(load_queries("sqlite.sql"))


# --- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["postgres_schema.sql", "sqlite_schema.sql"])
def test_schema_files_define_v1_creating_the_tables(filename):
    migrations = load_queries(filename)
    assert next(iter(migrations)) == "v1"
    v1 = migrations["v1"]
    for table in ("queuectl_jobs", "queuectl_runs", "queuectl_workers", "queuectl_settings"):
        assert re.search(rf"CREATE TABLE {table}\b", v1), table


@pytest.mark.parametrize("filename", ["postgres_schema.sql", "sqlite_schema.sql"])
def test_migrations_are_numbered_v1_to_vn_in_order(filename):
    # both backends apply them in dict order and compare int(name[1:]) with the stored version
    names = list(load_queries(filename))
    assert names == [f"v{n}" for n in range(1, len(names) + 1)]


def test_both_dialects_have_the_same_migrations():
    assert list(load_queries("postgres_schema.sql")) == list(load_queries("sqlite_schema.sql"))


class _AnyParams(dict[str, Any]):
    """Binds None to every named parameter, so a statement can be prepared and explained."""

    def __missing__(self, key: str) -> None:
        return None


def test_sqlite_queries_compile_against_the_sqlite_schema():
    conn = sqlite3.connect(":memory:")
    try:
        for sql in load_queries("sqlite_schema.sql").values():
            conn.executescript(sql)
        for name, sql in load_queries("sqlite.sql").items():
            try:
                # named parameters bind from the mapping; positional ones (enqueue_values) to None
                params = (None,) * sql.count("?") if "?" in sql else _AnyParams()
                conn.execute("EXPLAIN " + sql, params).fetchall()
            except sqlite3.Error as exc:
                pytest.fail(f"{name}: {exc}")
    finally:
        conn.close()


def test_postgres_queries_have_no_bare_percent_sign() -> None:
    """psycopg reads every `%` of a query as a placeholder, comments included: a `10%` in a
    comment breaks the statement at run time (it once broke the limited claim)."""
    for name, sql in load_queries("postgres.sql").items():
        bare = re.sub(r"%\(\w+\)s|%%", "", sql)
        assert "%" not in bare, name
