"""Shell completion (issue 18 item 2): the protocol the scripts speak, driven through real
subprocesses over real SQLite and Postgres databases, and the printed scripts loaded into
real bash, zsh and fish."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.test_startup import imported

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent  # where the `queuectl` console script is installed
BASH_BREAKS = " \t\n\"'><=;|&(:"  # bash's default COMP_WORDBREAKS


def complete(cli: Cli, line: str, shell: str = "bash", **env: str) -> list[str]:
    """What `queuectl` answers a shell's completion request for the line (cursor at its end)."""
    result = ask(cli, line, shell, **env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def ask(cli: Cli, line: str, shell: str = "bash", **env: str) -> subprocess.CompletedProcess[str]:
    extra = {"_QUEUECTL_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": line}
    if shell == "bash":
        extra["_QUEUECTL_WORDBREAKS"] = BASH_BREAKS
    if shell == "fish":
        extra["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    return subprocess.run(
        [sys.executable, "-m", "queuectl"],
        env=cli.env(**extra, **env),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cli.cwd,
    )


@pytest.fixture
def jobs(cli: Cli) -> Cli:
    """bad (dead), ok (completed), waiting (pending), stopped (cancelled), report:today, in
    queues mail/builds/default; a paused queue with no jobs; a schedule."""
    cli.enqueue({"id": "bad", "command": "exit 1", "max_retries": 0, "queue": "builds"})
    cli.enqueue({"id": "ok", "command": "true", "queue": "builds"})
    burst = cli("worker", "start", "--burst")
    assert burst.returncode == 0, burst.stderr
    cli.enqueue({"id": "waiting", "command": "true", "queue": "mail"})
    cli.enqueue({"id": "stopped", "command": "true"})
    assert cli("cancel", "stopped").returncode == 0
    cli.enqueue({"id": "report:today", "command": "echo hi", "queue": "mail"})
    assert cli("queue", "pause", "paused-q").returncode == 0
    added = cli("schedule", "add", "nightly", "--cron", "0 3 * * *", "-c", "make backup")
    assert added.returncode == 0, added.stderr
    return cli


def test_job_ids_come_newest_first_filtered_by_prefix(jobs: Cli) -> None:
    assert complete(jobs, "queuectl show ") == ["report:today", "stopped", "waiting", "ok", "bad"]
    assert complete(jobs, "queuectl logs s") == ["stopped"]
    assert complete(jobs, "queuectl wait nothing-like-this") == []
    # zsh and fish get each id with its state and command beside it
    assert complete(jobs, "queuectl show s", "fish") == ["stopped\tcancelled true"]
    assert complete(jobs, "queuectl show r", "zsh") == [
        """_arguments '*: :(("report\\\\:today":"pending  echo hi"))'"""
    ]


def test_click_protocol_with_comp_words_works_too(jobs: Cli) -> None:
    result = jobs(_QUEUECTL_COMPLETE="bash_complete", COMP_WORDS="queuectl show w", COMP_CWORD="2")
    assert result.returncode == 0 and result.stdout.split() == ["waiting"]


def test_each_command_offers_the_jobs_it_can_act_on(jobs: Cli) -> None:
    assert complete(jobs, "queuectl cancel ") == ["report:today", "waiting"]
    assert complete(jobs, "queuectl retry ") == ["stopped", "bad"]
    assert complete(jobs, "queuectl dlq retry ") == ["bad"]
    assert complete(jobs, "queuectl enqueue -c true --after o") == ["ok"]
    # an id already on the line is not offered again
    assert complete(jobs, "queuectl cancel waiting ") == ["report:today"]


def test_queues_schedules_config_keys_and_states(jobs: Cli) -> None:
    assert complete(jobs, "queuectl list --queue ") == ["builds", "default", "mail", "paused-q"]
    assert complete(jobs, "queuectl list --queue=m") == ["mail"]
    assert complete(jobs, "queuectl queue resume p") == ["paused-q"]
    assert complete(jobs, "queuectl queue set b") == ["builds"]
    assert complete(jobs, "queuectl worker start -q d") == ["default"]
    assert complete(jobs, "queuectl dlq purge --queue b") == ["builds"]
    assert complete(jobs, "queuectl schedule remove n") == ["nightly"]
    assert complete(jobs, "queuectl schedule run ") == ["nightly"]
    assert complete(jobs, "queuectl config get backoff-") == [
        "backoff-base",
        "backoff-jitter",
        "backoff-max",
    ]
    assert complete(jobs, "queuectl config set max") == ["max-retries"]
    assert complete(jobs, "queuectl list --state d") == ["dead"]


def test_commands_and_options_complete_without_a_database(cli: Cli) -> None:
    assert complete(cli, "queuectl sh") == ["show"]
    assert complete(cli, "queuectl worker st") == ["start", "stop"]
    assert complete(cli, "queuectl completion ") == ["bash", "zsh", "fish"]
    assert complete(cli, "queuectl show --j") == ["--json"]
    assert not (cli.cwd / "queue.db").exists()  # commands and options never touch it


def test_a_db_on_the_line_wins_over_the_environment(jobs: Cli, tmp_path: Path) -> None:
    elsewhere = f"sqlite:///{tmp_path}/other.db"
    line = f"queuectl --db {jobs.url} dlq retry "
    assert complete(jobs, line, QUEUECTL_DATABASE_URL=elsewhere) == ["bad"]
    assert complete(jobs, "queuectl show ", QUEUECTL_DATABASE_URL=elsewhere) == []
    assert not (tmp_path / "other.db").exists()  # completion never creates a database


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung or half-open database."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.parametrize(
    "db",
    [
        "postgresql://u@127.0.0.1:{port}/db",  # never answers
        "postgresql://u@127.0.0.1:1/db",  # refuses
        "sqlite:///{tmp}/missing/q.db",
        "sqlite:///{tmp}/not-queuectl.db",
    ],
    ids=["hung-server", "refused", "missing-file", "foreign-file"],
)
def test_a_database_that_cannot_answer_gives_nothing_fast_and_silently(
    cli: Cli, tmp_path: Path, silent_server: int, db: str
) -> None:
    (tmp_path / "not-queuectl.db").write_bytes(b"not a database at all" * 100)
    url = db.format(port=silent_server, tmp=tmp_path)
    started = time.monotonic()
    result = ask(cli, f"queuectl --db {url} show ")
    elapsed = time.monotonic() - started
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert elapsed < 4, elapsed  # the lookup gives up after 1 s; the rest is start-up
    assert not (tmp_path / "missing").exists()


