"""Orchestrator: under a leader lease, independent sweeps on a fixed cadence (crash recovery,
cron, wake-ups for due jobs, DLQ expiry, retention pruning)."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from queuectl import errors, models
from queuectl.backends.base import Backend
from queuectl.config import Settings
from queuectl.cron import Cron
from queuectl.observe import NULL_METRICS, MetricsLike
from queuectl.recovery import Connectivity, Reaper, recover_lost

log = structlog.get_logger("queuectl.orchestrator")

LEADER_LEASE = "orchestrator"
TICK_S = 0.25


@dataclass
class Sweep:
    name: str
    every_s: float
    fn: Callable[[float], int]  # gets the (injectable) wall clock, returns rows affected
    next_at: float = 0.0


class Orchestrator:
    """`orchestrator run`, or embedded in `worker start` on SQLite. Several may run: the one
    holding the leader lease sweeps, the others wait to take over."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        *,
        metrics: MetricsLike = NULL_METRICS,
        clock: Callable[[], float] = time.time,
        embedded: bool = False,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.host = settings.hostname or socket.gethostname()
        self.node_id = f"{self.host}-{os.getpid()}-{secrets.token_hex(3)}"
        self.is_leader = False
        self._stop = threading.Event()
        self._stop_requested = False
        self._next_election = 0.0
        self._last_wake = 0.0
        self._crons: dict[tuple[str, str], Cron] = {}  # by (expression, zone)
        self._log = log.bind(orchestrator=self.node_id)
        # its recovery sweep, like a worker's, waits for a lease of unbroken database access
        # (recovery.py); every election and sweep shows whether it has it
        self._db = Connectivity(max_gap_s=2 * settings.heartbeat_s)
        self._reaper = Reaper(self._db, this_host=self.host, lease_ttl_s=settings.lease_ttl_s)
        self.sweeps = [
            Sweep("fire_schedules", 1.0, self.fire_schedules),
            Sweep("wake_due", TICK_S, self.wake_due),
            Sweep("expire_jobs", 5.0, lambda now: self.backend.expire_jobs()),
            # behind the prompt paths of dependencies (a finish's follow-up lost to a crash,
            # a dependency purged): cheap, it reads only blocked jobs
            Sweep("settle_blocked", 5.0, lambda now: self.backend.settle_blocked()),
            Sweep("prune_finished", 60.0, self.prune_finished),
        ]
        if not embedded:  # embedded in a worker, which already recovers on its own timer
            self.sweeps.insert(0, Sweep("recover_expired", settings.recovery_every_s, self.recover))

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        self._log.info("orchestrator_started", sweeps=[s.name for s in self.sweeps])
        try:
            self.tick(self.clock())
            while not self._stop.wait(TICK_S) and not self._stop_requested:
                self.tick(self.clock())
        finally:
            # also after a failed renewal: the row may still name us, and only we delete it
            try:
                self.backend.release_leadership(LEADER_LEASE, self.node_id)
                if self.is_leader:
                    self._log.info("leader_released")
            except Exception as exc:  # best effort: the lease also just expires
                self._log.warning("leader_release_failed", error=str(exc))
            self._set_leader(False)
            self._log.info("orchestrator_stopped")

    def stop(self) -> None:
        self._stop.set()

    def request_stop(self) -> None:
        """For signal handlers: a plain flag (Event.set takes a lock the interrupted main
        thread may hold); the loop sees it within one tick."""
        self._stop_requested = True

    def tick(self, now: float) -> None:
        """One pass: renew or seek leadership, then run every sweep that is due. `now` is the
        wall clock (cron slots); the cadence runs on the monotonic clock, so a step of the
        wall clock neither stalls nor rushes the sweeps."""
        mono = time.monotonic()
        if mono >= self._next_election or not self.is_leader:
            # the leader renews three times per lease (two renewals may fail before it
            # lapses); a standby looks every tick, so it takes over as soon as the lease ends
            self._next_election = mono + self.settings.leader_ttl_s / 3
            self.elect()
        if not self.is_leader:
            return
        for sweep in self.sweeps:
            if mono < sweep.next_at:
                continue
            sweep.next_at = mono + sweep.every_s
            self.run_sweep(sweep, now)

    def run_sweep(self, sweep: Sweep, now: float) -> None:
        started = time.monotonic()
        try:
            affected = sweep.fn(now)
        except Exception as exc:  # one sweep failing must not stop the others
            self._db.failed()
            self._log.warning("sweep_failed", sweep=sweep.name, error=str(exc))
            self._count(sweep.name, "error")
            return
        self._db.ok(started, time.monotonic())
        self._count(sweep.name, "ok")
        if affected and sweep.name != "wake_due":  # wake-ups are routine: not worth a line
            self._log.info("sweep_done", sweep=sweep.name, affected=affected)

    def elect(self) -> None:
        started = time.monotonic()
        try:
            if not self.is_leader and self.backend.leader(LEADER_LEASE) not in (None, self.node_id):
                # someone holds a valid lease: a read, so standbys take no write lock (SQLite)
                self._set_leader(False)
                return
            leader = self.backend.acquire_leadership(
                LEADER_LEASE, self.node_id, ttl_s=self.settings.leader_ttl_s
            )
        except Exception as exc:
            self._db.failed()
            self._log.warning("leader_election_failed", error=str(exc))
            leader = False  # cannot renew: act as if lost, so two never sweep at once
        else:
            self._db.ok(started, time.monotonic())
        self._set_leader(leader)

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader:
            self._log.info("leader_elected" if leader else "leader_lost")
        self.is_leader = leader
        self.metrics.leader.set(1 if leader else 0)

    def _count(self, sweep: str, result: str) -> None:
        self.metrics.sweeps.labels(sweep=sweep, result=result).inc()

    # --- sweeps ---------------------------------------------------------------------------------
    def recover(self, now: float) -> int:
        """The same routine a worker runs (recovery.recover_lost); errors go to run_sweep."""
        recovered = recover_lost(
            self.backend,
            self._reaper,
            lease_ttl_s=self.settings.lease_ttl_s,
            log=self._log,
            metrics=self.metrics,
        )
        return len(recovered)

    def fire_schedules(self, now: float) -> int:
        """Fire the latest due slot of each schedule, once. Slots missed while nothing ran are
        not replayed: only the most recent one fires (DECISIONS.md)."""
        at = datetime.fromtimestamp(now, UTC)
        fired = 0
        for schedule in self.backend.list_schedules():
            if schedule.paused:
                continue
            key = (schedule.cron, schedule.tz)
            try:
                cron = self._crons.get(key) or self._crons.setdefault(key, Cron.parse(*key))
            except errors.UsageError as exc:  # an older version's, or a zone unknown here: skip
                self._log.warning("schedule_invalid", schedule=schedule.name, error=str(exc))
                continue
            slot = cron.latest_at_or_before(at)
            if slot is None or (schedule.last_slot is not None and slot <= schedule.last_slot):
                continue
            if schedule.created_at is not None and slot < schedule.created_at:
                continue  # a slot from before the schedule existed
            if self.backend.fire_schedule(schedule.name, slot):
                fired += 1
                self._log.info("schedule_fired", schedule=schedule.name, slot=models.iso(slot))
        if fired:
            self.metrics.schedules_fired.inc(fired)
        return fired

    def wake_due(self, now: float) -> int:
        # the window overlaps the previous one a little: a duplicate wake-up costs one claim
        window = min(max(now - self._last_wake, TICK_S), 60.0) + 0.1
        self._last_wake = now
        return self.backend.notify_due(window_s=window)

    def prune_finished(self, now: float) -> int:
        policy = self.backend.policy()
        pruned = 0
        if policy.retention_completed_s is not None:
            for state in (models.JobState.COMPLETED, models.JobState.CANCELLED):
                pruned += self.backend.prune_finished(
                    state, older_than_s=policy.retention_completed_s
                )
        if policy.retention_dead_s is not None:
            pruned += self.backend.prune_finished(
                models.JobState.DEAD, older_than_s=policy.retention_dead_s
            )
        return pruned
