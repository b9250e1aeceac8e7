"""Worker: N job slots in one process; claim -> run -> heartbeat -> finish, and recovery."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from queuectl import errors, models, retry
from queuectl.backends.base import Backend
from queuectl.config import Settings
from queuectl.runner import Runner, job_env, kill_orphans, spawn_failure

log = structlog.get_logger("queuectl.worker")

_RETRYABLE_OUTCOMES = frozenset({models.OutcomeKind.FAILED, models.OutcomeKind.TIMED_OUT})
_FINISH_TRIES = 5  # a finish that cannot reach the database is retried, then left to recovery


@dataclass
class _Slot:
    job: models.Job
    runner: Runner
    thread: threading.Thread


class Worker:
    """`worker start --count N`: N slots sharing one process, one heartbeat thread and a small
    connection pool. Any number of these processes, on any hosts, cooperate through the
    database alone."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        *,
        count: int = 1,
        queues: Sequence[str] = (),
        host: str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.queues = tuple(queues)
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.slot_ids = [f"{self.host}-{self.pid}-{i}" for i in range(1, count + 1)]
        self.environ = dict(environ)
        self.jobs_done = 0
        self._free = list(self.slot_ids)
        self._running: dict[str, _Slot] = {}  # by job id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._beat_stop = threading.Event()
        self._policy = models.Policy()
        self._next_due = float("inf")  # monotonic time a retry this process scheduled falls due
        self._log = log.bind(worker=f"{self.host}-{self.pid}")

    # --- control, from signal handlers or the heartbeat -------------------------------------
    def stop(self) -> None:
        """Drain: claim nothing more, let running jobs finish."""
        if not self._stop.is_set():
            self._log.info("worker_stopping", running=len(self._running))
        self._stop.set()
        self._wake.set()

    def force_stop(self) -> None:
        """Kill running jobs now; each is released back to pending for another worker."""
        self.stop()
        with self._lock:
            slots = list(self._running.values())
        self._log.warning("worker_force_stop", killing=[s.job.id for s in slots])
        for slot in slots:
            slot.runner.force_kill(models.OutcomeKind.INTERRUPTED)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- main loop ------------------------------------------------------------------------------
    def run(self, *, burst: bool = False) -> int:
        """Run until stopped (or, with burst, until no work is left); returns jobs finished."""
        self._policy = self.backend.policy()
        self.backend.deregister_workers(self.slot_ids)  # a stale row of a reused pid
        self._heartbeat()
        self._recover()  # a crash before this start is recovered now, not a sweep later
        beat = threading.Thread(target=self._beat_loop, name="queuectl-heartbeat", daemon=True)
        beat.start()
        self._log.info("worker_started", slots=len(self.slot_ids), queues=list(self.queues) or "*")
        try:
            self._dispatch(burst=burst)
        finally:
            self._drain()
            self._beat_stop.set()
            beat.join(timeout=self.settings.heartbeat_s + 5)
            try:
                self.backend.deregister_workers(self.slot_ids)
            except errors.BackendError as exc:
                self._log.warning("deregister_failed", error=str(exc))
            self._log.info("worker_stopped", jobs_done=self.jobs_done)
        return self.jobs_done

    def _dispatch(self, *, burst: bool) -> None:
        idle_s = 0.05
        while not self._stop.is_set():
            self._wake.clear()
            with self._lock:
                free, self._free = self._free, []
            claimed: list[models.Job] = []
            if free:
                try:
                    claimed = self.backend.claim(
                        free, self.queues, host=self.host, lease_ttl_s=self.settings.lease_ttl_s
                    )
                except errors.BackendError as exc:
                    self._log.warning("claim_failed", error=str(exc))
                with self._lock:
                    taken = {j.worker_id for j in claimed}
                    self._free.extend(s for s in free if s not in taken)
                for job in claimed:
                    self._start(job)
            if claimed:
                idle_s = 0.05
                continue
            if burst and not self._running and not self._has_work():
                return
            # woken early by a finished job (a free slot) or stop(); else back off to the poll,
            # but never sleep past a retry this process scheduled (its backoff stays exact)
            wait_s = idle_s if free else self.settings.poll_interval_s
            self._wake.wait(max(0.0, min(wait_s, self._next_due - time.monotonic())))
            if time.monotonic() >= self._next_due:
                self._next_due = float("inf")
            idle_s = min(idle_s * 2, self.settings.poll_interval_s)

    def _has_work(self) -> bool:
        try:
            return self.backend.has_work(self.queues)
        except errors.BackendError:
            return True

    def _drain(self) -> None:
        while True:
            with self._lock:
                threads = [s.thread for s in self._running.values()]
            if not threads:
                return
            for thread in threads:
                thread.join(timeout=0.2)  # short joins keep the main thread open to signals

    # --- one job --------------------------------------------------------------------------------
    def _start(self, job: models.Job) -> None:
        runner = Runner(
            job.command,
            env=job_env(job, self.environ),
            timeout_s=job.timeout_s,
            kill_grace_s=self.settings.kill_grace_s,
            output_limit=self._policy.output_limit,
        )
        thread = threading.Thread(target=self._execute, args=(job, runner), name=f"job-{job.id}")
        with self._lock:
            self._running[job.id] = _Slot(job, runner, thread)
        thread.start()

    def _execute(self, job: models.Job, runner: Runner) -> None:
        bound = self._log.bind(job_id=job.id, queue=job.queue, worker_id=job.worker_id)
        bound.info("job_claimed", attempt=job.attempts, command=job.command[:200])
        try:
            error = runner.start()
            outcome = spawn_failure(error) if error else runner.wait()
            self._finish(job, outcome, bound)
        except Exception:  # a bug here must not take the slot (or the worker) down with it
            bound.exception("job_crashed")
        finally:
            with self._lock:
                self._running.pop(job.id, None)
                self._free.append(job.worker_id or "")
            self._wake.set()

    def _finish(
        self, job: models.Job, outcome: models.Outcome, bound: structlog.BoundLogger
    ) -> None:
        if outcome.kind is models.OutcomeKind.LOST:
            bound.warning("job_abandoned", reason="lease lost; recovery owns the job now")
            return
        for attempt in range(1, _FINISH_TRIES + 1):
            try:
                retry_in = None
                if outcome.kind in _RETRYABLE_OUTCOMES:
                    # backoff-base is read when the failure happens (DESIGN.md §2)
                    retry_in = retry.delay_for(job, self.backend.policy())
                applied = self.backend.finish(job, outcome, retry_in)
                if applied and retry_in is not None:
                    due = time.monotonic() + retry_in.total_seconds()
                    self._next_due = min(self._next_due, due)
                break
            except errors.BackendError as exc:
                bound.warning("finish_failed", error=str(exc), try_=attempt)
                time.sleep(min(2.0**attempt * 0.1, 2.0))
        else:
            bound.error("finish_gave_up", note="the lease will expire and the job run again")
            return
        self.jobs_done += 1
        bound.info(
            "job_finished",
            outcome=str(outcome.kind),
            exit_code=outcome.exit_code,
            duration_s=round(outcome.duration_s, 3),
            attempt=job.attempts,
            error=outcome.error,
            retry_in_s=None if retry_in is None else retry_in.total_seconds(),
            applied=applied,
        )

    # --- heartbeat and recovery -----------------------------------------------------------------
    def _beat_loop(self) -> None:
        next_recovery = time.monotonic() + self.settings.recovery_every_s
        while not self._beat_stop.wait(self.settings.heartbeat_s):
            self._heartbeat()
            if time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + self.settings.recovery_every_s
                self._recover()

    def _heartbeat(self) -> None:
        with self._lock:
            slots = list(self._running.values())
        running = []
        for slot in slots:
            out = slot.runner.output_if_changed()
            running.append(
                models.RunningJob(
                    job=slot.job,
                    output=None if out is None else out[0],
                    output_bytes=0 if out is None else out[1],
                )
            )
        workers = [
            models.WorkerInfo(id=s, host=self.host, pid=self.pid, queues=self.queues)
            for s in self.slot_ids
        ]
        try:
            control = self.backend.heartbeat(
                workers, running, lease_ttl_s=self.settings.lease_ttl_s
            )
        except errors.BackendError as exc:
            self._log.warning("heartbeat_failed", error=str(exc))
            return
        if control.stop and not self._stop.is_set():
            self._log.info("stop_requested", source="worker stop")
            self.stop()
        for slot in slots:
            if slot.job.id in control.cancel:
                self._log.info("job_cancel_requested", job_id=slot.job.id)
                slot.runner.kill(models.OutcomeKind.CANCELLED)
            elif slot.job.id in control.lost:
                self._log.warning("job_lease_lost", job_id=slot.job.id)
                slot.runner.kill(models.OutcomeKind.LOST)

    def _recover(self) -> None:
        def kill(job: models.Job, host: str | None) -> None:
            killed = kill_orphans(job, host, this_host=self.host)
            if killed:
                self._log.info("orphan_killed", job_id=job.id, groups=killed)

        try:
            recovered = self.backend.recover_expired(kill, lease_ttl_s=self.settings.lease_ttl_s)
            self._policy = self.backend.policy()
        except errors.BackendError as exc:
            self._log.warning("recovery_failed", error=str(exc))
            return
        for job in recovered:
            self._log.warning(
                "job_recovered",
                job_id=job.id,
                queue=job.queue,
                lost_worker=job.worker_id,
                attempt=job.attempts,
            )
