"""The flow-control limits under real races, on both backends: 8 worker processes x 8 slots
against a concurrency limit, a rate limit and a pause, measured from timestamps the jobs'
own commands write (not from the database); and enqueues racing for one unique key."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.waiting import terminate_all, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROCESSES, SLOTS = 8, 8


def fleet(cli: Cli) -> list[subprocess.Popen[bytes]]:
    return [
        cli.popen("worker", "start", "--count", str(SLOTS), QUEUECTL_LOG_LEVEL="warning")
        for _ in range(PROCESSES)
    ]


def enqueue_file(cli: Cli, tmp_path: Path, jobs: Sequence[Mapping[str, object]]) -> None:
    path = tmp_path / f"jobs-{time.monotonic_ns()}.ndjson"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    result = cli("enqueue", "--file", str(path))
    assert result.returncode == 0, result.stderr


def completed(cli: Cli, queue: str) -> int:
    queues = {q["name"]: q for q in cli.json("queue", "list", "--json")}
    return int(queues[queue]["jobs"]["completed"]) if queue in queues else 0


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def test_a_concurrency_limit_holds_across_64_slots(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "spans.txt"
    cli.json("queue", "set", "api", "--concurrency", "3", "--json")
    jobs = 45
    span = f's=$(date +%s.%N); sleep 0.25; echo "$s $(date +%s.%N)" >> {log}'
    enqueue_file(cli, tmp_path, [{"command": span, "queue": "api"} for _ in range(jobs)])
    enqueue_file(cli, tmp_path, [{"command": "sleep 0.2"} for _ in range(60)])
    workers = fleet(cli)
    try:
        wait_for(lambda: completed(cli, "api") == jobs, timeout=120)
        wait_for(lambda: completed(cli, "default") == 60, timeout=60)
    finally:
        terminate_all(workers, timeout=30)
    spans = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(spans) == jobs
    peak = max_overlap([(s, e) for s, e in spans])
    took = max(e for _, e in spans) - min(s for s, _ in spans)
    print(
        f"\nconcurrency 3, {PROCESSES}x{SLOTS} slots: peak overlap {peak}, {jobs} jobs {took:.1f}s"
    )
    assert peak <= 3
    assert peak == 3  # and the limit is used, not undershot
    assert took < jobs * 0.25 / 3 * 3  # within 3x of the ideal schedule


def test_a_rate_limit_holds_in_every_window(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "starts.txt"
    cli.json("queue", "set", "mail", "--rate", "20/2s", "--json")
    jobs = 70
    enqueue_file(
        cli, tmp_path, [{"command": f"date +%s.%N >> {log}", "queue": "mail"} for _ in range(jobs)]
    )
    workers = fleet(cli)
    try:
        wait_for(lambda: completed(cli, "mail") == jobs, timeout=120)
    finally:
        terminate_all(workers, timeout=30)
    starts = sorted(float(line) for line in log.read_text().splitlines())
    assert len(starts) == jobs
    # the most starts in any window of 2 s: each window that begins at a start
    j, worst = 0, 0
    for i, start in enumerate(starts):
        while j < len(starts) and starts[j] < start + 2.0:
            j += 1
        worst = max(worst, j - i)
    took = starts[-1] - starts[0]
    print(
        f"\nrate 20/2s, {PROCESSES}x{SLOTS} slots: "
        f"most starts in any 2 s window {worst}, {took:.1f}s"
    )
    assert worst <= 20
    assert took >= (jobs // 20 - 1) * 2.0  # 70 jobs cannot start in under 3 windows


def test_a_paused_queue_starts_nothing_while_the_others_run_on(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "ran.txt"
    cli.json("queue", "pause", "held", "--json")
    enqueue_file(
        cli,
        tmp_path,
        [{"command": f"echo held >> {log}", "queue": "held"} for _ in range(20)]
        + [{"command": f"echo free >> {log}"} for _ in range(40)],
    )
    workers = fleet(cli)
    try:
        wait_for(lambda: completed(cli, "default") == 40, timeout=60)
        time.sleep(1.5)  # a few polls of 64 idle slots
        assert log.read_text().split().count("held") == 0
        assert completed(cli, "held") == 0
        cli.json("queue", "resume", "held", "--json")
        wait_for(lambda: completed(cli, "held") == 20, timeout=30)
    finally:
        terminate_all(workers, timeout=30)


RACER = """
import json, sys, time
from queuectl import Client
url, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
out = []
with Client(url) as c:
    c.ping()
    for r in range(rounds):
        at = start + r * 0.04  # both racers enqueue key r at this instant
        while (left := at - time.time()) > 0:
            time.sleep(left)
        job = c.enqueue("true", unique_key=f"race-{r}")
        out.append([job.id, job.conflict])
print(json.dumps(out))
"""


def test_two_processes_enqueueing_one_unique_key_at_once_insert_one_job(cli: Cli) -> None:
    rounds = 150
    start = time.time() + 2.0  # both processes are connected by then
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, cli.url, str(start), str(rounds)],
            stdout=subprocess.PIPE,
            env=cli.env(),
        )
        for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in racers]
    assert all(p.returncode == 0 for p in racers)
    same = sum(a[0] == b[0] for a, b in zip(*results, strict=True))
    inserts = sum(not conflict for result in results for _, conflict in result)
    stored = cli.json("list", "--limit", "1000", "--json")
    print(f"\nunique race: {rounds} rounds, {same} agreed, {inserts} inserts, {len(stored)} stored")
    assert same == rounds
    assert inserts == rounds  # one insert and one conflict each round
    assert len(stored) == rounds
