"""structlog set-up: console on a TTY, JSON otherwise, always on stderr."""

from __future__ import annotations

import logging
import sys

import structlog

from queuectl.safetext import visible, visible_lines

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Shown:
    """A value the console renderer prints as it is: it prints repr() of whatever is not a
    plain string, and this repr is text already escaped."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def escape_controls(
    logger: structlog.types.WrappedLogger, name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Console logs show control characters as escapes: an event carries user text (a job's
    command, a queue name, an error), and the console renderer prints a string without
    spaces raw. (JSON logs need nothing: json.dumps escapes them.)"""
    for key, value in event_dict.items():
        if isinstance(value, str):
            if key in ("exception", "stack"):  # tracebacks keep their lines
                event_dict[key] = visible_lines(value)
            elif visible(value) != value:
                # repr(), as the renderer shows a string with a space: quoted, and escaped
                # the same way (\x1b, \n, \u202e)
                event_dict[key] = _Shown(repr(value))
        elif not isinstance(value, int | float | None):  # lists, exceptions, objects
            text = repr(value)
            if (shown := visible(text)) != text:
                event_dict[key] = _Shown(shown)
    return event_dict


def configure(*, fmt: str = "auto", level: str = "info") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    last: list[structlog.types.Processor] = (
        [escape_controls, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
        if fmt == "console"
        else [structlog.processors.JSONRenderer()]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *last,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
