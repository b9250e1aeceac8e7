"""`queuectl config set | get | list` (queue policy in the database) and `db migrate`."""

from __future__ import annotations

from typing import Annotated

import typer

from queuectl import config
from queuectl.cli import output
from queuectl.cli.context import CTX
from queuectl.safetext import visible

app = typer.Typer(
    help="Queue policy shared by every worker (stored in the database).", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def _current() -> dict[str, tuple[str, str]]:
    """key -> (value, source) for every known key."""
    stored = CTX.backend().get_settings()
    defaults = config.policy_from_rows({})
    out = {}
    for key, spec in config.POLICY_KEYS.items():
        if key in stored:
            out[key] = (stored[key], "database")
        else:
            out[key] = (config.policy_text(getattr(defaults, spec.attr)), "default")
    return out


@app.command("set")
def set_(
    key: Annotated[str, typer.Argument(metavar="KEY", show_default=False)],
    value: Annotated[str, typer.Argument(metavar="VALUE", show_default=False)],
) -> None:
    """Set a key, e.g. `config set max-retries 5` or `config set job-timeout 10m`."""
    text = config.policy_text(config.parse_policy_value(key, value))
    CTX.backend().set_setting(key, text)
    output.emit(f"{key} = {visible(text)}")


@app.command("get")
def get(key: Annotated[str, typer.Argument(metavar="KEY", show_default=False)]) -> None:
    """Print one key's value."""
    config.policy_key(key)
    output.emit(visible(_current()[key][0]))


@app.command("list")
def list_(
    as_json: output.JsonFlag = False,
) -> None:
    """Every key with its value and where it comes from."""
    current = _current()
    if as_json:
        output.emit_json({k: v for k, (v, _) in current.items()})
        return
    output.emit(
        output.table(
            ["key", "value", "source", "meaning"],
            ([k, v, src, config.POLICY_KEYS[k].help] for k, (v, src) in current.items()),
        )
    )


@db_app.command()
def migrate() -> None:
    """Create or upgrade the schema (idempotent; SQLite also does this on first use)."""
    from queuectl.backends import redact

    version = CTX.backend().migrate()
    output.emit(f"schema at version {version} ({visible(redact(CTX.settings.database_url))})")
