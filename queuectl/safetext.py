"""Text bound for a terminal: control characters shown as escapes, never acted on."""

# No imports, so that every layer (logs included) may use it and the CLI pays nothing for it.

# C0 controls (ESC starts every CSI/OSC sequence; CR and backspace overwrite what a line
# showed), DEL, and C1 controls: a terminal in 8-bit mode acts on U+009B as CSI and on
# U+009D as OSC without any ESC
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
# bidi marks, embeddings, overrides and isolates reorder the text after them on screen
# ("Trojan Source"); U+2028/9 end a line in some viewers
_FORMAT = [0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}

# the escapes Python's repr() writes, which error messages already show for quoted values
_ALL = {c: _NAMED.get(c, f"\\x{c:02x}") for c in _CONTROLS} | {c: f"\\u{c:04x}" for c in _FORMAT}
_BUT_LINES = {c: text for c, text in _ALL.items() if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """`text` for one line of a table, a field or an error: every control character,
    newline and tab included, replaced by its escape (`\\x1b`, `\\n`, `\\u202e`)."""
    if text.isprintable():  # the usual case, at C speed; it is False for all of the above
        return text
    return text.translate(_ALL)


def visible_lines(text: str) -> str:
    """`text` for several lines (job output, a traceback): as `visible`, but newlines and
    tabs stay; CRLF becomes LF (it looks the same), a lone CR shows as `\\r`."""
    if text.replace("\n", "").isprintable():
        return text
    return text.replace("\r\n", "\n").translate(_BUT_LINES)


def command_line(command: str, *args: str) -> str:
    """`queuectl COMMAND ARGS...` to paste into a shell, for hints: ARGS are values (job ids,
    names), quoted, and after `--` when one begins with `-` (a job id such as `-rf` would
    otherwise read as an option)."""
    import shlex  # only the callers that print such a hint pay for it

    words = [shlex.quote(arg) for arg in args]
    if any(arg.startswith("-") for arg in args):
        words.insert(0, "--")
    return visible(" ".join(["queuectl", command, *words]))
