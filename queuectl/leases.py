"""The lease keeper: a worker's heartbeat thread renews its leases, fences, relays cancels."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from queuectl import errors, models

if TYPE_CHECKING:
    from queuectl.backends.base import Backend
    from queuectl.config import Settings
    from queuectl.observe import MetricsLike
    from queuectl.recovery import Connectivity
    from queuectl.slots import Slot, Slots


class LeaseKeeper:
    """Every `heartbeat` seconds (or at once, on `renew_now`): upsert the slots' worker rows,
    renew the leases of the running jobs and of the results still waiting to be written, and
    act on the answer (stop, cancel, lease lost). Every `recovery-every` seconds, `recover`.
    A job's thread calls `fence` while it waits: a job whose lease was not renewed for almost
    a lease is killed, because another worker may recover it at any moment."""

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        *,
        slots: Slots,
        workers: Sequence[models.WorkerInfo],
        connectivity: Connectivity,
        unwritten: Callable[[], Sequence[models.Job]],
        on_stop: Callable[[], None],
        recover: Callable[[], None],
        metrics: MetricsLike,
        log: Any,
        done: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.backend = backend
        self.done = done  # attempts finished per slot id, for the slots' rows
        self.settings = settings
        self.slots = slots
        self.workers = list(workers)
        self.connectivity = connectivity
        self.unwritten = unwritten
        self.on_stop = on_stop
        self.recover = recover
        self.metrics = metrics
        self._log = log
        self.fence_s = max(settings.lease_ttl_s - settings.heartbeat_s, settings.heartbeat_s)
        self.closing = threading.Event()
        self._now = threading.Event()  # a control notification or a slow claim: beat at once
        self._threads: list[threading.Thread] = []
        self._beat_since: float | None = None  # a heartbeat is waiting on the database
        self._beat_failed = False
        self._suspended = False  # stopped by Ctrl-Z, until the heartbeat after SIGCONT
        self._paused: list[Slot] = []

    def start(self, on_job_notice: Callable[[str], None]) -> None:
        """The heartbeat thread, and the LISTEN thread that wakes the claim loop."""
        self._threads = [
            threading.Thread(target=self._loop, name="queuectl-heartbeat", daemon=True),
            threading.Thread(
                target=self._listen, args=(on_job_notice,), name="queuectl-listen", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def renew_now(self) -> None:
        self._now.set()

    def close(self) -> None:
        self.closing.set()
        self._now.set()
        for i, thread in enumerate(self._threads):  # the heartbeat first: it may be mid-beat
            thread.join(timeout=self.settings.heartbeat_s + 5 if i == 0 else 5)

    def _loop(self) -> None:
        next_recovery = time.monotonic() + self.settings.recovery_every_s
        while True:
            self._now.wait(self.settings.heartbeat_s)
            self._now.clear()
            if self.closing.is_set():
                return
            # this thread renews every lease of the process: nothing may end it early
            try:
                self.beat()
                if time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + self.settings.recovery_every_s
                    self.recover()
            except Exception:
                self._log.exception("heartbeat_crashed")

    def _listen(self, on_job_notice: Callable[[str], None]) -> None:
        """Postgres LISTEN: an enqueue, retry or due job wakes the claim loop at once; a
        cancel or stop makes the heartbeat run at once. Polling remains the fallback, and is
        all there is when the backend has nowhere to LISTEN (said once, here)."""

        def on_notify(channel: str, payload: str) -> None:
            if channel == "queuectl_control":
                self._now.set()
            else:
                on_job_notice(payload)

        def on_error(error: str) -> None:
            self._log.warning("listen_failed", error=error, note="polling until reconnected")

        listened = self.backend.listen(on_notify, self.closing, on_error=on_error)
        if not listened and self.backend.notifies:  # Postgres with nowhere to LISTEN
            self._log.warning(
                "listen_unavailable",
                note="no LISTEN through a pooler in transaction mode: idle workers poll "
                f"every {self.settings.poll_interval_s:g}s (poll-interval), and cancels "
                "and stops arrive with the next heartbeat; set QUEUECTL_LISTEN_URL to a "
                "direct URL to be woken at once",
            )

    def _workers_now(self) -> list[models.WorkerInfo]:
        """The slots' rows, with the connections the process holds now (Postgres), its
        resident memory, and the attempts each slot finished."""
        held: Callable[[], int] | None = getattr(self.backend, "connections", None)
        count = None if held is None else held()
        done = {} if self.done is None else self.done()
        rss = resident_bytes()
        return [
            dataclasses.replace(w, connections=count, jobs_done=done.get(w.id, 0), rss_bytes=rss)
            for w in self.workers
        ]

    def beat(self) -> None:
        """One heartbeat, in whatever thread calls it."""
        slots = self.slots.snapshot()
        running = []
        for slot in slots:
            attempt = slot.attempt
            out = None if attempt is None else attempt.output_if_changed()
            running.append(
                models.RunningJob(
                    job=slot.job,
                    output=None if out is None else out[0],
                    output_bytes=0 if out is None else out[1],
                    session=None if attempt is None else attempt.session_tag,
                )
            )
        # a result waiting to be written keeps its lease: else, after an outage longer than
        # a lease, a recovery sweep would call the job lost and run it again
        held = {s.job.id for s in slots}
        running += [models.RunningJob(job=j) for j in self.unwritten() if j.id not in held]
        sent_at = time.monotonic()  # the database renews at or after this moment
        self._beat_since = sent_at
        try:
            control = self.backend.heartbeat(
                self._workers_now(), running, lease_ttl_s=self.settings.lease_ttl_s
            )
        except errors.BackendError as exc:
            self._beat_failed = True
            self.connectivity.failed()
            self._log.warning("heartbeat_failed", error=str(exc))
            self.metrics.db_errors.labels(operation="heartbeat").inc()
            return
        finally:
            self._beat_since = None
        self._beat_failed = False
        self.connectivity.ok(sent_at, time.monotonic())
        for slot in slots:
            if slot.job.id not in control.lost:
                slot.renewed_at = sent_at
        if control.stop:
            self.on_stop()
        for slot in slots:
            if slot.attempt is None:
                continue
            if slot.job.id in control.cancel:
                self._log.info("job_cancel_requested", job_id=slot.job.id)
                slot.attempt.kill(models.OutcomeKind.CANCELLED)
            elif slot.job.id in control.lost and not slot.exited:
                # recovered elsewhere (this process stalled past its lease): it may already
                # run again on another worker, so this copy dies at once, without a grace
                self._log.warning("job_lease_lost", job_id=slot.job.id)
                slot.attempt.force_kill(models.OutcomeKind.LOST)

    def fence(self, slot: Slot, log: Any) -> None:
        """For a job's thread, between waits: no renewal for almost a lease means another
        worker may recover this job at any moment, and a job must never run twice at once,
        so this copy dies now."""
        if time.monotonic() - slot.renewed_at > self.fence_s and not self._renewal_blocked():
            log.warning("job_fenced", reason="lease not renewed; killing local copy")
            if slot.attempt is not None:
                slot.attempt.force_kill(models.OutcomeKind.LOST)

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

    # --- suspension (Ctrl-Z, queuectl/suspend.py) ---------------------------------------------
    def before_suspend(self) -> None:
        """No transaction is open now: the running jobs stop with the worker, so that a
        retry elsewhere (their leases run out while stopped) never runs next to them."""
        self._suspended = True  # the fence waits for the heartbeat after the resume
        self._paused = [s for s in self.slots.snapshot() if s.attempt is not None]
        for slot in self._paused:
            assert slot.attempt is not None
            slot.attempt.pause()

    def after_resume(self) -> None:
        """SIGCONT: one heartbeat first, which kills the jobs recovered elsewhere meanwhile
        and renews the others' leases; only then do they go on."""
        try:
            self.beat()
        finally:
            for slot in self._paused:
                assert slot.attempt is not None
                slot.attempt.resume()
            self._paused = []
            self._suspended = False


def resident_bytes() -> int | None:
    """This process's resident set size, from /proc (Linux; one small read per heartbeat);
    None elsewhere: ru_maxrss is a peak, not what the process holds now."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
