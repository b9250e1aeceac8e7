"""What the CLI prints: JSON to stdout, aligned tables, and errors as one stderr line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from queuectl import models
from queuectl.durations import format_duration
from queuectl.safetext import visible, visible_lines

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


# Human-readable text shows the control characters of user text as escapes (safetext.py): a
# command holding ESC [2K or an OSC 52 sequence must not erase a line, or write the clipboard,
# of whoever lists the queue. JSON is left exact: json.dumps escapes C0 controls itself.


def emit(text: str = "") -> None:
    """Human-readable lines on stdout. A value interpolated into one line must be passed
    through `visible` first (tables do it per cell): this keeps the newlines of `text`."""
    sys.stdout.write(visible_lines(text) + "\n")


def note(text: str) -> None:
    """Progress and hints: stderr, so stdout stays data."""
    sys.stderr.write(visible(text) + "\n")


def error_line(text: str) -> None:
    # one line whatever the message quotes (a path, a URL, a driver's multi-line error)
    if os.environ.get("QUEUECTL_LOG_FORMAT") == "json":
        # a container configured for JSON logs (the image's default) gets its refusals as
        # JSON too: a log pipeline would otherwise drop or garble the one line that matters
        event = {"event": "command_failed", "level": "error", "error": text}
        event["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        sys.stderr.write(json.dumps(event) + "\n")
        return
    sys.stderr.write(f"error: {visible(text)}\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return models.iso(value) or "-"
    return visible(str(value))


def one_line(text: str, limit: int = 60) -> str:
    # escaped first: a newline shows as \n rather than vanishing into a space
    flat = " ".join(visible(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    delta = (now - when).total_seconds()
    return f"in {format_duration(-delta)}" if delta < 0 else f"{format_duration(delta)} ago"
