"""allowed-commands: the glob and regex patterns, their parsing, and where lists come from."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queuectl import allowlist, config, errors, policy
from queuectl.allowlist import METACHARACTERS, allows

EXAMPLES: list[tuple[str, str, bool]] = [
    # `*` spans words, but never a metacharacter
    ("echo *", "echo hello world", True),
    ("echo *", "echo ", True),
    ("echo *", "echo *.txt", True),  # a literal star in the command is an ordinary character
    ("echo *", "echo", False),
    ("echo *", " echo hi", False),  # the whole command must match
    ("echo *", "ECHO hi", False),
    ("echo *", "echo hi; rm -rf /", False),
    ("echo *", "echo hi && id", False),
    ("echo *", "echo hi || id", False),
    ("echo *", "echo hi & id", False),
    ("echo *", "echo hi | sh", False),
    ("echo *", "echo $(id)", False),
    ("echo *", "echo ${HOME}", False),
    ("echo *", "echo $HOME", False),
    ("echo *", "echo `id`", False),
    ("echo *", "echo hi > /etc/passwd", False),
    ("echo *", "echo hi < /etc/passwd", False),
    ("echo *", "echo (hi)", False),
    ("echo *", "echo {a,b}", False),
    ("echo *", "echo hi\nid", False),
    ("echo *", "echo hi\rid", False),
    ("echo *", "echo hi\x00", False),
    ("echo *", "echo 'hi'", False),
    ("echo *", 'echo "hi"', False),
    ("echo *", "echo a\\;b", False),
    ("echo *", "echo a\tb", True),  # tab is ordinary whitespace
    # metacharacters written in the pattern match themselves, and only there
    ("make build && make test", "make build && make test", True),
    ("make build && make test", "make build && make test; id", False),
    ("make build && make test", "make build && make tests", False),
    ("echo '*'", "echo 'hello world'", True),
    ("echo '*'", "echo 'a' ; id; 'b'", False),
    ("cat * > /tmp/out-*", "cat a b > /tmp/out-1", True),
    ("cat * > /tmp/out-*", "cat a > /tmp/out-1 > /etc/x", False),
    # `?` is exactly one character, never a metacharacter
    ("backup-?.sh", "backup-1.sh", True),
    ("backup-?.sh", "backup-12.sh", False),
    ("backup-?.sh", "backup-.sh", False),
    ("backup-?.sh", "backup-;.sh", False),
    ("backup-?.sh", "backup-?.sh", True),
    # everything else is literal: no classes, no escapes
    ("ls [ab]", "ls [ab]", True),
    ("ls [ab]", "ls a", False),
    ("*", "", True),
    ("*", "anything at all", True),
    ("*", "a;b", False),
    ("**", "two stars", True),
    ("*-*-*", "a-b-c-d", True),
    ("*-*-*", "a-b", False),
    # re: is a full-match Python regex, with no metacharacter protection
    ("re:sleep [0-9]+", "sleep 10", True),
    ("re:sleep [0-9]+", "sleep 10; id", False),
    ("re:sleep [0-9]+", "xsleep 1", False),
    ("re:echo .*", "echo hi; id", True),
    ("re:echo .*", "echo hi\nid", False),  # `.` stops at a newline (no DOTALL)
]


@pytest.mark.parametrize(("pattern", "command", "expected"), EXAMPLES)
def test_patterns_match_whole_commands(pattern: str, command: str, expected: bool) -> None:
    assert allows((pattern,), command) is expected


def test_any_one_pattern_of_a_list_suffices() -> None:
    patterns = ("echo *", "re:sleep [0-9]+", "make test")
    assert allows(patterns, "sleep 3")
    assert allows(patterns, "make test")
    assert allows(patterns, "echo x")
    assert not allows(patterns, "make install")


def test_no_list_allows_everything_and_a_broken_one_nothing() -> None:
    assert allows(None, "rm -rf / ; curl evil | sh")
    assert not allows((), "true")  # what a stored list that no longer parses becomes


def test_the_metacharacter_set_is_what_the_matcher_uses() -> None:
    for code in range(0x3000):
        assert allowlist.is_meta(chr(code)) is (chr(code) in METACHARACTERS), hex(code)
    assert set(";&|$`<>(){}\\'\"\n\r\x00") <= METACHARACTERS
    assert not {"\t", " ", "*", "?", "[", "~", "#", "=", "-", "/"} & METACHARACTERS


def test_many_stars_on_a_long_command_take_linear_time() -> None:
    # a backtracking regex of these stars would not finish on a 64 KiB command
    command = "a" * 65536
    started = time.monotonic()
    assert not allows(("a*a*a*a*a*a*a*a*b",), command)
    assert not allows(("*aaaaaaaaaaaaaaaab",), command)
    assert allows(("a*a*a*a*a*a*a*a*a",), command)
    assert time.monotonic() - started < 2.0


# --- properties ------------------------------------------------------------------------------

# few distinct characters, so that random patterns and commands do match now and then
SAFE = "ab -*?"
META = ";$|`'\n\\"


def reference(pattern: str, command: str) -> bool:
    """The documented language as a plain regex: slow on many stars, fine on short inputs."""
    other = "[^" + re.escape("".join(sorted(METACHARACTERS))) + "]"
    body = "".join(
        f"{other}*" if c == "*" else other if c == "?" else re.escape(c) for c in pattern
    )
    return re.fullmatch(body, command, re.DOTALL) is not None


@settings(max_examples=400, deadline=None)
@given(st.text(SAFE + META, max_size=10), st.text(SAFE + META, max_size=14))
def test_the_matcher_agrees_with_the_reference_regex(pattern: str, command: str) -> None:
    assert allows((pattern,), command) is reference(pattern, command)


@settings(max_examples=300, deadline=None)
@given(
    st.text(SAFE, min_size=1, max_size=12),
    st.text(SAFE, max_size=10),
    st.sampled_from(sorted(METACHARACTERS)),
    st.text(SAFE + META, max_size=10),
)
def test_a_pattern_without_metacharacters_never_allows_one(
    pattern: str, before: str, meta: str, after: str
) -> None:
    assert not allows((pattern,), before + meta + after)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20).filter(lambda p: "*" not in p and "?" not in p), st.text(max_size=20))
def test_a_pattern_without_wildcards_allows_exactly_itself(pattern: str, command: str) -> None:
    if pattern.startswith(allowlist.REGEX_PREFIX) or not pattern:
        return
    assert allows((pattern,), pattern)
    assert allows((pattern,), command) is (command == pattern)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1).filter(lambda p: not p.startswith("re:")), min_size=1))
def test_stored_text_parses_back_to_the_same_list(patterns: list[str]) -> None:
    stored = allowlist.text(tuple(patterns))
    assert allowlist.parse(stored) == tuple(patterns)


# --- parsing, and where a list comes from ------------------------------------------------------


@pytest.mark.parametrize("text", ["none", "NONE", "null", "", "  "])
def test_none_or_empty_means_no_list(text: str) -> None:
    assert allowlist.parse(text) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("echo *", "not a JSON array"),
        ('"echo *"', "must be a JSON array"),
        ('{"a": 1}', "must be a JSON array"),
        ("[]", "empty list would allow no command"),
        ('["echo *", 3]', "pattern 2 is not a string"),
        ('["echo *", ""]', "pattern 2 is empty"),
        ('["re:"]', "pattern 1 is empty"),
        ('["re:(unclosed"]', "pattern 1: bad regular expression"),
        (["ok", None], "pattern 2 is not a string"),
    ],
)
def test_bad_lists_are_refused_saying_why(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        allowlist.parse(value)


def test_a_toml_array_is_a_list_too() -> None:
    assert allowlist.parse(["echo *", "re:x+"]) == ("echo *", "re:x+")


def test_the_database_list_is_a_policy_key_and_a_broken_one_fails_closed() -> None:
    assert policy.policy_from_rows({}).allowed_commands is None
    stored = policy.policy_text(policy.parse_policy_value("allowed-commands", '[ "echo *" ]'))
    assert stored == '["echo *"]'
    assert policy.policy_from_rows({"allowed-commands": stored}).allowed_commands == ("echo *",)
    assert policy.policy_from_rows({"allowed-commands": "none"}).allowed_commands is None
    # written by hand into the settings table: workers must not fall back to "anything"
    assert policy.policy_from_rows({"allowed-commands": "[oops"}).allowed_commands == ()


def test_a_worker_pins_its_own_list_from_the_environment_or_the_config_file(
    tmp_path: Path,
) -> None:
    assert config.load_settings({}, environ={}).allowed_commands is None
    env = {"QUEUECTL_ALLOWED_COMMANDS": '["echo *"]'}
    assert config.load_settings({}, environ=env).allowed_commands == ("echo *",)
    toml = tmp_path / "q.toml"
    toml.write_text('allowed-commands = ["make *", "re:sleep [0-9]+"]\n')
    pinned = config.load_settings({}, environ={}, path=toml)
    assert pinned.allowed_commands == ("make *", "re:sleep [0-9]+")
    # the environment wins over the file, as for every process setting
    assert config.load_settings({}, environ=env, path=toml).allowed_commands == ("echo *",)
    toml.write_text("allowed-commands = 'none'\n")
    assert config.load_settings({}, environ={}, path=toml).allowed_commands is None


@pytest.mark.parametrize("value", ["echo *", "[]", '["ok", 1]', '["re:["]'])
def test_a_bad_pin_is_a_config_error_naming_its_source(value: str) -> None:
    env = {"QUEUECTL_ALLOWED_COMMANDS": value}
    with pytest.raises(errors.ConfigError, match=r"^allowed-commands \(from QUEUECTL_ALLOWED"):
        config.load_settings({}, environ=env)


def test_enqueue_check_names_the_refused_command_and_its_place() -> None:
    allowlist.check_commands(None, ["rm -rf /"])
    allowlist.check_commands(("echo *",), ["echo a", "echo b"])
    with pytest.raises(errors.UsageError, match=r"^command not allowed by allowed-commands: 'id'$"):
        allowlist.check_commands(("echo *",), ["id"])
    with pytest.raises(errors.UsageError, match=r"^job 2 of the input: command not allowed"):
        allowlist.check_commands(("echo *",), ["echo a", "echo $(id)"], numbered=True)
    with pytest.raises(errors.UsageError) as info:
        allowlist.check_commands(("echo *",), ["x" * 500])
    assert len(str(info.value)) < 150  # a long command is cut short in the one-line error
