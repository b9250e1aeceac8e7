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


class Rendered(str):
    """Text whose user-supplied parts are escaped already, and whose escape codes are
    queuectl's own (a table's colours): emit prints it as it is."""


def emit(text: str = "") -> None:
    """Human-readable lines on stdout. A value interpolated into one line must be passed
    through `visible` first (tables do it per cell): this keeps the newlines of `text`."""
    sys.stdout.write((text if isinstance(text, Rendered) else visible_lines(text)) + "\n")


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


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> Rendered:
    """Aligned columns. On a terminal the free-text columns (command, errors) are cut to fit
    its width and states are coloured; a pipe gets every character and no escapes."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    styled = _terminal()
    if styled:
        widths = _fit(headers, widths, styled.columns)
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        parts = []
        for header, cell, width in zip(headers, row, widths, strict=True):
            text = cell if len(cell) <= width else cell[: max(width - 1, 0)] + "…"
            padded = text.ljust(width)
            colour = _COLOURS.get(cell) if styled and styled.colour and header in _STATE else None
            # coloured after padding: escape codes take no columns on screen
            parts.append(f"\x1b[{colour}m{text}\x1b[0m{padded[len(text) :]}" if colour else padded)
        lines.append("  ".join(parts).rstrip())
    return Rendered("\n".join(lines))


_STATE = {"state", "outcome"}  # the columns whose values are coloured
_FREE_TEXT = ("command", "last error", "error", "meaning", "note")  # cut first, last first
_MIN_FREE = 12
# SGR codes: green done, red dead, yellow failing or waiting on a retry, cyan running,
# magenta blocked, dim what ended on purpose or waits on nothing
_COLOURS = {
    "completed": "32",
    "succeeded": "32",
    "dead": "31",
    "failed": "33",
    "timeout": "33",
    "timed_out": "33",
    "lost": "33",
    "processing": "36",
    "busy": "36",
    "running": "36",
    "blocked": "35",
    "paused": "35",
    "stopping": "35",
    "cancelled": "2",
}


class _Terminal:
    def __init__(self, columns: int, colour: bool) -> None:
        self.columns = columns
        self.colour = colour


def _terminal() -> _Terminal | None:
    """stdout's terminal, if it is one: its width, and whether colour is welcome
    (NO_COLOR, https://no-color.org, and TERM=dumb turn it off)."""
    if not sys.stdout.isatty():
        return None
    import shutil

    columns = shutil.get_terminal_size().columns  # COLUMNS first, then the tty's size
    colour = not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"
    return _Terminal(columns, colour)


def _fit(headers: Sequence[str], widths: list[int], columns: int) -> list[int]:
    """Narrower free-text columns until a line fits `columns` (none narrower than
    _MIN_FREE: a row may still wrap on a very narrow terminal rather than show nothing)."""
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - columns
    for name in reversed(_FREE_TEXT):
        if excess <= 0:
            break
        if name in headers:
            i = list(headers).index(name)
            cut = min(excess, max(widths[i] - max(_MIN_FREE, len(name)), 0))
            widths[i] -= cut
            excess -= cut
    return widths


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
