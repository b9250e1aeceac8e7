"""`queuectl config set | get | list` (queue policy in the database) and `db migrate`."""

from __future__ import annotations

from typing import Annotated

import typer

from queuectl.cli import complete, output
from queuectl.cli.context import CTX
from queuectl.safetext import visible

app = typer.Typer(
    help="Queue policy shared by every worker (stored in the database).",
    epilog="Example: queuectl config set max-retries 5",
    no_args_is_help=True,
)
db_app = typer.Typer(
    help="Database schema.",
    epilog="Example: queuectl db migrate",
    no_args_is_help=True,
)


@app.command("set")
def set_(
    key: Annotated[
        str, typer.Argument(metavar="KEY", show_default=False, autocompletion=complete.config_keys)
    ],
    value: Annotated[str, typer.Argument(metavar="VALUE", show_default=False)],
) -> None:
    """Set a key, e.g. `config set max-retries 5` or `config set job-timeout 10m`.

    Example: queuectl config set backoff-base 3
    """
    from queuectl.policy import shown

    text = CTX.client().config_set(key, value)
    output.emit(f"{key} = {visible(shown(key, text))}")


@app.command("get")
def get(
    key: Annotated[
        str, typer.Argument(metavar="KEY", show_default=False, autocompletion=complete.config_keys)
    ],
) -> None:
    """Print one key's value.

    Example: queuectl config get max-retries
    """
    output.emit(visible(CTX.client().config_get(key)))


@app.command("list")
def list_(
    as_json: output.JsonFlag = False,
) -> None:
    """Every key with its value and where it comes from.

    Example: queuectl config list --json
    """
    entries = CTX.client().config_list()
    if as_json:
        output.emit_json({e.key: e.value for e in entries})
        return
    from queuectl.policy import shown

    rows = [(e.key, shown(e.key, e.value), e.source, e.help) for e in entries]
    output.emit(output.table(["key", "value", "source", "meaning"], rows))


@db_app.command()
def migrate() -> None:
    """Create or upgrade the schema (idempotent; SQLite also does this on first use).

    Example: queuectl --db postgresql://queuectl@db/queuectl db migrate
    """
    from queuectl.backends import redact

    version = CTX.client().migrate()
    output.emit(f"schema at version {version} ({visible(redact(CTX.settings.database_url))})")
