"""allowed-commands: the command allow-list's pattern language, its parsing and matching."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence

from queuectl import errors

KEY = "allowed-commands"
REFUSED = "command not allowed by allowed-commands"
REGEX_PREFIX = "re:"

# What lets `/bin/sh -c` do more than run one program with its arguments: chain, pipe or
# background another command (; & | newline), substitute one ($ `), redirect (< >), group
# (( ) { }), and escape or quote (\ ' "), which change where words and commands begin.
# Control characters (all but tab) go too: newline and CR among them, and nothing needs them.
_META_CLASS = "[;&|$`<>(){}\\\\'\"\\x00-\\x08\\x0a-\\x1f\\x7f]"
_META = re.compile(_META_CLASS)
_SPLIT = re.compile(f"({_META_CLASS})")
METACHARACTERS = frozenset(";&|$`<>(){}\\'\"" + "".join(map(chr, [*range(9), *range(10, 32), 127])))


def is_meta(char: str) -> bool:
    return _META.fullmatch(char) is not None


class AllowList:
    """Compiled patterns; a command is allowed when any one of them matches all of it.

    A glob pattern: `*` matches any run of characters and `?` exactly one, but neither ever
    matches a metacharacter; every other character, metacharacters included, stands for
    itself. So a command matches when its metacharacters are exactly the ones written in the
    pattern, in the same places, and the text between them matches the wildcards.
    `re:REGEX` is a Python regular expression that must match the whole command; it gets no
    metacharacter protection (`re:echo .*` allows `echo hi; rm -rf ~`).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._globs: list[list[str]] = []
        self._regexes: list[re.Pattern[str]] = []
        for pattern in self.patterns:
            if pattern.startswith(REGEX_PREFIX):
                self._regexes.append(re.compile(pattern.removeprefix(REGEX_PREFIX)))
            else:
                self._globs.append(_SPLIT.split(pattern))

    def allows(self, command: str) -> bool:
        if self._globs:
            # split at metacharacters: [text, meta, text, meta, ..., text]
            parts = _SPLIT.split(command)
            if any(_matches(glob, parts) for glob in self._globs):
                return True
        return any(r.fullmatch(command) for r in self._regexes)


def _matches(glob: list[str], parts: list[str]) -> bool:
    if len(glob) != len(parts):
        return False  # wildcards never match a metacharacter: the counts must agree
    for i, (want, got) in enumerate(zip(glob, parts, strict=True)):
        if i % 2 and want != got:  # odd places hold one metacharacter each
            return False
        if not i % 2 and not _wild(want, got):
            return False
    return True


def _wild(pattern: str, text: str) -> bool:
    """`*` and `?` over text free of metacharacters. Greedy, returning to the latest `*` on
    a mismatch: O(len(pattern) * len(text)) at worst, where a backtracking regex of several
    stars is exponential (and a 64 KiB command would hang the worker)."""
    p = t = 0
    star, resume = -1, 0  # the latest `*` seen, and where in text it stopped matching
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, resume, p = p, t, p + 1
        elif p < len(pattern) and pattern[p] in ("?", text[t]):
            p, t = p + 1, t + 1
        elif star >= 0:
            resume += 1  # let that `*` swallow one more character and try again
            p, t = star + 1, resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])


@functools.lru_cache(maxsize=16)
def compiled(patterns: tuple[str, ...]) -> AllowList:
    return AllowList(patterns)


def allows(patterns: tuple[str, ...] | None, command: str) -> bool:
    """None is 'no list': everything is allowed."""
    return patterns is None or compiled(patterns).allows(command)


def parse(value: object) -> tuple[str, ...] | None:
    """A list from `config set`, QUEUECTL_ALLOWED_COMMANDS or the config file: a JSON array
    of patterns (a TOML array arrives as a list), or none / empty for no list. ValueError
    says what is wrong."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in {"", "none", "null"}:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"not a JSON array of patterns ({exc.msg}), e.g. '[\"echo *\"]'"
            ) from None
    if not isinstance(value, list):
        raise ValueError("must be a JSON array of patterns, e.g. '[\"echo *\"]', or none")
    if not value:
        raise ValueError("an empty list would allow no command; use none for no restriction")
    for number, item in enumerate(value, start=1):
        if not isinstance(item, str):
            raise ValueError(f"pattern {number} is not a string")
        if not item or item == REGEX_PREFIX:
            raise ValueError(f"pattern {number} is empty")
        if item.startswith(REGEX_PREFIX):
            try:
                re.compile(item.removeprefix(REGEX_PREFIX))
            except re.error as exc:
                raise ValueError(f"pattern {number}: bad regular expression: {exc}") from None
    return tuple(value)


def text(patterns: tuple[str, ...] | None) -> str:
    """How a list is stored and printed: canonical JSON, or none."""
    return "none" if patterns is None else json.dumps(list(patterns), ensure_ascii=False)


def check_commands(
    patterns: tuple[str, ...] | None, commands: Iterable[str], *, numbered: bool = False
) -> None:
    """UsageError for the first command the list refuses (enqueue's early check; the
    worker's check before it spawns anything is the guarantee)."""
    if patterns is None:
        return
    allow = compiled(patterns)
    for number, command in enumerate(commands, start=1):
        if not allow.allows(command):
            shown = command if len(command) <= 80 else command[:79] + "…"
            where = f"job {number} of the input: " if numbered else ""
            raise errors.UsageError(f"{where}{REFUSED}: {shown!r}")


def stored_patterns(text: str | None) -> tuple[str, ...] | None:
    """The list as workers read it from the settings table: None when unset, and () (no
    command at all) when the stored text no longer parses: a list someone broke by hand
    must not become "run anything" (policy.policy_from_rows reads it the same way)."""
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError:
        return ()


def check_allowed(
    settings: Mapping[str, str], commands: Iterable[str], *, numbered: bool = False
) -> None:
    """Refuse up front what every worker would refuse under the database's allowed-commands
    (`settings` is the settings table, Backend.get_settings()). A convenience for enqueue
    and schedule add: the worker's check right before it spawns is the guarantee."""
    if (text := settings.get(KEY)) is None:
        return
    check_commands(stored_patterns(text), commands, numbered=numbered)
