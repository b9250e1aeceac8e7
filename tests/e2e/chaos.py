"""Chaos-run helpers: a job mix whose commands dictate their fate, a fleet to SIGKILL, an audit."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shlex
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from queuectl import models
from tests.conftest import Cli

QUEUES = ("alpha", "beta", "gamma")
PRIORITIES = (-5, 0, 0, 10)
LEADER_LEASE = "orchestrator"  # queuectl.orchestrator.LEADER_LEASE, the row to read

# What each kind of command does on a given attempt (QUEUECTL_ATTEMPT, from 1):
#   ok       exit 0 every time
#   fail     exit 3 every time: dead after max_retries + 1 attempts
#   flaky    exit 1 on attempt 1, exit 0 from attempt 2 on
#   timeout  sleeps far past its timeout every time: timed out, retried, dead
KINDS = ("ok", "fail", "flaky", "timeout")
TIMEOUT_S = 0.5
# longer than a lease plus a recovery sweep: an orphan that recovery failed to kill would
# still be running, and write its end marker, after the next attempt started
TIMEOUT_SLEEP_S = 10


def dictated(kind: str, attempt: int) -> str:
    """The outcome the command itself produces on this attempt."""
    if kind == "ok" or (kind == "flaky" and attempt >= 2):
        return "succeeded"
    if kind == "timeout":
        return "timed_out"
    return "failed"


def replay(kind: str, max_retries: int, lost: set[int]) -> tuple[str, int]:
    """(final state, attempts) the retry rules give this command when exactly the attempts
    in `lost` ended as `worker lost` and every other attempt ended as its command dictates."""
    attempt = 0
    while attempt < max_retries + 1:
        attempt += 1
        if attempt not in lost and dictated(kind, attempt) == "succeeded":
            return "completed", attempt
    return "dead", attempt


@dataclass(frozen=True)
class Planned:
    id: str
    kind: str
    max_retries: int
    queue: str
    priority: int
    run_at: datetime | None  # a delayed job must not start before this

    def to_json(self, marker_dir: Path) -> dict[str, Any]:
        # each execution appends its shell's pid to <job>.<attempt>.s when it starts and to
        # <job>.<attempt>.e when its work is done; `echo` is a shell builtin, so this costs
        # no extra process, and a file's mtime says when it was last written
        base = shlex.quote(str(marker_dir)) + '/"$QUEUECTL_JOB_ID.$QUEUECTL_ATTEMPT'
        start, end = f'echo $$ >> {base}.s"', f'echo $$ >> {base}.e"'
        body = {
            "ok": f"{start}; {end}",
            "fail": f"{start}; {end}; exit 3",
            "flaky": f'{start}; {end}; [ "$QUEUECTL_ATTEMPT" -ge 2 ]',
            "timeout": f"{start}; sleep {TIMEOUT_SLEEP_S}; {end}",
        }[self.kind]
        job: dict[str, Any] = {
            "id": self.id,
            "command": body,
            "queue": self.queue,
            "priority": self.priority,
            "max_retries": self.max_retries,
        }
        if self.kind == "timeout":
            job["timeout"] = TIMEOUT_S
        if self.run_at is not None:
            job["run_at"] = models.iso(self.run_at)
        return job


def plan_jobs(n: int, rng: random.Random, *, timeouts: int, delayed: float) -> list[Planned]:
    """n jobs: ~70 % ok, ~13 % fail, ~17 % flaky, `timeouts` timeout jobs; a `delayed`
    fraction due 1-6 s from now; three queues, four priorities, max_retries 1 or 2."""
    slow = set(rng.sample(range(n), timeouts))
    now = datetime.now(UTC)
    jobs = []
    for i in range(n):
        r = rng.random()
        kind = "timeout" if i in slow else "ok" if r < 0.70 else "fail" if r < 0.83 else "flaky"
        run_at = None
        if kind != "timeout" and rng.random() < delayed:
            # millisecond precision, as the JSON carries it: the start check is then exact
            at = now + timedelta(seconds=rng.uniform(1.0, 6.0))
            run_at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        jobs.append(
            Planned(
                id=f"{kind}-{i:05d}",
                kind=kind,
                max_retries=rng.choice((1, 2)),
                queue=rng.choice(QUEUES),
                priority=rng.choice(PRIORITIES),
                run_at=run_at,
            )
        )
    return jobs


def write_ndjson(jobs: Iterable[Planned], path: Path, marker_dir: Path) -> None:
    path.write_text("".join(json.dumps(j.to_json(marker_dir)) + "\n" for j in jobs))


# --- the fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    pid: int
    role: str  # "worker" or "orchestrator"
    at: float  # wall clock (time.time()) just before the SIGKILL
    leader: bool  # held the orchestrator leader lease at that moment
    takeover_s: float | None = None  # until another process held the lease (leader kills)


def holder_pid(holder: str | None) -> int | None:
    """The pid in a leader lease holder id (`<host>-<pid>-<hex>`)."""
    if holder is None:
        return None
    return int(holder.rsplit("-", 2)[1])


def worker_pid(worker_id: str | None) -> int | None:
    """The pid in a worker slot id (`<host>-<pid>-<slot>`)."""
    if worker_id is None:
        return None
    return int(worker_id.rsplit("-", 2)[1])


class Fleet:
    """`worker start` processes (and, on Postgres, `orchestrator run` processes) that the
    driver SIGKILLs and replaces; every process ever started is kept for its log."""

    def __init__(self, cli: Cli, *, slots: int, env: Mapping[str, str]) -> None:
        self.cli = cli
        self.slots = slots
        self.env = dict(env)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.orchestrators: list[subprocess.Popen[bytes]] = []
        self.started: list[subprocess.Popen[bytes]] = []
        self.kills: list[Kill] = []

    def start_worker(self) -> None:
        proc = self.cli.popen("worker", "start", "--count", str(self.slots), **self.env)
        self.workers.append(proc)
        self.started.append(proc)

    def start_orchestrator(self) -> None:
        proc = self.cli.popen("orchestrator", "run", **self.env)
        self.orchestrators.append(proc)
        self.started.append(proc)

    def kill(
        self, proc: subprocess.Popen[bytes], *, leader: str | None
    ) -> tuple[str, subprocess.Popen[bytes]]:
        """SIGKILL the process (not its jobs' process groups: as after a real crash, they are
        left to the worker's lifeline and recovery) and reap it; start a replacement of the
        same role."""
        role = "worker" if proc in self.workers else "orchestrator"
        at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.kills.append(Kill(proc.pid, role, at, leader=holder_pid(leader) == proc.pid))
        if role == "worker":
            self.workers.remove(proc)
            self.start_worker()
        else:
            self.orchestrators.remove(proc)
            self.start_orchestrator()
        return role, proc

    def by_pid(self, pid: int | None) -> subprocess.Popen[bytes] | None:
        return next((p for p in self.workers + self.orchestrators if p.pid == pid), None)

    def note_takeover(self, seconds: float) -> None:
        self.kills[-1] = dataclasses.replace(self.kills[-1], takeover_s=seconds)

    def ready(self) -> bool:
        """Every live process is past start-up: its signal handlers are installed (a SIGTERM
        in the interpreter's first few hundred ms still has the default, fatal, action)."""
        return all("worker_started" in self.cli.log(p) for p in self.workers) and all(
            "orchestrator_started" in self.cli.log(p) for p in self.orchestrators
        )

    def stop(self, timeout: float = 30) -> dict[int, int | None]:
        """SIGTERM every live process (drain, DESIGN.md §3); their exit codes by pid."""
        live = self.workers + self.orchestrators
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[int, int | None] = {}
        for proc in live:
            try:
                codes[proc.pid] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[proc.pid] = None
        return codes

    def kill_all(self) -> None:
        """Clean-up after a failed run: nothing of ours may outlive the test."""
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)


def tagged_processes(tag: str) -> list[int]:
    """Pids of live processes whose environment carries `tag` (NAME=value): the fleet's
    workers and every job process they spawned, orphans included."""
    marker = tag.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# --- markers ------------------------------------------------------------------------------------


@dataclass
class Marker:
    """What the executions of one (job, attempt) left behind."""

    starts: int = 0
    ends: int = 0
    start_ns: int | None = None  # mtime of the start file
    end_ns: int | None = None  # mtime of the end file


def read_markers(marker_dir: Path) -> dict[tuple[str, int], Marker]:
    markers: dict[tuple[str, int], Marker] = defaultdict(Marker)
    with os.scandir(marker_dir) as entries:
        for entry in entries:
            job_id, attempt, which = entry.name.rsplit(".", 2)
            lines = Path(entry.path).read_text().split()
            marker = markers[job_id, int(attempt)]
            if which == "s":
                marker.starts, marker.start_ns = len(lines), entry.stat().st_mtime_ns
            else:
                marker.ends, marker.end_ns = len(lines), entry.stat().st_mtime_ns
    return dict(markers)


# --- the audit ----------------------------------------------------------------------------------


@dataclass
class Audit:
    """Every invariant broken (`violations`) and the figures of the run."""

    violations: list[str] = field(default_factory=list)
    figures: Counter[str] = field(default_factory=Counter)
    window_s: list[float] = field(default_factory=list)  # kill time - end of a lost result

    def fail(self, text: str) -> None:
        self.violations.append(text)


def audit(
    plans: Sequence[Planned],
    jobs: Mapping[str, Mapping[str, Any]],
    runs: Mapping[str, Sequence[models.Run]],
    markers: Mapping[tuple[str, int], Marker],
    kills: Sequence[Kill],
    *,
    slots: int,
    window_s: float,
) -> Audit:
    """Check the end state of a chaos run against what each command dictates.

    A run recorded as `lost` belongs to a worker process we SIGKILLed; at that moment the
    run was in one of three phases, told apart by its markers and the kill time:
    - never started (no start marker) or still running (no end marker, or one written
      after the kill, by the orphan before recovery killed it): it held one of the
      process's `slots` job slots, so per killed process these are at most `slots`;
    - finished before the kill (end marker older than the kill): its result was lost in
      the batched-completion window (DECISIONS.md §15); it must be younger than `window_s`.
    """
    out = Audit()
    fig = out.figures
    planned = {p.id: p for p in plans}
    killed_workers = {k.pid: k for k in kills if k.role == "worker"}
    if missing := planned.keys() - jobs.keys():
        out.fail(f"{len(missing)} jobs lost, e.g. {sorted(missing)[:5]}")
    if extra := jobs.keys() - planned.keys():
        out.fail(f"{len(extra)} jobs nobody enqueued, e.g. {sorted(extra)[:5]}")
    in_slot: Counter[int] = Counter()  # per killed worker: lost runs that held a slot
    for job_id in sorted(planned.keys() & jobs.keys()):
        plan, job_runs = planned[job_id], runs.get(job_id, [])
        _audit_job(out, plan, jobs[job_id], job_runs, killed_workers)
        _audit_markers(out, plan, job_runs, markers, killed_workers, in_slot, window_s)
    for pid, count in in_slot.items():
        if count > slots:
            out.fail(f"worker {pid}: {count} runs lost mid-flight, more than its {slots} slots")
    fig["max_in_flight_lost_per_kill"] = max(in_slot.values(), default=0)
    fig["worker_kills"] = len(killed_workers)
    fig["leader_kills"] = sum(k.leader for k in kills)
    fig["orchestrator_kills"] = sum(k.role == "orchestrator" for k in kills)
    if stray := {k for k in markers if k[0] not in planned or k[1] > len(runs.get(k[0], []))}:
        out.fail(f"{len(stray)} executions without a recorded run, e.g. {sorted(stray)[:5]}")
    return out


def _audit_job(
    out: Audit,
    plan: Planned,
    job: Mapping[str, Any],
    job_runs: Sequence[models.Run],
    killed_workers: Mapping[int, Kill],
) -> None:
    """One job's row and attempts against its command and the retry rules."""
    fig = out.figures
    fig["runs"] += len(job_runs)
    n = job["attempts"]
    where = f"{plan.id} ({plan.kind}, max_retries {plan.max_retries})"
    if (job["max_retries"], job["queue"], job["priority"]) != (
        plan.max_retries,
        plan.queue,
        plan.priority,
    ):
        out.fail(f"{where}: fields changed: {dict(job)}")
    if [r.attempt for r in job_runs] != list(range(1, n + 1)):
        out.fail(f"{where}: attempts {n} but runs {[r.attempt for r in job_runs]}")
    if n > plan.max_retries + 1:
        out.fail(f"{where}: {n} attempts > max_retries + 1")
    lost = _lost_attempts(out, where, plan, job_runs, killed_workers)
    fig["lost_runs"] += len(lost)
    fig["jobs_with_lost_runs"] += bool(lost)
    successes = [r.attempt for r in job_runs if r.outcome == "succeeded"]
    if len(successes) > 1 or (successes and successes[-1] != n):
        out.fail(f"{where}: successes recorded at attempts {successes} of {n}")
    state, attempts = replay(plan.kind, plan.max_retries, lost)
    if (job["state"], n) != (state, attempts):
        out.fail(
            f"{where}: {job['state']} after {n} attempts, expected {state} after "
            f"{attempts} (lost attempts {sorted(lost)})"
        )
    fig[f"state_{job['state']}"] += 1
    if state == "dead" and replay(plan.kind, plan.max_retries, set())[0] == "completed":
        fig["dead_by_losses"] += 1  # its retries were spent on crashes
    if plan.run_at is not None and job_runs:
        fig["delayed"] += 1
        if job_runs[0].started_at < plan.run_at:
            out.fail(f"{where}: started {job_runs[0].started_at} before run_at {plan.run_at}")


def _lost_attempts(
    out: Audit,
    where: str,
    plan: Planned,
    job_runs: Sequence[models.Run],
    killed_workers: Mapping[int, Kill],
) -> set[int]:
    """The attempts recorded as `worker lost`; every other one must be what the command
    dictates, and every lost one must have run on a process we killed."""
    lost = set()
    for run in job_runs:
        if run.outcome == "lost":
            lost.add(run.attempt)
            if run.error != "worker lost":
                out.fail(f"{where}: lost run {run.attempt} with error {run.error!r}")
            if worker_pid(run.worker_id) not in killed_workers:
                out.fail(f"{where}: run {run.attempt} lost on a live worker {run.worker_id}")
        elif run.outcome != dictated(plan.kind, run.attempt):
            out.fail(
                f"{where}: run {run.attempt} {run.outcome} ({run.error}), command says "
                f"{dictated(plan.kind, run.attempt)}"
            )
    return lost


def _audit_markers(
    out: Audit,
    plan: Planned,
    job_runs: Sequence[models.Run],
    markers: Mapping[tuple[str, int], Marker],
    killed_workers: Mapping[int, Kill],
    in_slot: Counter[int],
    window_s: float,
) -> None:
    fig = out.figures
    where = f"{plan.id} ({plan.kind})"
    previous_end: int | None = None
    for run in job_runs:
        mark = markers.get((plan.id, run.attempt), Marker())
        fig["executions"] += mark.starts
        if mark.starts > 1 or mark.ends > mark.starts:
            out.fail(f"{where}: attempt {run.attempt} ran {mark.starts}x, ended {mark.ends}x")
        if mark.start_ns is not None and previous_end is not None and mark.start_ns < previous_end:
            # the previous attempt was still running when this one began: two at once
            out.fail(
                f"{where}: attempt {run.attempt} started before attempt {run.attempt - 1} ended"
            )
        previous_end = mark.end_ns
        if mark.ends and dictated(plan.kind, run.attempt) == "succeeded":
            fig["successful_executions"] += 1  # the command ran to a success (recorded or not)
        if run.outcome != "lost":
            want_end = 0 if plan.kind == "timeout" else 1
            if (mark.starts, mark.ends) != (1, want_end):
                out.fail(
                    f"{where}: {run.outcome} attempt {run.attempt} left markers "
                    f"{mark.starts} start, {mark.ends} end"
                )
            continue
        kill = killed_workers.get(worker_pid(run.worker_id) or -1)
        if kill is None:
            continue  # reported by the caller
        if mark.starts:
            fig["duplicate_executions"] += 1  # ran, but its result was lost: it runs again
        if mark.end_ns is not None and mark.end_ns / 1e9 <= kill.at:
            fig["lost_after_finishing"] += 1
            out.window_s.append(kill.at - mark.end_ns / 1e9)
            if kill.at - mark.end_ns / 1e9 > window_s:
                out.fail(
                    f"{where}: attempt {run.attempt} finished "
                    f"{kill.at - mark.end_ns / 1e9:.3f}s before its worker was killed, "
                    "yet its result was never written"
                )
        else:
            fig["lost_unstarted" if not mark.starts else "lost_in_flight"] += 1
            in_slot[kill.pid] += 1