def test_a_bad_request_fails_without_a_traceback(cli: Cli) -> None:
    for instruction in ("complete_tcsh", "nonsense", "source_"):
        result = cli(_QUEUECTL_COMPLETE=instruction, _TYPER_COMPLETE_ARGS="queuectl ")
        assert (result.returncode, result.stdout, result.stderr) == (1, "", "")


def test_completion_prints_each_script_and_refuses_other_shells(cli: Cli) -> None:
    for shell, marker in [
        ("bash", "complete -o default -F _queuectl_completion queuectl"),
        ("zsh", "compdef _queuectl_completion queuectl"),
        ("fish", "complete --command queuectl"),
    ]:
        result = cli("completion", shell)
        assert result.returncode == 0 and marker in result.stdout
    bad = cli("completion", "tcsh")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


# --- the printed scripts in real shells ------------------------------------------------------


def shell_env(cli: Cli) -> dict[str, str]:
    if shutil.which("queuectl", path=str(BIN)) is None:
        pytest.skip(f"no queuectl console script in {BIN} (pip install -e .)")
    return cli.env(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def run_shell(cli: Cli, argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    result = subprocess.run(
        argv, env=shell_env(cli), capture_output=True, text=True, timeout=30, cwd=cli.cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


BASH_COMPLETE = """
source <(queuectl completion bash)
complete -p queuectl
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
COMP_CWORD=${#COMP_WORDS[@]}
_queuectl_completion queuectl
printf 'reply:%s\\n' "${COMPREPLY[@]}"
"""


def test_bash_loads_the_script_and_completes_through_it(jobs: Cli) -> None:
    def reply(line: str) -> list[str]:
        out = run_shell(jobs, ["bash", "--norc", "--noprofile", "-c", BASH_COMPLETE, "-", line])
        assert "complete -o default -F _queuectl_completion queuectl" in out
        return [x.removeprefix("reply:") for x in out.splitlines() if x.startswith("reply:")]

    # the database URL holds `:` and `/`, which bash's own word splitting would cut apart
    assert reply(f"queuectl --db {jobs.url} dlq retry b") == ["bad"]
    # bash replaces only the part after the last `:`, so the reply is the rest of the id
    assert reply("queuectl show report:to") == ["today"]
    assert reply("queuectl list --queue=ma") == ["mail"]


ZSH_COMPLETE = """
autoload -U compinit && compinit -u -D
eval "$(queuectl completion zsh)"
print -r -- "registered:$_comps[queuectl]"
# outside a completion widget: show what the function hands to zsh's _arguments
_arguments() { print -r -- "arguments:$*"; }
words=(${(z)1}); CURRENT=$(( ${#words} + 1 )); words+=("")
_queuectl_completion
"""


def test_zsh_loads_the_script_and_completes_through_it(jobs: Cli) -> None:
    out = run_shell(jobs, ["zsh", "-f", "-c", ZSH_COMPLETE, "-", "queuectl cancel"])
    assert "registered:_queuectl_completion" in out
    # `\\:` inside the quoted item: _arguments reads `report\:today`, a colon in the value
    spec = '*: :(("report\\\\:today":"pending  echo hi" "waiting":"pending  true"))'
    assert f"arguments:{spec}" in out.replace("\n", " ")


def test_fish_loads_the_script_and_completes_through_it(jobs: Cli) -> None:
    script = "queuectl completion fish | source; complete --do-complete $argv[1]"
    out = run_shell(jobs, ["fish", "--no-config", "-c", script, "queuectl dlq retry "])
    assert out.splitlines() == ["bad\tdead exit 1"]
    out = run_shell(jobs, ["fish", "--no-config", "-c", script, "queuectl schedule pause n"])
    assert out.splitlines() == ["nightly\t0 3 * * * make backup"]


@pytest.mark.parametrize("args", [["--help"], ["status"], ["list", "--json"]])
def test_normal_calls_do_not_load_the_completion_machinery(tmp_path: Path, args: list[str]) -> None:
    names = imported(tmp_path, *args)
    assert not names & {"queuectl.cli.shells", "queuectl.backends.candidates"}
