"""The worker's dispatch loop: claim into free slots, run each job, wait when idle, stop."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from queuectl import errors, models, sessions
from queuectl.attempts import AttemptRunner
from queuectl.backends.base import Backend
from queuectl.config import Settings
from queuectl.durations import format_duration
from queuectl.executors import Executor
from queuectl.leases import LeaseKeeper
from queuectl.observe import NULL_METRICS, MetricsLike
from queuectl.recovery import Connectivity, Reaper, recover_lost
from queuectl.slots import Slots

log = structlog.get_logger("queuectl.worker")

_SIGNAL_CHECK_S = 0.25  # the main thread's longest wait: signals are acted on this quickly
_LOCAL_POLL_S = 0.2  # SQLite: the longest an idle worker waits before looking again
# The least chance an idle worker answers a NOTIFY for one job: with N listeners, at least
# N/32 claims race for it (2 of 64 workers, 6 of 200), however often this one lost.
_MIN_EAGERNESS = 1 / 32


class Duty(Protocol):
    """Work that lives beside the claim loop, on a thread of its own, for as long as the
    worker runs. The CLI composes the embedded orchestrator as one; the worker knows no more
    of it than this."""

    def run(self) -> None: ...
    def stop(self) -> None: ...


class Worker:
    """`worker start --count N`: N slots sharing one process, one heartbeat thread and a small
    connection pool. Any number of these processes, on any hosts, cooperate through the
    database alone. This class is the claim loop and the process's life (start, idle, stop,
    signals); a job's run is the AttemptRunner's (attempts.py) through the `executor`
    (executors.py), its lease the LeaseKeeper's (leases.py)."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        *,
        executor: Executor,
        count: int = 1,
        queues: Sequence[str] = (),
        host: str | None = None,
        metrics: MetricsLike = NULL_METRICS,
        duties: Sequence[Duty] = (),
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.executor = executor
        self.metrics = metrics
        self.duties = list(duties)
        self.queues = tuple(queues)
        self.host = host or settings.hostname or socket.gethostname()
        self.pid = os.getpid()
        self.slot_ids = [f"{self.host}-{self.pid}-{i}" for i in range(1, count + 1)]
        self.slots = Slots(self.slot_ids)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signals = 0
        self._signals_handled = 0
        # work was left behind: the last claim filled every slot it asked for, or a NOTIFY
        # announced a job while every slot was busy. Only then does a freed slot claim at once.
        self._backlog = True
        self._burst = False
        self._awaited: tuple[int, str | None] | None = None  # what a burst worker last said
        self._awaited_look = 0.0  # monotonic: when a burst worker may look again
        self._awaited_said = 0.0  # monotonic: when it last said it
        self._settings_version: str | None = None
        # the chance this worker answers a NOTIFY for one job: halved each time its claim
        # finds the job taken, doubled each time it wins (see _on_job_notice)
        self._eagerness = 1.0
        self._noticed = False
        # without notifications (SQLite) an idle worker looks more often: an empty look is a
        # read of a local file, not a round trip
        self._poll_cap = (
            settings.poll_interval_s
            if backend.notifies
            else min(settings.poll_interval_s, _LOCAL_POLL_S)
        )
        self._log = log.bind(worker=f"{self.host}-{self.pid}")
        # recovery waits for a lease of unbroken database access (recovery.py): heartbeats,
        # every `heartbeat` seconds, are what shows it
        db = Connectivity(max_gap_s=2 * settings.heartbeat_s)
        self._reaper = Reaper(db, this_host=self.host, lease_ttl_s=settings.lease_ttl_s)
        self.leases = LeaseKeeper(
            backend,
            settings,
            slots=self.slots,
            workers=[
                models.WorkerInfo(id=s, host=self.host, pid=self.pid, queues=self.queues)
                for s in self.slot_ids
            ],
            connectivity=db,
            unwritten=lambda: self.attempts.unwritten_jobs(),
            on_stop=self._stop_requested,
            recover=self._sweep,
            metrics=metrics,
            log=self._log,
            done=lambda: self.attempts.done_by_slot,
        )
        self.attempts = AttemptRunner(
            backend,
            executor,
            slots=self.slots,
            leases=self.leases,
            metrics=metrics,
            log=self._log,
            wake=self._slot_freed,
        )

    # --- control ------------------------------------------------------------------------------
    def signal_received(self) -> None:
        """For signal handlers: only count. Stopping takes locks and logs, which must not run
        inside a handler that may have interrupted this very thread holding them."""
        self._signals += 1

    def _check_signals(self) -> None:
        if self._signals > self._signals_handled:
            first = self._signals_handled == 0
            self._signals_handled = self._signals
            if first and self._signals == 1:
                self.stop()
            else:
                self.force_stop()

    def stop(self) -> None:
        """Drain: claim nothing more, let running jobs finish."""
        if not self._stop.is_set():
            self._log.info("worker_stopping", running=len(self.slots))
        self._stop.set()
        self._wake.set()

    def force_stop(self) -> None:
        """Kill running jobs now; each is released back to pending for another worker."""
        self.stop()
        slots = self.slots.force()
        self._log.warning("worker_force_stop", killing=[s.job.id for s in slots])
        for slot in slots:
            if slot.attempt is not None:
                slot.attempt.force_kill(models.OutcomeKind.INTERRUPTED)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def jobs_done(self) -> int:
        """Results written so far."""
        return self.attempts.done

    def _stop_requested(self) -> None:
        if not self._stop.is_set():
            self._log.info("stop_requested", source="worker stop")
            self.stop()

    # Ctrl-Z (queuectl/suspend.py): the lease keeper pauses the jobs and renews on resume
    def before_suspend(self) -> None:
        self.leases.before_suspend()

    def after_resume(self) -> None:
        self.leases.after_resume()

    # --- main loop ------------------------------------------------------------------------------
    def run(self, *, burst: bool = False) -> int:
        """Run until stopped (or, with burst, until no work is left); returns jobs finished."""
        self.attempts.policy = self.backend.policy()
        self.backend.refresh_flow()  # which queues are limited (the claim's second step)
        self.backend.deregister_workers(self.slot_ids)  # a stale row of a reused pid
        self.leases.beat()
        if self._stop_requested_while_starting():
            self._log.info("stop_requested", source="worker stop, while this one started")
            self.stop()
        self._recover()  # a crash before this start is recovered now, not a sweep later
        self.attempts.open()
        self.leases.start(on_job_notice=self._on_job_notice)
        duties = [
            threading.Thread(target=d.run, name="queuectl-duty", daemon=True) for d in self.duties
        ]
        for thread in duties:
            thread.start()
        self.metrics.slots.set(len(self.slot_ids))
        self._log.info("worker_started", slots=len(self.slot_ids), queues=list(self.queues) or "*")
        try:
            self._dispatch(burst=burst)
        finally:
            self._drain()
            # every result written before the leases stop renewing (heartbeats go on
            # meanwhile, and renew the leases of the results still held)
            self.attempts.close()
            for duty in self.duties:
                duty.stop()
            self.leases.close()
            for thread in duties:
                thread.join(timeout=5)
            try:
                self.backend.deregister_workers(self.slot_ids)
            except errors.BackendError as exc:
                self._log.warning("deregister_failed", error=str(exc))
            self._log.info("worker_stopped", jobs_done=self.jobs_done)
        return self.jobs_done

    def _dispatch(self, *, burst: bool) -> None:
        self._burst = burst
        while not self._stop.is_set():
            self._check_signals()
            if self._stop.is_set():
                return
            self._wake.clear()
            free = self._free_slots()
            claimed: list[models.Job] = []
            if free:
                asked_at = time.monotonic()  # leases start at or after this moment
                try:
                    claimed = self.backend.claim(
                        free, self.queues, host=self.host, lease_ttl_s=self.settings.lease_ttl_s
                    )
                except errors.BackendError as exc:
                    self._log.warning("claim_failed", error=str(exc))
                    self._db_error("claim")
                self.metrics.claim_latency.observe(time.monotonic() - asked_at)
                self._backlog = len(claimed) == len(free)
                if self._noticed:  # this claim answered a NOTIFY: won or lost
                    self._noticed = False
                    self._eagerness = (
                        min(1.0, self._eagerness * 2)
                        if claimed
                        else max(_MIN_EAGERNESS, self._eagerness / 2)
                    )
                taken = {j.worker_id for j in claimed}
                self.slots.give_back([s for s in free if s not in taken])
                for job in claimed:
                    self.attempts.launch(job, asked_at)
                if claimed and time.monotonic() - asked_at > self.settings.heartbeat_s:
                    # the claim waited (for a connection after an outage, for a lock), and its
                    # leases are only known to start after asked_at: renew them now, or the
                    # fence counts that wait against the new jobs and kills them early
                    self.leases.renew_now()
            if self._backlog and claimed:
                continue
            if burst and not self.slots and not self.attempts.unwritten:
                if not self._has_work():
                    return
                self._say_awaited()
            # The queue was empty at the last look: no quick re-looks (in a fleet, each would
            # be hundreds of empty claims). Woken early by a NOTIFY, a freed slot with work
            # left behind, or stop(); else poll, never past a retry this process scheduled.
            # The jitter keeps a fleet that went idle together from polling in step: spread
            # out, some worker looks every poll-interval / N, and pickup stays quick.
            self._idle_wait(self._poll_cap * random.uniform(0.7, 1.0))  # noqa: S311 (timing, not secrets)
            if time.monotonic() >= self.attempts.next_due:
                self.attempts.next_due = float("inf")

    def _slot_freed(self) -> None:
        """A slot was freed or a result written (the AttemptRunner's threads)."""
        if self._backlog or self._burst or self._stop.is_set():
            self._wake.set()

    def _free_slots(self) -> list[str]:
        """The slots to claim for now: none while results wait to be written (the database
        refuses them), so that what this process holds stays bounded by its slots."""
        return [] if self.attempts.failing else self.slots.take_free()

    def _idle_wait(self, wait_s: float) -> None:
        due_in = max(0.0, self.attempts.next_due - time.monotonic())
        deadline = time.monotonic() + min(wait_s, due_in)
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            # short slices: signals are acted on between them, without an extra claim
            if remaining <= 0 or self._wake.wait(min(remaining, _SIGNAL_CHECK_S)):
                return
            self._check_signals()

    def _on_job_notice(self, payload: str) -> None:
        """A NOTIFY: 'QUEUE COUNT' (jobs that fell due), '*' for every queue, '' after a
        reconnect. Workers of other queues stay asleep. Of the idle ones, each answers one job
        with its own chance (its eagerness) and COUNT jobs with COUNT times that: a fleet of
        N idle listeners sends a few claims for one job instead of N (the losers' claims
        would only skip its locked row), and a burst still wakes everyone. Who does not answer
        finds the work at its next poll, or as soon as one of its slots is free."""
        queue, _, count = payload.partition(" ")
        if queue not in {"", "*"} and self.queues and queue not in self.queues:
            return
        self._backlog = True  # claimed as soon as a slot is free, if none is now
        jobs = int(count) if count.isdigit() else 0  # 0: unknown, so everyone looks
        if jobs == 0 or random.random() < self._eagerness * jobs:  # noqa: S311
            self._noticed = jobs > 0
            self._wake.set()

    def _stop_requested_while_starting(self) -> bool:
        """`worker stop` ran after this process started but before it registered (when
        `worker stop` found no live worker to ask): it was meant for this one too."""
        age = sessions.age_s()
        if age is None:
            return False
        try:
            return self.backend.stop_requested_within(age)
        except errors.BackendError:
            return False

    def _has_work(self) -> bool:
        try:
            return self.backend.has_work(self.queues)
        except errors.BackendError:
            return True

    def _say_awaited(self) -> None:
        """A burst worker with nothing to run but work ahead (a retry's backoff, a queue's
        limit) says what it waits for and until when: once, again when that changes, and
        every 10 minutes; else an hour's backoff looks like a hang. It looks every 10 s at
        most: the count is a scan, the idle loop's has_work only an EXISTS."""
        now = time.monotonic()
        if now < self._awaited_look:
            return
        self._awaited_look = now + 10
        try:
            jobs, next_at = self.backend.work_outlook(self.queues)
        except errors.BackendError:
            return
        seen = (jobs, models.iso(next_at))
        if jobs == 0 or (seen == self._awaited and now - self._awaited_said < 600):
            return
        self._awaited, self._awaited_said = seen, now
        wait_s = 0.0 if next_at is None else (next_at - models.utcnow()).total_seconds()
        self._log.info(
            "burst_waiting",
            jobs=jobs,
            next_due=seen[1],
            # due now yet unclaimed: a queue's concurrency or rate limit holds it
            due_in=format_duration(wait_s) if wait_s > 0 else "now, held by a queue limit",
        )

    def _drain(self) -> None:
        """Until every running job has ended (a job's thread frees its slot last)."""
        # stopping or burst: every freed slot wakes this loop (_slot_freed)
        while len(self.slots):
            self._wake.wait(0.2)  # short waits keep the main thread open to signals
            self._wake.clear()
            self._check_signals()

    # --- recovery -------------------------------------------------------------------
    def _sweep(self) -> None:
        """Every `recovery-every`, from the heartbeat thread: recovery when it is this
        process's turn (a Postgres fleet takes turns: one sweep per period, not one per
        worker), and the policy re-read when a setting changed."""
        try:
            mine, version = self.backend.sweep_turn(
                f"{self.host}-{self.pid}", every_s=self.settings.recovery_every_s
            )
        except errors.BackendError as exc:
            self._log.warning("recovery_failed", error=str(exc))
            self._db_error("recover")
            return
        if mine:
            self._recover()
        elif version is None or version != self._settings_version:
            try:
                self.attempts.policy = self.backend.policy()
                self.backend.refresh_flow()  # a queue's limits are part of the version
            except errors.BackendError as exc:
                self._log.warning("policy_read_failed", error=str(exc), note="using the last one")
                return
        self._settings_version = version

    def _recover(self) -> None:
        """Recovery at start and every `recovery-every` (from the heartbeat thread)."""
        try:
            recover_lost(
                self.backend,
                self._reaper,
                lease_ttl_s=self.settings.lease_ttl_s,
                log=self._log,
                metrics=self.metrics,
            )
            self.attempts.policy = self.backend.policy()
            self.backend.refresh_flow()
        except errors.BackendError as exc:
            self._log.warning("recovery_failed", error=str(exc))
            self._db_error("recover")
        except Exception:  # never let one bad row stop recovery for good
            self._log.exception("recovery_crashed")

    def _db_error(self, operation: str) -> None:
        self.metrics.db_errors.labels(operation=operation).inc()
