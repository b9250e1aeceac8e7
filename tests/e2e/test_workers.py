"""Worker control end to end: graceful stop, forced stop, cancel, timeouts, logs --follow,
delayed jobs, recovery while every survivor is busy."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import Cli
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e


def state(cli: Cli, job_id: str) -> str:
    return str(cli.json("show", job_id, "--json")["state"])


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_worker_stop_drains_the_running_job_and_starts_no_other(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "m.txt"
    go = tmp_path / "go"
    # `a` runs until the worker has seen the stop request: no race with a slow machine
    hold = f"while [ ! -e {go} ]; do sleep 0.05; done"
    cli.enqueue({"id": "a", "command": f"{hold}; echo a >> {marker}", "priority": 1})
    cli.enqueue({"id": "b", "command": f"echo b >> {marker}"})
    worker = cli.popen("worker", "start")
    wait_for(lambda: state(cli, "a") == "processing", timeout=15)
    listed = cli.json("worker", "list", "--json")
    assert [w["current_jobs"] for w in listed] == [["a"]]
    # the connections its process holds, as of its last beat: one pooled and one LISTEN on
    # Postgres (LISTEN connects just after the first beat); a file on SQLite
    held = None if cli.url.startswith("sqlite") else 2
    wait_for(
        lambda: [w["connections"] for w in cli.json("worker", "list", "--json")] == [held],
        timeout=10,
    )
    text = cli("worker", "list").stdout.splitlines()
    assert text[0].split()[-3:] == ["CONNS", "DONE", "MEM"]
    # a slot's attempts so far (0: `a` still runs) and, on Linux, its process's memory
    assert text[1].endswith(" MiB") and text[1].split()[-3] == "0", text
    assert cli.json("status", "--json")["workers"] == 1
    stop = cli.popen("worker", "stop", "--timeout", "30")
    wait_for(lambda: "worker_stopping" in cli.log(worker), timeout=15)
    go.touch()
    assert stop.wait(timeout=30) == 0, cli.log(stop)
    assert worker.wait(timeout=10) == 0, cli.log(worker)
    assert state(cli, "a") == "completed"
    assert state(cli, "b") == "pending", cli.log(worker)
    assert marker.read_text() == "a\n"
    assert cli.json("worker", "list", "--json") == []
    again = cli("worker", "stop")  # idempotent
    assert again.returncode == 0 and "no workers" in again.stderr


def test_sigterm_drains_and_a_second_signal_releases_the_job(cli: Cli, tmp_path: Path) -> None:
    cli.enqueue({"id": "short", "command": "sleep 1.5"})
    worker = cli.popen("worker", "start")
    wait_for(lambda: state(cli, "short") == "processing", timeout=15)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert state(cli, "short") == "completed"

    cli.enqueue({"id": "long", "command": "sleep 60"})
    worker = cli.popen("worker", "start")
    wait_for(lambda: state(cli, "long") == "processing", timeout=15)
    worker.send_signal(signal.SIGINT)
    time.sleep(0.5)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=15) == 0, cli.log(worker)
    shown = cli.json("show", "long", "--json")
    assert shown["state"] == "pending"  # released for the next worker
    assert shown["runs"][-1]["outcome"] == "interrupted"


def test_cancel_kills_a_running_job(cli: Cli) -> None:
    cli.enqueue({"id": "slow", "command": "sleep 60"})
    worker = cli.popen("worker", "start")
    try:
        wait_for(lambda: state(cli, "slow") == "processing", timeout=15)
        assert cli("cancel", "slow").returncode == 0
        wait_for(lambda: state(cli, "slow") == "cancelled", timeout=15)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    assert cli.json("show", "slow", "--json")["runs"][-1]["outcome"] == "cancelled"
    assert cli("cancel", "slow").returncode == 4


def test_timeout_kills_the_attempt(cli: Cli) -> None:
    cli.enqueue({"id": "t", "command": "sleep 30", "timeout": 1, "max_retries": 0})
    started = time.monotonic()
    assert cli("worker", "start", "--burst").returncode == 0
    assert time.monotonic() - started < 15
    shown = cli.json("show", "t", "--json")
    assert shown["state"] == "dead" and shown["last_error"] == "timed out after 1s"
    assert shown["runs"][0]["outcome"] == "timed_out"


def test_command_not_found_is_a_failure(cli: Cli) -> None:
    cli.enqueue({"id": "nf", "command": "definitely-not-a-command-xyz", "max_retries": 0})
    assert cli("worker", "start", "--burst").returncode == 0
    shown = cli.json("show", "nf", "--json")
    assert shown["state"] == "dead" and shown["exit_code"] == 127
    assert "not found" in shown["last_error"]
    assert "not found" in cli("logs", "nf").stdout


def test_logs_follow_streams_a_running_job(cli: Cli) -> None:
    # non-ASCII: output is counted in bytes, and must not be cut or repeated mid-character
    # it runs 4 s: at least one 2 s heartbeat (which stores the output so far) falls inside
    cli.enqueue({"id": "f", "command": "for i in 1 2 3 4; do echo ligne-é✓$i; sleep 1; done"})
    follow = subprocess.Popen(
        [*_cli_argv(), "logs", "f", "--follow"],
        env=cli.env(PYTHONIOENCODING="utf-8"),
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    worker = cli.popen("worker", "start", "--burst")
    assert follow.stdout is not None
    first = follow.stdout.readline()  # arrives while the job still runs
    assert first == "ligne-é✓1\n"
    assert state(cli, "f") == "processing"
    rest = follow.stdout.read()
    follow.stdout.close()
    assert follow.wait(timeout=20) == 0
    assert first + rest == "".join(f"ligne-é✓{i}\n" for i in range(1, 5))
    assert worker.wait(timeout=20) == 0


def _cli_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "queuectl"]


def test_list_json_parses_while_workers_run(cli: Cli) -> None:
    lines = "".join(json.dumps({"command": "sleep 0.05"}) + "\n" for _ in range(40))
    assert cli("enqueue", "-", input=lines).returncode == 0
    worker = cli.popen("worker", "start", "--burst", "--count", "4")
    seen = set()
    while worker.poll() is None:
        jobs = json.loads(cli("list", "--json", "--limit", "1000").stdout)
        assert isinstance(jobs, list) and len(jobs) == 40
        seen |= {j["state"] for j in jobs}
    assert worker.wait() == 0
    assert "processing" in seen or "completed" in seen
    assert json.loads(cli("list", "--json", "--state", "failed").stdout) == []


def test_delayed_job_waits_for_its_time(cli: Cli) -> None:
    job = cli.enqueue({"id": "later", "command": "true"}, "--delay", "2s")
    worker = cli.popen("worker", "start")
    try:
        time.sleep(1)
        assert state(cli, "later") == "pending"
        wait_for(lambda: state(cli, "later") == "completed", timeout=15)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    shown = cli.json("show", "later", "--json")
    assert ts(shown["started_at"]) >= ts(job["run_at"])


@pytest.mark.slow
def test_recovery_runs_even_when_every_survivor_is_busy(cli: Cli, tmp_path: Path) -> None:
    cli.enqueue({"id": "busy", "command": "sleep 60", "priority": 5})
    survivor = cli.popen("worker", "start")  # one slot, soon busy for a minute
    wait_for(lambda: state(cli, "busy") == "processing", timeout=15)
    cli.enqueue({"id": "orphan", "command": "sleep 60"})
    doomed = cli.popen("worker", "start")
    wait_for(lambda: state(cli, "orphan") == "processing", timeout=15)
    doomed.kill()
    doomed.wait()
    killed = time.monotonic()
    try:
        wait_for(lambda: state(cli, "orphan") == "failed", timeout=25)
        recovered_s = time.monotonic() - killed
        shown = cli.json("show", "orphan", "--json")
        assert shown["last_error"] == "worker lost"
        assert state(cli, "busy") == "processing"  # the survivor never stopped its job
    finally:
        survivor.send_signal(signal.SIGINT)
        time.sleep(0.5)  # two signals sent at once merge into one
        survivor.send_signal(signal.SIGINT)
        survivor.wait(timeout=20)
    assert recovered_s <= 20
    print(f"recovered while every survivor was busy in {recovered_s:.1f}s")


class _HeldProxy:
    """TCP proxy to Postgres that holds every connection until `release()`: a worker start
    that is still connecting, for as long as the test likes."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = threading.Event()
        self.released = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted.set()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.released.wait()
        with client, socket.create_connection(self.upstream) as server:
            pump = threading.Thread(target=self._pump, args=(server, client), daemon=True)
            pump.start()
            self._pump(client, server)
            pump.join(timeout=5)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.mark.integration
