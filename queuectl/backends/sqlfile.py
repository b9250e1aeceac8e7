"""load_queries("postgres.sql") -> {name: sql}: one file per dialect, split on `-- name:`."""

import functools
import re
from pathlib import Path

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# the .sql files ship inside the package, next to this module; reading them by path spares
# every CLI call the import of importlib.resources (and zipfile, tempfile, random)
_HERE = Path(__file__).parent


@functools.cache
def load_queries(filename: str) -> dict[str, str]:
    text = (_HERE / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(queries) != len(parts[1::2]):
        raise ValueError(f"{filename}: a query name is defined twice")
    return queries
