"""The worker's dispatch loop: claim into free slots, run each job, wait when idle, stop."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import structlog

from queuectl import errors, models, retry, sessions
from queuectl.backends.base import Backend
from queuectl.completer import Completer
from queuectl.config import Settings
from queuectl.executors import Executor
from queuectl.leases import LeaseKeeper, Running, Slot
from queuectl.observe import NULL_METRICS, MetricsLike
from queuectl.recovery import Connectivity, Reaper, recover_lost

log = structlog.get_logger("queuectl.worker")

_SIGNAL_CHECK_S = 0.25  # the main thread's longest wait: signals are acted on this quickly
_LOCAL_POLL_S = 0.2  # SQLite: the longest an idle worker waits before looking again


class Duty(Protocol):
    """Work that lives beside the claim loop, on a thread of its own, for as long as the
    worker runs. The CLI composes the embedded orchestrator as one; the worker knows no more
    of it than this."""

    def run(self) -> None: ...
    def stop(self) -> None: ...


class Worker:
    """`worker start --count N`: N slots sharing one process, one heartbeat thread and a small
    connection pool. Any number of these processes, on any hosts, cooperate through the
    database alone. What runs a job is the `executor`'s business (executors.py); keeping the
    leases is the LeaseKeeper's (leases.py); writing results is the Completer's."""

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
        self.jobs_done = 0
        self.running = Running()
        self._free = list(self.slot_ids)
        self._free_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._policy = models.Policy()
        self._next_due = float("inf")  # monotonic time a retry this process scheduled falls due
        self._signals = 0
        self._signals_handled = 0
        # without notifications (SQLite) an idle worker looks more often: an empty look is a
        # read of a local file, not a round trip
        self._poll_cap = (
            settings.poll_interval_s
            if backend.notifies
            else min(settings.poll_interval_s, _LOCAL_POLL_S)
        )
        self._log = log.bind(worker=f"{self.host}-{self.pid}")
        self._completer: Completer | None = None
        # recovery waits for a lease of unbroken database access (recovery.py): heartbeats,
        # every `heartbeat` seconds, are what shows it
        db = Connectivity(max_gap_s=2 * settings.heartbeat_s)
        self._reaper = Reaper(db, this_host=self.host, lease_ttl_s=settings.lease_ttl_s)
        self.leases = LeaseKeeper(
            backend,
            settings,
            running=self.running,
            workers=[
                models.WorkerInfo(id=s, host=self.host, pid=self.pid, queues=self.queues)
                for s in self.slot_ids
            ],
            connectivity=db,
            unwritten=lambda: [] if self._completer is None else self._completer.unwritten(),
            on_stop=self._stop_requested,
            recover=self._recover,
            metrics=metrics,
            log=self._log,
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
            self._log.info("worker_stopping", running=len(self.running))
        self._stop.set()
        self._wake.set()

    def force_stop(self) -> None:
        """Kill running jobs now; each is released back to pending for another worker."""
        self.stop()
        slots = self.running.force()
        self._log.warning("worker_force_stop", killing=[s.job.id for s in slots])
        for slot in slots:
            if slot.attempt is not None:
                slot.attempt.force_kill(models.OutcomeKind.INTERRUPTED)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

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
        self._policy = self.backend.policy()
        self.backend.deregister_workers(self.slot_ids)  # a stale row of a reused pid
        self.leases.beat()
        if self._stop_requested_while_starting():
            self._log.info("stop_requested", source="worker stop, while this one started")
            self.stop()
        self._recover()  # a crash before this start is recovered now, not a sweep later
        self.executor.open(self._log)
        self._completer = Completer(
            self.backend, on_written=self._written, on_db_error=lambda: self._db_error("finish")
        )
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
            self._completer.close()
            self.executor.close()
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
        idle_s = 0.05
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
                with self._free_lock:
                    taken = {j.worker_id for j in claimed}
                    self._free.extend(s for s in free if s not in taken)
                for job in claimed:
                    self._launch(job, asked_at)
                if claimed and time.monotonic() - asked_at > self.settings.heartbeat_s:
                    # the claim waited (for a connection after an outage, for a lock), and its
                    # leases are only known to start after asked_at: renew them now, or the
                    # fence counts that wait against the new jobs and kills them early
                    self.leases.renew_now()
            if claimed:
                idle_s = 0.05
                continue
            if burst and not self.running and not self._unwritten() and not self._has_work():
                return
            # woken early by a finished job (a free slot), a NOTIFY or stop(); else back off
            # to the poll, but never sleep past a retry this process scheduled
            self._idle_wait(idle_s if free else self._poll_cap)
            if time.monotonic() >= self._next_due:
                self._next_due = float("inf")
            idle_s = min(idle_s * 2, self._poll_cap)

    def _free_slots(self) -> list[str]:
        """The slots to claim for now: none while results wait to be written (the database
        refuses them), so that what this process holds stays bounded by its slots."""
        if self._completer is not None and self._completer.failing:
            return []
        with self._free_lock:
            free, self._free = self._free, []
        return free

    def _idle_wait(self, wait_s: float) -> None:
        deadline = time.monotonic() + min(wait_s, max(0.0, self._next_due - time.monotonic()))
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            # short slices: signals are acted on between them, without an extra claim
            if remaining <= 0 or self._wake.wait(min(remaining, _SIGNAL_CHECK_S)):
                return
            self._check_signals()

    def _on_job_notice(self, queue: str) -> None:
        # a wake-up names its queue: workers of other queues stay asleep, and a worker with
        # no free slot only sets a flag (no claim); of the idle workers that race for a
        # single job, the losers' claims skip its locked row
        if not queue or not self.queues or queue in self.queues:
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

    def _unwritten(self) -> int:
        return 0 if self._completer is None else self._completer.pending

    def _has_work(self) -> bool:
        try:
            return self.backend.has_work(self.queues)
        except errors.BackendError:
            return True

    def _drain(self) -> None:
        while threads := [s.thread for s in self.running.snapshot() if s.thread is not None]:
            for thread in threads:
                thread.join(timeout=0.2)  # short joins keep the main thread open to signals
                self._check_signals()

    # --- one job --------------------------------------------------------------------------------
    def _launch(self, job: models.Job, leased_at: float) -> None:
        if self.executor.inline:  # nothing runs (benchmarks): no thread, no slot to watch
            self._execute(job, None)
            return
        slot = Slot(job, renewed_at=leased_at)
        slot.thread = threading.Thread(target=self._execute, args=(job, slot), name=f"job-{job.id}")
        self.running.add(slot)
        try:
            slot.thread.start()
        except RuntimeError as exc:  # no thread to be had: give the job back at once
            self._log.error("job_start_failed", job_id=job.id, error=str(exc))
            self._release(job, models.Outcome(models.OutcomeKind.INTERRUPTED, error=str(exc)))

    def _execute(self, job: models.Job, slot: Slot | None) -> None:
        bound = self._log.bind(job_id=job.id, queue=job.queue, worker_id=job.worker_id)
        bound.info("job_claimed", attempt=job.attempts, command=job.command[:200])
        self._observe_start(job)
        outcome: models.Outcome | None = None
        try:
            outcome = self._attempt(job, slot, bound)
            self._complete(job, outcome, bound)
        except Exception:  # a bug here must not take the slot (or the worker) down with it
            bound.exception("job_crashed")
        finally:
            self._observe_end(job, outcome)
            self._release(job, None)

    def _attempt(self, job: models.Job, slot: Slot | None, bound: Any) -> models.Outcome:
        attempt = self.executor.prepare(job, self._policy)
        if isinstance(attempt, models.Outcome):  # refused, could not be set up, or a noop
            if attempt.kind is models.OutcomeKind.REFUSED:
                bound.warning("job_refused", reason=attempt.error)
            return attempt
        assert slot is not None, "an inline executor returns outcomes only"
        if not self.running.attach(slot, attempt):
            attempt.force_kill(models.OutcomeKind.INTERRUPTED)  # killed before it starts
        if error := attempt.start():
            return models.Outcome(models.OutcomeKind.FAILED, exit_code=None, error=error)
        outcome = attempt.wait(on_tick=lambda: self.leases.fence(slot, bound))
        slot.exited = True  # before the result is submitted: see Slot.exited
        return outcome

    def _release(self, job: models.Job, outcome: models.Outcome | None) -> None:
        """Free the job's slot; with an outcome, also hand the job back to the queue."""
        if outcome is not None:
            try:
                self.backend.finish(job, outcome, None)
            except errors.BackendError as exc:
                self._log.warning("release_failed", job_id=job.id, error=str(exc))
        self.running.pop(job.id)
        with self._free_lock:
            self._free.append(job.worker_id or "")
        self._wake.set()

    def _complete(self, job: models.Job, outcome: models.Outcome, bound: Any) -> None:
        """Hand the result to the completer; the slot is free as soon as this returns."""
        if outcome.kind is models.OutcomeKind.LOST:
            bound.warning("job_abandoned", reason="lease lost; recovery owns the job now")
            return
        retry_in = None
        if outcome.kind in retry.RETRYABLE:
            try:  # backoff-base is read when the failure happens (DESIGN.md §2)
                self._policy = self.backend.policy()
            except errors.BackendError as exc:
                bound.warning("policy_read_failed", error=str(exc), note="using the last one")
            retry_in = retry.retry_in(job, outcome, self._policy)
        assert self._completer is not None
        self._completer.submit(models.Finish(job, outcome, retry_in))

    def _written(self, item: models.Finish, applied: bool) -> None:
        """The completer wrote a result (its thread): count it, log it, note a retry's due."""
        job, outcome, retry_in = item.job, item.outcome, item.retry_in
        if applied and retry_in is not None:
            due = time.monotonic() + retry_in.total_seconds()
            self._next_due = min(self._next_due, due)
        self.jobs_done += 1
        self._wake.set()  # a burst worker may be waiting for its last result to be written
        self._log.info(
            "job_finished",
            job_id=job.id,
            queue=job.queue,
            worker_id=job.worker_id,
            outcome=str(outcome.kind),
            exit_code=outcome.exit_code,
            duration_s=round(outcome.duration_s, 3),
            attempt=job.attempts,
            error=outcome.error,
            retry_in_s=None if retry_in is None else retry_in.total_seconds(),
            applied=applied,
        )

    # --- recovery and metrics -------------------------------------------------------------------
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
            self._policy = self.backend.policy()
        except errors.BackendError as exc:
            self._log.warning("recovery_failed", error=str(exc))
            self._db_error("recover")
        except Exception:  # never let one bad row stop recovery for good
            self._log.exception("recovery_crashed")

    def _observe_start(self, job: models.Job) -> None:
        self.metrics.claimed.labels(queue=job.queue).inc()
        if job.started_at is not None:
            wait = (job.started_at - job.run_at).total_seconds()
            self.metrics.queue_wait.labels(queue=job.queue).observe(max(0.0, wait))
        self.metrics.busy_slots.inc()

    def _observe_end(self, job: models.Job, outcome: models.Outcome | None) -> None:
        self.metrics.busy_slots.dec()
        if outcome is not None:
            self.metrics.finished.labels(queue=job.queue, outcome=str(outcome.kind)).inc()
            self.metrics.run_duration.labels(queue=job.queue).observe(outcome.duration_s)

    def _db_error(self, operation: str) -> None:
        self.metrics.db_errors.labels(operation=operation).inc()