def test_sigterm_while_the_worker_still_connects_stops_it_cleanly(
    pg_url: str, tmp_path: Path
) -> None:
    """A SIGTERM before the worker could install its drain handler used to kill it with the
    default action (-15); now the signal is counted from the start and the worker exits 0
    before claiming anything."""
    url = urlsplit(pg_url)
    proxy = _HeldProxy((url.hostname or "127.0.0.1", url.port or 5432))
    proxied = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    cli = Cli(pg_url, tmp_path)
    cli.enqueue({"id": "untouched", "command": "true"})
    through_proxy = Cli(proxied, tmp_path)
    worker = through_proxy.popen("worker", "start")
    try:
        assert proxy.accepted.wait(timeout=15), "the worker never connected"
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the signal lands while the connection is held
        proxy.release()
        assert worker.wait(timeout=20) == 0, through_proxy.log(worker)
    finally:
        proxy.server.close()
        if worker.poll() is None:
            worker.kill()
    assert state(cli, "untouched") == "pending"


def test_worker_stop_reaches_a_worker_that_was_still_starting(cli: Cli, tmp_path: Path) -> None:
    """`worker stop` while a `worker start` has not registered yet: the stop finds no live
    worker. It used to be missed, and the worker then ran forever; the worker now sees the
    fleet-wide stop made after its process started, and exits without a job. (The starting
    worker is held stopped so that the race goes the same way on a loaded machine.)"""
    marker = tmp_path / "ran.txt"
    cli.enqueue({"id": "untouched", "command": f"echo ran >> {marker}"})
    worker = cli.popen("worker", "start")
    try:
        worker.send_signal(signal.SIGSTOP)
        stop = cli("worker", "stop")
        assert stop.returncode == 0, stop.stderr
        assert "no workers running" in stop.stderr  # it did start before, register after
        worker.send_signal(signal.SIGCONT)
        assert worker.wait(timeout=20) == 0, cli.log(worker)[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert not marker.exists()
    assert state(cli, "untouched") == "pending"
    # and a worker started after the stop is not affected by it
    later = cli.popen("worker", "start", "--burst")
    assert later.wait(timeout=30) == 0
    assert state(cli, "untouched") == "completed"
