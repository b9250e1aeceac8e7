"""One claimed job, start to result: run through the executor, fenced, handed to the completer."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from queuectl import errors, models, retry
from queuectl.completer import Completer
from queuectl.slots import Slot, Slots

if TYPE_CHECKING:
    from queuectl.backends.base import Backend
    from queuectl.executors import Executor
    from queuectl.leases import LeaseKeeper
    from queuectl.observe import MetricsLike

# how an attempt may end and log at info; every other end (failed, timed out, lost, refused)
# logs at warning
_QUIET_ENDS = frozenset(
    {models.OutcomeKind.SUCCEEDED, models.OutcomeKind.CANCELLED, models.OutcomeKind.INTERRUPTED}
)


class JobThreads:
    """The threads that run jobs, kept between jobs: starting and joining a thread per job
    cost ~0.12 ms of CPU, a tenth of what a shell job costs the worker beyond the shell. A
    thread is added only when every one is busy, so there are about as many as jobs run at
    once (the slots, plus the few still finishing a job whose slot is already free)."""

    def __init__(self, run: Callable[[models.Job, Slot], None]) -> None:
        self._run = run
        self._tasks: queue.SimpleQueue[tuple[models.Job, Slot] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._busy = 0

    def submit(self, job: models.Job, slot: Slot) -> None:
        """Run `job` on an idle thread, or a new one; RuntimeError when none can start."""
        with self._lock:
            grow = self._busy >= len(self._threads)
            self._busy += 1
        if grow:
            thread = threading.Thread(target=self._loop, name="queuectl-job", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                with self._lock:
                    self._busy -= 1
                raise
            with self._lock:
                self._threads.append(thread)
        self._tasks.put((job, slot))

    def _loop(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                self._run(*task)
            finally:
                with self._lock:
                    self._busy -= 1

    def close(self) -> None:
        """After the last job: every thread ends."""
        with self._lock:
            threads = list(self._threads)
            self._threads.clear()
        for _ in threads:
            self._tasks.put(None)
        for thread in threads:
            thread.join(timeout=5)


class AttemptRunner:
    """Each claimed job runs on a thread of its own while it runs (JobThreads; an inline
    executor's in the claim loop: it runs nothing), under the lease keeper's fence; its
    result, with the retry decision (retry.py), goes to the completer, and its slot is free
    as soon as it is handed over."""

    def __init__(
        self,
        backend: Backend,
        executor: Executor,
        *,
        slots: Slots,
        leases: LeaseKeeper,
        metrics: MetricsLike,
        log: Any,
        wake: Callable[[], None],
    ) -> None:
        self.backend = backend
        self.executor = executor
        self.slots = slots
        self.leases = leases
        self.metrics = metrics
        self._log = log
        self.wake = wake  # the claim loop: a slot is free, or a result was written
        # the database's policy: read at start, after a retryable failure and each sweep
        self.policy = models.Policy()
        self.done = 0  # results written
        self.done_by_slot: dict[str, int] = {}  # the same, per slot (heartbeats report it)
        self.next_due = float("inf")  # monotonic time a retry this process scheduled falls due
        self.completer: Completer | None = None
        self.threads = JobThreads(self._execute)

    def open(self) -> None:
        self.executor.open(self._log)
        self.completer = Completer(
            self.backend,
            on_written=self._written,
            on_db_error=lambda: self.metrics.db_errors.labels(operation="finish").inc(),
        )

    def close(self) -> None:
        """After the last job: every result written (or given up on), then the executor."""
        if self.completer is not None:
            self.completer.close()
        self.threads.close()
        self.executor.close()

    @property
    def failing(self) -> bool:
        """Results cannot be written now: claim nothing (the database refuses them), so
        that what this process holds stays bounded by its slots."""
        return self.completer is not None and self.completer.failing

    @property
    def unwritten(self) -> int:
        return 0 if self.completer is None else self.completer.pending

    def unwritten_jobs(self) -> list[models.Job]:
        return [] if self.completer is None else self.completer.unwritten()

    def launch(self, job: models.Job, leased_at: float) -> None:
        if self.executor.inline:
            self._inline(job)
            return
        slot = Slot(job, renewed_at=leased_at)
        self.slots.add(slot)
        try:
            self.threads.submit(job, slot)
        except RuntimeError as exc:  # no thread to be had: give the job back at once
            self._log.error("job_start_failed", job_id=job.id, error=str(exc))
            self._release(job, models.Outcome(models.OutcomeKind.INTERRUPTED, error=str(exc)))

    def _inline(self, job: models.Job) -> None:
        """An inline executor runs nothing (benchmarks): the job ends here, in the claim
        loop, with no thread and no slot to watch, and costs no more than the queue's own
        work (claim, record, complete), which is what the noop benchmarks measure."""
        self._log.info("job_claimed", job_id=job.id, queue=job.queue, worker_id=job.worker_id)
        self._observe_start(job)
        outcome = self.executor.prepare(job, self.policy)
        assert isinstance(outcome, models.Outcome), "an inline executor returns outcomes only"
        self._complete(job, outcome, self._log)
        self._observe_end(job, outcome)
        self.slots.give_back([job.worker_id or ""])

    def _execute(self, job: models.Job, slot: Slot) -> None:
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

    def _attempt(self, job: models.Job, slot: Slot, bound: Any) -> models.Outcome:
        attempt = self.executor.prepare(job, self.policy)
        if isinstance(attempt, models.Outcome):  # refused, or could not be set up
            if attempt.kind is models.OutcomeKind.REFUSED:
                bound.warning("job_refused", reason=attempt.error)
            return attempt
        if not self.slots.attach(slot, attempt):
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
        self.slots.release(job)
        self.wake()

    def _complete(self, job: models.Job, outcome: models.Outcome, bound: Any) -> None:
        """Hand the result to the completer; the slot is free as soon as this returns."""
        if outcome.kind is models.OutcomeKind.LOST:
            bound.warning("job_abandoned", reason="lease lost; recovery owns the job now")
            return
        retry_in = None
        if outcome.kind in retry.RETRYABLE:
            try:  # backoff-base is read when the failure happens (DESIGN.md §2)
                self.policy = self.backend.policy()
            except errors.BackendError as exc:
                bound.warning("policy_read_failed", error=str(exc), note="using the last one")
            retry_in = retry.retry_in(job, outcome, self.policy)
        assert self.completer is not None
        self.completer.submit(models.Finish(job, outcome, retry_in))

    def _written(self, item: models.Finish, applied: bool) -> None:
        """The completer wrote a result (its thread): count it, log it, note a retry's due."""
        job, outcome, retry_in = item.job, item.outcome, item.retry_in
        if applied and retry_in is not None:
            due = time.monotonic() + retry_in.total_seconds()
            self.next_due = min(self.next_due, due)
        self.done += 1
        slot_id = job.worker_id or ""
        self.done_by_slot[slot_id] = self.done_by_slot.get(slot_id, 0) + 1
        self.wake()  # a burst worker may be waiting for its last result to be written
        # a failure is what `--log-level warning` keeps: the lines an operator must see
        log = self._log.info if outcome.kind in _QUIET_ENDS else self._log.warning
        log(
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
