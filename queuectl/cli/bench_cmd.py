"""`queuectl bench`: the benchmark harness (the code is queuectl/bench/, imported only here)."""

from __future__ import annotations

from typing import Annotated

import typer

from queuectl import errors
from queuectl.cli import output
from queuectl.cli.context import CTX

SECTIONS = ("drain", "pickup", "enqueue", "cli", "peers", "history", "matrix")
DEFAULT_SECTIONS = ("drain", "pickup", "enqueue", "cli")


def bench(
    jobs: Annotated[int, typer.Option(min=10, max=1_000_000, help="Jobs per drain run.")] = 2000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 2,
    slots: Annotated[int, typer.Option(min=1, max=256, help="Slots per worker.")] = 4,
    samples: Annotated[
        int, typer.Option(min=5, max=10_000, help="Pickup latency: jobs, one at a time.")
    ] = 100,
    history: Annotated[
        int,
        typer.Option(min=1, max=10_000_000, help="History section: completed jobs to add."),
    ] = 1_000_000,
    peers_python: Annotated[
        str | None,
        typer.Option(
            help="Peers section: a Python with pgqueuer and procrastinate installed "
            "(`make bench-peers-env` builds .venv-peers)."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Run only these sections: {', '.join(SECTIONS)} "
            f"(default: {', '.join(DEFAULT_SECTIONS)})."
        ),
    ] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Also write results here.")] = None,
    scratch: Annotated[
        bool, typer.Option(help="Use a throwaway SQLite file instead of --db.")
    ] = False,
) -> None:
    """Measure throughput, enqueue rates and CLI start-up on this machine and database.

    Jobs go to a private queue that is deleted afterwards; run it on a quiet database.

    Example: queuectl bench --scratch --jobs 5000 --workers 4 --json bench.json
    """
    import json
    import tempfile
    from pathlib import Path

    from queuectl.bench.harness import Bench, as_json

    sections = set(only or DEFAULT_SECTIONS)
    if unknown := sections - set(SECTIONS):
        raise errors.UsageError(f"unknown section {sorted(unknown)[0]!r} (one of {SECTIONS})")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}" if scratch else CTX.settings.database_url
        if not scratch:
            CTX.backend().migrate()  # fail fast, with one clear line, when unreachable
        if "peers" in sections and not url.startswith("postgres"):
            raise errors.UsageError("the peers section runs on PostgreSQL only (give --db)")
        runner = Bench(
            url=url,
            jobs=jobs,
            workers=workers,
            slots=slots,
            samples=samples,
            history=history,
            peers_python=peers_python,
        )
        try:
            results = runner.run(sections=sections, progress=output.note)
        except RuntimeError as exc:
            raise errors.QueuectlError(f"bench failed: {exc}") from None
    output.emit(
        output.table(
            ["measure", "value", "unit", "note"],
            ([r.name, "n/a" if r.value is None else r.value, r.unit, r.note] for r in results),
        )
    )
    if json_out:
        params = {"jobs": jobs, "workers": workers, "slots": slots}
        doc = as_json(results, url=url, params=params, series=runner.series)
        Path(json_out).write_text(json.dumps(doc, indent=2) + "\n")
