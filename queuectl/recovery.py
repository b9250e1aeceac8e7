"""Crash recovery's judgement: when an expired lease means a dead owner, and the orphan kill."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queuectl import models, sessions

if TYPE_CHECKING:
    from queuectl.backends.base import Backend
    from queuectl.observe import MetricsLike


class Connectivity:
    """How long this process has been able to reach the database without a break.

    A lease that expired during a database outage (or while another process held SQLite's
    write lock) says nothing about its owner: nobody could renew anything. A sweeper that was
    cut off or stalled itself therefore gives every owner a full lease of working database
    before it calls a lease lost, and the owner, alive and holding its result, renews or
    writes it first. A break is a failed call, a call that took longer than `max_gap_s`
    (it waited on a lock or a dead connection) or a silence longer than `max_gap_s` between
    two calls (this process was stopped or starved)."""

    def __init__(self, max_gap_s: float) -> None:
        self.max_gap_s = max_gap_s
        self._since: float | None = None  # monotonic start of the current unbroken stretch
        self._last: float | None = None

    def ok(self, started: float, ended: float) -> None:
        """A call that began at `started` succeeded at `ended` (monotonic seconds)."""
        broken = (
            self._since is None
            or self._last is None
            or ended - started > self.max_gap_s
            or started - self._last > self.max_gap_s
        )
        if broken:
            self._since = ended
        self._last = ended

    def failed(self) -> None:
        self._since = None
        self._last = None

    def steady_for(self, now: float | None = None) -> float:
        """Seconds of unbroken access so far; 0 before the first success or after a break."""
        if self._since is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - self._since)


class Reaper:
    """Decides, for one sweeper process, which expired leases it may recover now, and kills
    what is left of those runs on this host before they are written off."""

    def __init__(self, connectivity: Connectivity, *, this_host: str, lease_ttl_s: float) -> None:
        self.connectivity = connectivity
        self.this_host = this_host
        self.lease_ttl_s = lease_ttl_s
        self.killed: dict[str, int] = {}  # by job id: what was killed of it, for the logs

    def __call__(self, job: models.Job, host: str | None, session: str | None) -> bool:
        """True: recover this job now (its remains on this host are dead). False: its owner
        may be alive and may not have had a working database since its lease ran out."""
        local = host == self.this_host
        owner_dead = local and not _alive(owner_pid(job.worker_id))
        if not owner_dead and self.connectivity.steady_for() < self.lease_ttl_s:
            return False
        if local and (killed := kill_orphans(job, session)):
            self.killed[job.id] = killed
        return True


def recover_lost(
    backend: Backend, reaper: Reaper, *, lease_ttl_s: float, log: Any, metrics: MetricsLike
) -> list[models.Job]:
    """One recovery sweep, the same in a worker and in the orchestrator: the expired leases
    `reaper` lets go are failed as lost (retry or DLQ), each logged as `job_recovered` and
    counted. A BackendError propagates: each caller reports it its own way."""
    recovered = backend.recover_expired(reaper, lease_ttl_s=lease_ttl_s)
    if recovered:
        metrics.recovered.inc(len(recovered))
    for job in recovered:
        log.warning(
            "job_recovered",
            job_id=job.id,
            queue=job.queue,
            lost_worker=job.worker_id,
            attempt=job.attempts,
            orphans_killed=reaper.killed.get(job.id, 0),
        )
    # also for a job whose owner wrote it after all; after a failed sweep the counts wait
    # for the next one, which logs the jobs this one could not write off
    reaper.killed.clear()
    return recovered


def owner_pid(worker_id: str | None) -> int | None:
    """The process id inside a slot id `HOST-PID-N` (worker.py makes them)."""
    if not worker_id:
        return None
    parts = worker_id.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def _alive(pid: int | None) -> bool:
    """Whether a process with this id exists on this host (unknown ids count as alive: the
    slower, safe path). A reused id also counts as alive; that only delays recovery."""
    if pid is None or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_orphans(job: models.Job, session: str | None = None) -> int:
    """SIGKILL, on this host, what still runs of this job's lost run: every process group
    holding the run's `QUEUECTL_LEASE` marker in its environment, and every process of the
    run's session (`sessions.tag`, recorded by heartbeats), which the job cannot shed by
    clearing its environment or moving to another group. Returns how many were killed."""
    marker = f"QUEUECTL_LEASE={job.id}#{job.lease_token}".encode()
    own = os.getpgrp()
    groups: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if marker in environ.split(b"\0"):
                groups.add(os.getpgid(int(entry.name)))
        except (OSError, ProcessLookupError):
            continue
    groups.discard(own)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    strays = 0 if session is None else sessions.kill_tagged(session)
    return len(groups) + strays
