"""Terminal injection: control characters in user text show as escapes in every human-readable
output of the CLI on both backends, `--json` keeps the exact text, and `logs` escapes only on a
terminal (issue 19, item 4)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shlex
import sqlite3
import subprocess
import sys
import tty
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from queuectl import models
from queuectl.backends import open_backend
from tests.conftest import TEMPLATE_DB, Cli, _admin, _with_db

pytestmark = pytest.mark.e2e


class Control(NamedTuple):
    name: str
    raw: str  # what the user's text holds
    shown: str  # how a human-readable output must print it


CONTROLS = [
    Control("esc", "\x1b", r"\x1b"),
    Control("csi", "\x1b[2K\x1b[1G", r"\x1b[2K\x1b[1G"),  # erase the line, cursor to column 1
    Control("csi8", "\x9b2K", r"\x9b2K"),  # the 8-bit CSI (C1), no ESC needed
    Control("osc0", "\x1b]0;pwned\x07", r"\x1b]0;pwned\x07"),  # sets the window title
    Control("osc52", "\x1b]52;c;cHdu\x07", r"\x1b]52;c;cHdu\x07"),  # writes the clipboard
    Control("bel", "\x07", r"\x07"),
    Control("cr", "\r", r"\r"),
    Control("lf", "\n", r"\n"),
    Control("bs", "\b", r"\x08"),
    Control("rlo", "\u202e", r"\u202e"),  # right-to-left override
]
# what must never reach a terminal raw: C0 but newline (which separates the output's own
# lines), DEL, C1, bidi controls
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
FAR_CRON = "0 0 1 1 *"  # never due while the tests run


def text(kind: str, control: Control) -> str:
    """User text of one kind (`c` command, `q` queue, ...) holding one control; FORGED right
    after it shows that it moved nothing (a raw newline would start a line with it)."""
    return f"{kind}-{control.name}:{control.raw}FORGED"


def shown(kind: str, control: Control) -> str:
    return f"{kind}-{control.name}:{control.shown}FORGED"


def texts(kind: str) -> list[str]:
    return [text(kind, c) for c in CONTROLS]


def every(kind: str) -> str:
    """Every control in one text, for fields printed in full (`show`, errors, hosts)."""
    return " ".join(texts(kind))


def shown_all(*kinds: str) -> list[str]:
    return [shown(kind, c) for kind in kinds for c in CONTROLS]


# the -rf job prints every control (its id also needs `--` on the command line)
PRINTER = f"printf '%s' {shlex.quote(every('a'))}; exit 3"
# allowed-commands is a JSON array: raw C0 cannot appear in it, C1 and bidi controls can
PATTERNS = ["true", *(text("g", c) for c in CONTROLS if c.raw >= "\x80")]
CLI_CRON = "0\r0\n1 1 *"  # whitespace in a cron expression may be any whitespace


def run(
    cli: Cli, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`python -m queuectl ARGS` with its output as bytes decoded exactly (Cli's text mode
    would turn each CR into a newline)."""
    done = subprocess.run(
        [sys.executable, "-m", "queuectl", *args],
        env=cli.env(**(env or {})),
        capture_output=True,
        input=stdin,
        timeout=120,
        cwd=cli.cwd,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def on_terminal(cli: Cli, *args: str) -> str:
    """What `python -m queuectl ARGS` writes to stdout when stdout is a terminal."""
    leader, follower = pty.openpty()
    tty.setraw(follower)  # no LF -> CRLF: read exactly what the program wrote
    with subprocess.Popen(
        [sys.executable, "-m", "queuectl", *args],
        env=cli.env(),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        cwd=cli.cwd,
    ) as proc:
        os.close(follower)
        chunks = []
        with contextlib.suppress(OSError):  # EIO once the program closed the terminal
            while data := os.read(leader, 65536):
                chunks.append(data)
        os.close(leader)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=30) == 0, err
    assert not UNSAFE.search(err), err
    return b"".join(chunks).decode()


def assert_escaped(output: str, must_show: list[str]) -> None:
    if bad := UNSAFE.search(output):
        context = output[max(bad.start() - 40, 0) : bad.end() + 40]
        raise AssertionError(f"raw {bad.group()!r} printed, in: {context!r}")
    missing = [s for s in must_show if s not in output]
    assert not missing, f"{missing} not in:\n{output}"


