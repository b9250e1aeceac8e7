"""Completion callbacks of the commands' arguments: job ids, queues, schedules, config keys.

Imported by every command module to declare its arguments, so it imports nothing at the top
beyond typer; the lookups run only while a shell asks (see completion_cmd.py)."""

from __future__ import annotations

from collections.abc import Sequence

import typer

Candidates = list[tuple[str, str]]  # (value, help): zsh and fish show the help beside it

# the job states each command accepts: only jobs it can act on are offered
_CANCELLABLE = ("blocked", "pending", "processing", "failed")
_RETRYABLE = ("failed", "dead", "cancelled")


def _given(ctx: typer.Context) -> set[str]:
    """Values already on the command line (`cancel a b <TAB>` does not offer a or b again)."""
    found: set[str] = set()
    for value in ctx.params.values():
        if isinstance(value, list | tuple):
            found.update(v for v in value if isinstance(v, str))
    return found


def _from_db(
    ctx: typer.Context, kind: str, incomplete: str, states: Sequence[str] = ()
) -> Candidates:
    from queuectl import config
    from queuectl.backends.candidates import lookup

    try:
        # the database `--db` names earlier on the line, else the environment's, the config
        # file's or the default, exactly as the command itself would resolve it
        flag = ctx.find_root().params.get("db")
        url = config.load_settings({"database_url": flag}).database_url
    except Exception:
        return []
    given = _given(ctx)
    found = lookup(url, kind, incomplete, states=states)
    return [(value, help_) for value, help_ in found if value not in given]


def job_ids(ctx: typer.Context, incomplete: str) -> Candidates:
    """Any job, newest first (show, logs, wait, --after)."""
    return _from_db(ctx, "jobs", incomplete)


def cancellable_job_ids(ctx: typer.Context, incomplete: str) -> Candidates:
    return _from_db(ctx, "jobs", incomplete, _CANCELLABLE)


def retryable_job_ids(ctx: typer.Context, incomplete: str) -> Candidates:
    return _from_db(ctx, "jobs", incomplete, _RETRYABLE)


def dead_job_ids(ctx: typer.Context, incomplete: str) -> Candidates:
    return _from_db(ctx, "jobs", incomplete, ("dead",))


def queue_names(ctx: typer.Context, incomplete: str) -> Candidates:
    return _from_db(ctx, "queues", incomplete)


def schedule_names(ctx: typer.Context, incomplete: str) -> Candidates:
    return _from_db(ctx, "schedules", incomplete)


def config_keys(incomplete: str) -> Candidates:
    """The policy keys, from the code (the database holds only their values)."""
    from queuectl.policy import POLICY_KEYS

    return [(k, spec.help) for k, spec in sorted(POLICY_KEYS.items()) if k.startswith(incomplete)]


def states(incomplete: str) -> Candidates:
    from queuectl.jobs import JobState

    return [(s.value, "") for s in JobState if s.value.startswith(incomplete)]
