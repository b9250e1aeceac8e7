"""Runaway jobs against one real worker: 1 GB of output, 300 forked children, a job that
ignores SIGTERM, one that never exits; each is contained and the worker stays healthy."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from queuectl import models
from queuectl.backends.base import Backend
from queuectl.runner import TRUNCATION_MARK
from tests.conftest import Cli
from tests.e2e.test_orchestrator_cli import free_port
from tests.e2e.waiting import wait_for

pytestmark = pytest.mark.e2e

GIB = 1_000_000_000
OUTPUT_LIMIT = 10_000
KILL_GRACE_S = 0.5
FORKS = 200

# 1 GB as fast as the worker takes it, then a marker, then a failure; NUL bytes are stored
# as U+FFFD (text columns cannot hold NUL)
FLOOD = f"head -c {GIB} /dev/zero; echo THE-END; exit 3"
# 200 children that would outlive the job by a quarter of an hour, then a normal exit; the
# job reports how many processes its group held, so the test knows the children ran
FORKER = (
    f"i=0; while [ $i -lt {FORKS} ]; do sleep 1000 & i=$((i+1)); done; "
    'echo "group: $(ps -o pid= -g $$ | wc -l)"'
)
# the same, but the job hangs until its timeout kills the group
FORK_HANG = "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; sleep 1000"
# SIG_IGN survives exec: the shell and each sleep it starts ignore SIGTERM
STUBBORN = "trap '' TERM; echo stubborn; while :; do sleep 0.2; done"
FOREVER = "echo forever; while :; do sleep 0.2; done"


def job_processes(job_id: str) -> list[int]:
    """Live (non-zombie) processes started for this job: the worker puts QUEUECTL_JOB_ID in
    every job's environment, and children inherit it."""
    marker = f"QUEUECTL_JOB_ID={job_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie is dead; only its parent (PID 1 here) has yet to reap it
            found.append(int(entry.name))
    return found


@dataclass
class Usage:
    """The worker's peak resident memory, and the peak disk held by files it has open
    (a capture file, if output went to one)."""

    rss_kib: int = 0
    file_bytes: int = 0
    files: set[str] = field(default_factory=set)  # what was open at the peak
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self, pid: int, own: str) -> None:
        while not self.stop.wait(0.02):
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{pid}/status").read_text()
                rss = next(ln for ln in status.splitlines() if ln.startswith("VmRSS:"))
                self.rss_kib = max(self.rss_kib, int(rss.split()[1]))
                used, names = _open_files(pid, own)
                if used > self.file_bytes:
                    self.file_bytes, self.files = used, names
                self.samples += 1


def _open_files(pid: int, own: str) -> tuple[int, set[str]]:
    """Disk used by the regular files a process holds open, deleted ones included, but for
    the test's own under `own` (the SQLite database and its WAL, the worker's log)."""
    total, names = 0, set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            st = os.stat(fd)
            name = os.readlink(fd)
            if stat.S_ISREG(st.st_mode) and not name.startswith(own):
                total += st.st_blocks * 512
                names.add(name)
    return total, names


@contextlib.contextmanager
def watching(pid: int, own: Path) -> Iterator[Usage]:
    usage = Usage()
    thread = threading.Thread(target=usage.watch, args=(pid, f"{own}/"), daemon=True)
    thread.start()
    try:
        yield usage
    finally:
        usage.stop.set()
        thread.join()


def job(backend: Backend, job_id: str) -> models.Job:
    return backend.get_job(job_id)


def finished(backend: Backend, *ids: str) -> bool:
    return all(job(backend, i).state in models.TERMINAL_STATES for i in ids)