def execute(url: str, sql: str, *params: str) -> None:
    """Direct writes of text only another writer could store (a driver's error message)."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            conn.execute(sql, params)
            conn.commit()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(sql.replace("?", "%s").encode(), params)


@dataclass
class Hostile:
    """A database full of hostile text, and what the commands that wrote it printed."""

    cli: Cli
    worker: tuple[int, str, str]
    written: dict[str, tuple[int, str, str]] = field(default_factory=dict)


def _populate(cli: Cli) -> Hostile:
    jobs = [{"id": f"j-{c.name}", "command": text("c", c), "max_retries": 0} for c in CONTROLS] + [
        {"id": "-rf", "command": PRINTER, "max_retries": 0}
    ]
    ndjson = "".join(json.dumps(job) + "\n" for job in jobs).encode()
    assert run(cli, "enqueue", "-", stdin=ndjson)[0] == 0
    with contextlib.closing(open_backend(cli.url)) as backend:
        # the CLI refuses such queue names; another writer (the Python API) may not
        backend.enqueue(
            [models.JobSpec(command="true", queue=q, max_retries=0) for q in texts("q")]
        )
    # the hostname names the worker in its logs, in `worker list` and in every attempt
    worker = run(
        cli,
        "--log-format",
        "console",
        "worker",
        "start",
        "--burst",
        env={"QUEUECTL_HOSTNAME": every("h")},
    )
    assert worker[0] == 0, worker[2]
    for c in CONTROLS:
        execute(
            cli.url,
            "UPDATE queuectl_jobs SET last_error = ? WHERE id = ?",
            text("e", c),
            f"j-{c.name}",
        )
    execute(cli.url, "UPDATE queuectl_jobs SET last_error = ? WHERE id = ?", every("e"), "-rf")
    execute(cli.url, "UPDATE queuectl_runs SET error = ? WHERE job_id = ?", every("r"), "-rf")
    with contextlib.closing(open_backend(cli.url)) as backend:
        for c in CONTROLS:
            backend.add_schedule(
                models.Schedule(name=text("s", c), cron=FAR_CRON, command=text("k", c))
            )
        backend.add_schedule(models.Schedule(name=every("x"), cron=FAR_CRON, command="true"))
        for pid, c in enumerate(CONTROLS, start=100):  # one heartbeat is one process's
            info = models.WorkerInfo(
                id=f"w-{c.name}", host=text("h", c), pid=pid, queues=(text("q", c),)
            )
            backend.heartbeat([info], [], lease_ttl_s=10)
    hostile = Hostile(cli, worker)
    hostile.written["schedule add"] = run(
        cli, "schedule", "add", "cli", "--cron", CLI_CRON, "--command", every("w")
    )
    hostile.written["config set"] = run(
        cli, "config", "set", "allowed-commands", json.dumps(PATTERNS, ensure_ascii=False)
    )
    return hostile


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    """Built once per backend: a burst worker run and a dozen writes serve every view below."""
    cwd = tmp_path_factory.mktemp("hostile")
    if request.param == "sqlite":
        yield _populated(Cli(f"sqlite:///{cwd}/queue.db", cwd))
        return
    base = request.getfixturevalue("postgres_url")
    request.getfixturevalue("pg_template")
    name = f"queuectl_t_{uuid.uuid4().hex[:12]}"
    _admin(base, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    try:
        yield _populated(Cli(_with_db(base, name), cwd))
    finally:
        _admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _populated(cli: Cli) -> Hostile:
    # conftest's autouse clean environment is per test; this runs once per module
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("QUEUECTL_") and name != "QUEUECTL_TEST_DATABASE_URL":
                mp.delenv(name)
        return _populate(cli)


class View(NamedTuple):
    """A read command; what its human form must show; what its --json form must hold."""

    args: list[str]
    must_show: list[str]
    json_texts: Callable[[Any], list[str]]
    exact: list[str]  # found in json_texts(parsed --json output)
    env: tuple[tuple[str, str], ...] = ()


def _jobs(doc: list[dict[str, Any]]) -> list[str]:
    return [j[k] for j in doc for k in ("command", "queue", "last_error") if j[k]]


def _show(doc: dict[str, Any]) -> list[str]:
    return [
        doc["command"],
        doc["last_error"],
        *(r[k] for r in doc["runs"] for k in ("error", "worker_id")),
    ]


VIEWS = {
    "list": View(["list"], shown_all("c", "q"), _jobs, [*texts("c"), *texts("q")]),
    "show": View(
        ["show", "--", "-rf"],
        # the -rf attempt ran on the worker named by QUEUECTL_HOSTNAME
        shown_all("a", "e", "r", "h"),
        _show,
        [PRINTER, every("e"), every("r")],
    ),
    "dlq list": View(["dlq", "list"], shown_all("c", "e"), _jobs, [*texts("c"), *texts("e")]),
    "status": View(["status"], shown_all("q"), lambda doc: list(doc["queues"]), texts("q")),
    "stats": View(["stats"], shown_all("q"), lambda doc: list(doc["queues"]), texts("q")),
    "worker list": View(
        ["worker", "list"],
        shown_all("h", "q"),
        lambda doc: [w["host"] for w in doc] + [q for w in doc for q in w["queues"]],
        [*texts("h"), *texts("q")],
        # the workers registered above beat once: keep them alive for this read
        (("QUEUECTL_LEASE_TTL", "3600"),),
    ),
    "schedule list": View(
        ["schedule", "list"],
        [*shown_all("s", "k"), r"0\r0\n1 1 *"],
        lambda doc: [s[k] for s in doc for k in ("name", "command", "cron")],
        [*texts("s"), *texts("k"), CLI_CRON, every("x")],
    ),
    "config list": View(
        ["config", "list"],
        [shown("g", c) for c in CONTROLS if c.raw >= "\x80"],
        lambda doc: json.loads(doc["allowed-commands"]),
        PATTERNS,
    ),
}


@pytest.mark.parametrize("name", list(VIEWS))
def test_a_view_shows_controls_escaped_and_its_json_exact(hostile: Hostile, name: str) -> None:
    view = VIEWS[name]
    code, out, err = run(hostile.cli, *view.args, env=dict(view.env))
    assert code == 0, err
    assert_escaped(out + err, view.must_show)
    if name == "show":  # a newline in the command must not print a second `state` line
        assert len([line for line in out.splitlines() if line.startswith("state")]) == 1, out
    end = view.args.index("--") if "--" in view.args else len(view.args)
    json_args = [*view.args[:end], "--json", *view.args[end:]]
    code, out, err = run(hostile.cli, *json_args, env=dict(view.env))
    assert code == 0, err
    found = view.json_texts(json.loads(out))
    assert not [t for t in view.exact if t not in found]


def test_commands_that_write_echo_user_text_escaped(hostile: Hostile) -> None:
    code, out, err = hostile.written["schedule add"]
    assert code == 0, err
    assert_escaped(out + err, [*shown_all("w"), r"0\r0\n1 1 *"])
    code, out, err = hostile.written["config set"]
    assert code == 0, err
    assert_escaped(out + err, [shown("g", c) for c in CONTROLS if c.raw >= "\x80"])
    code, out, err = run(hostile.cli, "config", "get", "allowed-commands")
    assert code == 0, err
    assert_escaped(out + err, [shown("g", c) for c in CONTROLS if c.raw >= "\x80"])
    code, out, err = run(hostile.cli, "schedule", "remove", every("x"))
    assert code == 0, err
    assert_escaped(out + err, shown_all("x"))


def test_worker_console_logs_show_controls_escaped(hostile: Hostile) -> None:
    _, out, err = hostile.worker
    # job_claimed names each command; every line names the worker (its hostname)
    assert_escaped(out + err, shown_all("c", "h"))


def test_logs_escape_on_a_terminal_and_stay_raw_in_a_pipe(hostile: Hostile) -> None:
    raw = every("a")
    code, out, err = run(hostile.cli, "logs", "--", "-rf")
    assert (code, out) == (0, raw), err  # a pipe gets the bytes as captured
    assert on_terminal(hostile.cli, "logs", "--raw", "--", "-rf") == raw
    seen = on_terminal(hostile.cli, "logs", "--", "-rf")
    # newlines stay (job output has lines); every other control shows escaped
    assert_escaped(seen, [text("a", c) if c.name == "lf" else shown("a", c) for c in CONTROLS])


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "--file", every("z")],  # quotes a path
        ["--db", f"sqlite:///no/such/{every('z')}/q.db", "list"],  # quotes a URL
        ["show", every("z")],
        ["schedule", "remove", every("z")],
        [every("z")],  # click's "no such command"
    ],
    ids=["path", "url", "job id", "schedule name", "command"],
)
def test_an_error_quoting_user_text_is_one_escaped_line(tmp_path: Path, args: list[str]) -> None:
    code, out, err = run(Cli(f"sqlite:///{tmp_path}/queue.db", tmp_path), *args)
    assert code != 0
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and err.endswith("\n"), err
    assert_escaped(err, shown_all("z"))
