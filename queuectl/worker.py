"""Worker: N job slots in one process; claim -> run -> heartbeat -> finish, and recovery."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from queuectl import allowlist, errors, models, retry, sessions
from queuectl.backends.base import Backend
from queuectl.completer import Completer
from queuectl.config import Settings
from queuectl.lifeline import Lifeline
from queuectl.recovery import Connectivity, Reaper
from queuectl.runner import Runner, job_env, spawn_failure

if TYPE_CHECKING:  # composed by the CLI; the worker only calls them
    from queuectl.metrics import Metrics
    from queuectl.orchestrator import Orchestrator

log = structlog.get_logger("queuectl.worker")

_SIGNAL_CHECK_S = 0.25  # the main thread's longest wait: signals are acted on this quickly
_LOCAL_POLL_S = 0.2  # SQLite: the longest an idle worker waits before looking again


@dataclass
class _Slot:
    job: models.Job
    thread: threading.Thread
    # monotonic time the lease was last known renewed (claim, then each heartbeat): past
    # lease-ttl minus one beat, the job may be recovered elsewhere, so it is killed here
    renewed_at: float
    runner: Runner | None = None
    # the command has exited: its result may already be written, and then a heartbeat that
    # snapshotted this slot just before finds no processing row and reports the job "lost"
    exited: bool = False


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
        metrics: Metrics | None = None,
        embedded_orchestrator: Orchestrator | None = None,
        noop: bool = False,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self.orchestrator = embedded_orchestrator
        # benchmarks only: claim, record and complete without running anything, to measure
        # the queue's own overhead apart from the cost of spawning a shell
        self.noop = noop
        self.queues = tuple(queues)
        self.host = host or settings.hostname or socket.gethostname()
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
        self._beat_now = threading.Event()  # a control notification: heartbeat at once
        self._policy = models.Policy()
        self._next_due = float("inf")  # monotonic time a retry this process scheduled falls due
        self._signals = 0
        self._signals_handled = 0
        self._forced = False
        self._fence_s = max(settings.lease_ttl_s - settings.heartbeat_s, settings.heartbeat_s)
        # without notifications (SQLite) an idle worker looks more often: an empty look is a
        # read of a local file, not a round trip
        self._poll_cap = (
            settings.poll_interval_s
            if backend.notifies
            else min(settings.poll_interval_s, _LOCAL_POLL_S)
        )
        self._log = log.bind(worker=f"{self.host}-{self.pid}")
        self._completer: Completer | None = None
        self._lifeline: Lifeline | None = None
        # recovery waits for a lease of unbroken database access (recovery.py): heartbeats,
        # every `heartbeat` seconds, are what shows it
        self._db = Connectivity(max_gap_s=2 * settings.heartbeat_s)
        self._reaper = Reaper(self._db, this_host=self.host, lease_ttl_s=settings.lease_ttl_s)
        self._beat_since: float | None = None  # a heartbeat is waiting on the database
        self._beat_failed = False
        self._suspended = False  # stopped by Ctrl-Z, until the heartbeat after SIGCONT
        self._paused: list[_Slot] = []

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
            self._log.info("worker_stopping", running=len(self._running))
        self._stop.set()
        self._wake.set()

    def force_stop(self) -> None:
        """Kill running jobs now; each is released back to pending for another worker."""
        self.stop()
        with self._lock:
            slots = list(self._running.values())
        self._log.warning("worker_force_stop", killing=[s.job.id for s in slots])
        self._forced = True
        for slot in slots:
            if slot.runner is not None:
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
        if self._stop_requested_while_starting():
            self._log.info("stop_requested", source="worker stop, while this one started")
            self.stop()
        self._recover()  # a crash before this start is recovered now, not a sweep later
        if not self.noop:
            try:
                self._lifeline = Lifeline()  # this process's jobs die with it, however it dies
            except OSError as exc:  # recovery sweeps still find orphans on this host
                self._log.warning("lifeline_unavailable", error=str(exc))
        self._completer = Completer(
            self.backend, on_written=self._written, on_db_error=lambda: self._db_error("finish")
        )
        beat = threading.Thread(target=self._beat_loop, name="queuectl-heartbeat", daemon=True)
        beat.start()
        helpers = [
            threading.Thread(target=self._listen, name="queuectl-listen", daemon=True),
        ]

        if self.orchestrator is not None:
            helpers.append(
                threading.Thread(target=self.orchestrator.run, name="queuectl-orch", daemon=True)
            )
        for thread in helpers:
            thread.start()
        if self.metrics is not None:
            self.metrics.slots.set(len(self.slot_ids))
        self._log.info("worker_started", slots=len(self.slot_ids), queues=list(self.queues) or "*")
        try:
            self._dispatch(burst=burst)
        finally:
            self._drain()
            # every result written before the leases stop renewing (heartbeats go on
            # meanwhile, and renew the leases of the results still held)
            self._completer.close()
            if self._lifeline is not None:
                self._lifeline.close()
            self._beat_stop.set()
            self._beat_now.set()
            if self.orchestrator is not None:
                self.orchestrator.stop()
            beat.join(timeout=self.settings.heartbeat_s + 5)
            for thread in helpers:
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
                if self.metrics is not None:
                    self.metrics.claim_latency.observe(time.monotonic() - asked_at)
                with self._lock:
                    taken = {j.worker_id for j in claimed}
                    self._free.extend(s for s in free if s not in taken)
                for job in claimed:
                    if self.noop:
                        self._noop(job)
                    else:
                        self._start(job, asked_at)
                if claimed and time.monotonic() - asked_at > self.settings.heartbeat_s:
                    # the claim waited (for a connection after an outage, for a lock), and its
                    # leases are only known to start after asked_at: renew them now, or the
                    # fence counts that wait against the new jobs and kills them early
                    self._beat_now.set()
            if claimed:
                idle_s = 0.05
                continue
            if burst and not self._running and not self._unwritten() and not self._has_work():
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
        with self._lock:
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
        while True:
            with self._lock:
                threads = [s.thread for s in self._running.values()]
            if not threads:
                return
            for thread in threads:
                thread.join(timeout=0.2)  # short joins keep the main thread open to signals
                self._check_signals()

    # --- one job --------------------------------------------------------------------------------
    def _start(self, job: models.Job, leased_at: float) -> None:
        thread = threading.Thread(target=self._execute, args=(job,), name=f"job-{job.id}")
        with self._lock:
            self._running[job.id] = _Slot(job, thread, renewed_at=leased_at)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: give the job back at once
            self._log.error("job_start_failed", job_id=job.id, error=str(exc))
            self._release(job, models.Outcome(models.OutcomeKind.INTERRUPTED, error=str(exc)))

    def _execute(self, job: models.Job) -> None:
        bound = self._log.bind(job_id=job.id, queue=job.queue, worker_id=job.worker_id)
        bound.info("job_claimed", attempt=job.attempts, command=job.command[:200])
        self._observe_start(job)
        outcome: models.Outcome | None = None
        try:
            outcome = self._run(job, bound)
            self._complete(job, outcome, bound)
        except Exception:  # a bug here must not take the slot (or the worker) down with it
            bound.exception("job_crashed")
        finally:
            self._observe_end(job, outcome)
            self._release(job, None)

    def _noop(self, job: models.Job) -> None:
        """The noop executor (benchmarks): the job succeeds at once, in the claim loop, with
        no thread of its own; claim, record and complete are all that is measured."""
        self._log.info("job_claimed", job_id=job.id, queue=job.queue, worker_id=job.worker_id)
        self._observe_start(job)
        outcome = models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0)
        assert self._completer is not None
        self._completer.submit(models.Finish(job, outcome))
        self._observe_end(job, outcome)
        with self._lock:
            self._free.append(job.worker_id or "")

    def _run(self, job: models.Job, bound: structlog.BoundLogger) -> models.Outcome:
        if self.noop:
            return models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0)
        if refused := self._refusal(job.command):
            bound.warning("job_refused", reason=refused)
            note = f"[queuectl: {refused}; it was not run]\n"
            return models.Outcome(
                models.OutcomeKind.REFUSED, error=refused, output=note, output_bytes=len(note)
            )
        try:
            runner = Runner(
                job.command,
                env=job_env(job, self.environ),
                timeout_s=job.timeout_s,
                kill_grace_s=self.settings.kill_grace_s,
                output_limit=self._policy.output_limit,
                lifeline=self._lifeline,
            )
        except OSError as exc:  # e.g. no file descriptor left for the output file
            return spawn_failure(f"could not capture output: {exc}")
        with self._lock:
            slot = self._running[job.id]
            slot.runner = runner
            forced = self._forced
        if forced:
            runner.force_kill(models.OutcomeKind.INTERRUPTED)
        if error := runner.start():
            return spawn_failure(error)

        def fence() -> None:
            # no renewal for almost a lease: another worker may recover this job at any
            # moment, and a job must never run twice at once, so this copy dies now
            if time.monotonic() - slot.renewed_at > self._fence_s and not self._renewal_blocked():
                bound.warning("job_fenced", reason="lease not renewed; killing local copy")
                runner.force_kill(models.OutcomeKind.LOST)

        outcome = runner.wait(on_tick=fence)
        slot.exited = True  # before the result is submitted: see _Slot.exited
        return outcome

    def _renewal_blocked(self) -> bool:
        """The lease is not renewed because nobody can write: suspended and resuming (the
        first heartbeat after SIGCONT decides), or SQLite's one lock is held by another
        process or the disk refuses writes, which stops every recovery sweep just as well
        (and those wait a lease after such a break, recovery.py), so killing a healthy job
        would gain nothing. Postgres cannot tell a cut-off worker from an outage: it fences."""
        if self._suspended:
            return True
        if not self.backend.single_host:
            return False
        return self._beat_since is not None or self._beat_failed

    def _refusal(self, command: str) -> str | None:
        """Why allowed-commands forbids running `command`, or None. Checked right before the
        spawn: whoever can write the database can enqueue anything, so this is the guarantee,
        and this worker's own (pinned) list is one that the database cannot widen."""
        if not allowlist.allows(self.settings.allowed_commands, command):
            return f"{allowlist.REFUSED} (pinned on this worker)"
        if not allowlist.allows(self._policy.allowed_commands, command):
            return allowlist.REFUSED
        return None

    def _release(self, job: models.Job, outcome: models.Outcome | None) -> None:
        """Free the job's slot; with an outcome, also hand the job back to the queue."""
        if outcome is not None:
            try:
                self.backend.finish(job, outcome, None)
            except errors.BackendError as exc:
                self._log.warning("release_failed", job_id=job.id, error=str(exc))
        with self._lock:
            self._running.pop(job.id, None)
            self._free.append(job.worker_id or "")
        self._wake.set()

    def _complete(
        self, job: models.Job, outcome: models.Outcome, bound: structlog.BoundLogger
    ) -> None:
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

    # --- heartbeat and recovery -----------------------------------------------------------------
    def _listen(self) -> None:
        """Postgres LISTEN: an enqueue, retry or due job wakes the claim loop at once; a
        cancel or stop makes the heartbeat run at once. Polling remains the fallback."""

        def on_notify(channel: str, payload: str) -> None:
            if channel == "queuectl_control":
                self._beat_now.set()
            elif not payload or not self.queues or payload in self.queues:
                # a wake-up names its queue: workers of other queues stay asleep, and a
                # worker with no free slot only sets a flag (no claim); of the idle workers
                # that race for a single job, the losers' claims skip its locked row
                self._wake.set()

        def on_error(error: str) -> None:
            self._log.warning("listen_failed", error=error, note="polling until reconnected")

        self.backend.listen(on_notify, self._beat_stop, on_error=on_error)

    def _beat_loop(self) -> None:
        next_recovery = time.monotonic() + self.settings.recovery_every_s
        while True:
            self._beat_now.wait(self.settings.heartbeat_s)
            self._beat_now.clear()
            if self._beat_stop.is_set():
                return
            # this thread renews every lease of the process: nothing may end it early
            try:
                self._heartbeat()
                if time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + self.settings.recovery_every_s
                    self._recover()
            except Exception:
                self._log.exception("heartbeat_crashed")

    def _heartbeat(self) -> None:
        with self._lock:
            slots = list(self._running.values())
        running = []
        for slot in slots:
            out = None if slot.runner is None else slot.runner.output_if_changed()
            running.append(
                models.RunningJob(
                    job=slot.job,
                    output=None if out is None else out[0],
                    output_bytes=0 if out is None else out[1],
                    session=None if slot.runner is None else slot.runner.session_tag,
                )
            )
        # a result waiting to be written keeps its lease: else, after an outage longer than
        # a lease, a recovery sweep would call the job lost and run it again
        held = {s.job.id for s in slots}
        if self._completer is not None:
            running += [
                models.RunningJob(job=j) for j in self._completer.unwritten() if j.id not in held
            ]
        workers = [
            models.WorkerInfo(id=s, host=self.host, pid=self.pid, queues=self.queues)
            for s in self.slot_ids
        ]
        sent_at = time.monotonic()  # the database renews at or after this moment
        self._beat_since = sent_at
        try:
            control = self.backend.heartbeat(
                workers, running, lease_ttl_s=self.settings.lease_ttl_s
            )
        except errors.BackendError as exc:
            self._beat_failed = True
            self._db.failed()
            self._log.warning("heartbeat_failed", error=str(exc))
            self._db_error("heartbeat")
            return
        finally:
            self._beat_since = None
        self._beat_failed = False
        self._db.ok(sent_at, time.monotonic())
        for slot in slots:
            if slot.job.id not in control.lost:
                slot.renewed_at = sent_at
        if control.stop and not self._stop.is_set():
            self._log.info("stop_requested", source="worker stop")
            self.stop()
        for slot in slots:
            if slot.runner is None:
                continue
            if slot.job.id in control.cancel:
                self._log.info("job_cancel_requested", job_id=slot.job.id)
                slot.runner.kill(models.OutcomeKind.CANCELLED)
            elif slot.job.id in control.lost and not slot.exited:
                # recovered elsewhere (this process stalled past its lease): it may already
                # run again on another worker, so this copy dies at once, without a grace
                self._log.warning("job_lease_lost", job_id=slot.job.id)
                slot.runner.force_kill(models.OutcomeKind.LOST)

    def _recover(self) -> None:
        try:
            recovered = self.backend.recover_expired(
                self._reaper, lease_ttl_s=self.settings.lease_ttl_s
            )
            self._policy = self.backend.policy()
        except errors.BackendError as exc:
            self._log.warning("recovery_failed", error=str(exc))
            self._db_error("recover")
            return
        except Exception:  # never let one bad row stop recovery for good
            self._log.exception("recovery_crashed")
            return
        if self.metrics is not None and recovered:
            self.metrics.recovered.inc(len(recovered))
        for job in recovered:
            self._log.warning(
                "job_recovered",
                job_id=job.id,
                queue=job.queue,
                lost_worker=job.worker_id,
                attempt=job.attempts,
                orphans_killed=self._reaper.killed.get(job.id, 0),
            )
        self._reaper.killed.clear()  # also for a job whose owner wrote it after all

    # --- suspension (Ctrl-Z, queuectl/suspend.py) ---------------------------------------------
    def before_suspend(self) -> None:
        """No transaction is open now: the running jobs stop with the worker, so that a
        retry elsewhere (their leases run out while stopped) never runs next to them."""
        self._suspended = True  # the fence waits for the heartbeat after the resume
        with self._lock:
            self._paused = [s for s in self._running.values() if s.runner is not None]
        for slot in self._paused:
            assert slot.runner is not None
            slot.runner.pause()

    def after_resume(self) -> None:
        """SIGCONT: one heartbeat first, which kills the jobs recovered elsewhere meanwhile
        and renews the others' leases; only then do they go on."""
        try:
            self._heartbeat()
        finally:
            for slot in self._paused:
                assert slot.runner is not None
                slot.runner.resume()
            self._paused = []
            self._suspended = False

    def _observe_start(self, job: models.Job) -> None:
        if self.metrics is None:
            return
        self.metrics.claimed.labels(queue=job.queue).inc()
        if job.started_at is not None:
            wait = (job.started_at - job.run_at).total_seconds()
            self.metrics.queue_wait.labels(queue=job.queue).observe(max(0.0, wait))
        self.metrics.busy_slots.inc()

    def _observe_end(self, job: models.Job, outcome: models.Outcome | None) -> None:
        if self.metrics is None:
            return
        self.metrics.busy_slots.dec()
        if outcome is not None:
            self.metrics.finished.labels(queue=job.queue, outcome=str(outcome.kind)).inc()
            self.metrics.run_duration.labels(queue=job.queue).observe(outcome.duration_s)

    def _db_error(self, operation: str) -> None:
        if self.metrics is not None:
            self.metrics.db_errors.labels(operation=operation).inc()