def scrape(port: int) -> dict[Any, float]:
    """The worker's /metrics: `name` -> value for unlabelled samples, (name, labels) ->
    value for labelled ones."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[Any, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, value = line.rsplit(" ", 1)
        if "{" in key:
            name, _, rest = key.partition("{")
            labels = dict(pair.split("=", 1) for pair in rest.rstrip("}").split(",") if pair)
            pairs = tuple(sorted((k, v.strip('"')) for k, v in labels.items()))
            samples[(name, pairs)] = float(value)
        else:
            samples[key] = float(value)
    return samples


@pytest.mark.timeout(90)
def test_runaway_jobs_are_contained_and_the_worker_stays_healthy(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    assert cli("config", "set", "output-limit", str(OUTPUT_LIMIT)).returncode == 0
    jobs: list[dict[str, Any]] = [
        {"id": "flood", "command": FLOOD, "max_retries": 0},
        {"id": "forker", "command": FORKER, "max_retries": 0},
        {"id": "fork-hang", "command": FORK_HANG, "timeout": 1, "max_retries": 0},
        {"id": "stubborn", "command": STUBBORN, "timeout": 1, "max_retries": 0},
        {"id": "forever", "command": FOREVER, "max_retries": 0},
    ]
    ids = [str(j["id"]) for j in jobs]
    ndjson = "".join(json.dumps(j) + "\n" for j in jobs)
    assert cli("enqueue", "-", input=ndjson).returncode == 0
    port = free_port()
    worker = cli.popen(
        "worker",
        "start",
        "--count",
        str(len(jobs)),
        "--metrics-port",
        str(port),
        QUEUECTL_KILL_GRACE=f"{KILL_GRACE_S}s",
        QUEUECTL_HEARTBEAT="0.5s",
        QUEUECTL_LEASE_TTL="5s",
    )
    try:
        with watching(worker.pid, tmp_path) as usage:
            wait_for(lambda: job(backend, "forever").state == "processing", timeout=20)
            wait_for(lambda: job_processes("forever"), timeout=10)
            cancel = cli("cancel", "forever")
            assert cancel.returncode == 0, cancel.stderr
            wait_for(lambda: finished(backend, *ids), timeout=45, every=0.1)
        started = time.monotonic()
        cli.enqueue({"id": "after", "command": "echo still here"})
        wait_for(lambda: job(backend, "after").state == "completed", timeout=10, every=0.05)
        prompt_s = time.monotonic() - started
        listed = cli.json("worker", "list", "--json")
        exported = scrape(port)
        assert worker.poll() is None, cli.log(worker)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    runs = {i: backend.runs(i)[-1] for i in ids}

    # (1) 1 GB of output: the job fails by its exit code, the stored output is the tail of
    # at most output-limit bytes, and the worker neither grew nor spilled 1 GB to disk
    flood = job(backend, "flood")
    assert flood.state == "dead" and flood.exit_code == 3, runs["flood"]
    total = GIB + len("THE-END\n")
    assert runs["flood"].output_bytes == total
    mark = TRUNCATION_MARK.format(dropped=total - OUTPUT_LIMIT, total=total)
    assert runs["flood"].output == mark + "\ufffd" * (OUTPUT_LIMIT - 8) + "THE-END\n"
    assert usage.samples > 20
    assert usage.rss_kib < 200 * 1024, usage
    assert usage.file_bytes < 1024 * 1024, usage  # not 1 GB of capture file

    # (2) 200 background children of a job that exited 0: none outlives it
    forker = job(backend, "forker")
    assert forker.state == "completed", runs["forker"]
    members = int(runs["forker"].output.split("group: ")[1].split()[0])
    assert members > FORKS, runs["forker"].output
    assert job_processes("forker") == []
    # ... and 100 children of a job its timeout killed
    assert runs["fork-hang"].outcome == "timed_out"
    assert job_processes("fork-hang") == []

    # (3) SIGTERM ignored: SIGKILL after the grace, recorded as timed out
    stubborn = runs["stubborn"]
    assert stubborn.outcome == "timed_out" and stubborn.error == "timed out after 1s", stubborn
    assert stubborn.exit_code == -9
    assert stubborn.finished_at is not None
    took = (stubborn.finished_at - stubborn.started_at).total_seconds()
    assert 1 + KILL_GRACE_S <= took < 1 + KILL_GRACE_S + 3, took
    assert job(backend, "stubborn").state == "dead"
    assert job_processes("stubborn") == []

    # (4) no timeout, cancelled from the CLI: killed
    assert job(backend, "forever").state == "cancelled"
    assert runs["forever"].outcome == "cancelled"
    assert job_processes("forever") == []

    # the same worker process ran the next job promptly and reports itself healthy
    after = job(backend, "after")
    assert after.worker_id in {w["id"] for w in listed}, (after, listed)
    assert prompt_s < 5, prompt_s
    assert [w["pid"] for w in listed] == [worker.pid] * len(jobs), listed
    assert {w["state"] for w in listed} == {"idle"}, listed
    assert all(w["heartbeat_age_s"] is not None and w["heartbeat_age_s"] < 5 for w in listed)
    assert exported["queuectl_worker_busy_slots"] == 0
    assert exported["queuectl_worker_slots"] == len(jobs)
    finished_by_outcome = {
        dict(key[1])["outcome"]: value
        for key, value in exported.items()
        if isinstance(key, tuple) and key[0] == "queuectl_jobs_completed_total"
    }
    assert finished_by_outcome == {"failed": 1, "succeeded": 2, "timed_out": 2, "cancelled": 1}
    print(
        f"\n[{cli.url.split(':')[0]}] worker peak RSS {usage.rss_kib / 1024:.1f} MiB, "
        f"peak open-file disk {usage.file_bytes} B {sorted(usage.files)} over {usage.samples} "
        "samples; "
        f"group of forker {members}; stubborn took {took:.2f}s; next job in {prompt_s:.2f}s"
    )
