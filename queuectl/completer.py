"""Batched completion: a worker's finished jobs are written many per transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from queuectl import errors, models
from queuectl.backends.base import Backend

log = structlog.get_logger("queuectl.completer")

# How long the first finished job of a batch waits for others to join it. A job's slot is
# free at once; only the write waits, so this bounds the crash window (a worker killed in it
# loses these results and the jobs run again after their lease) without slowing anyone.
FLUSH_S = 0.005
MAX_BATCH = 500  # one statement's worth; a longer backlog is written in several
_MAX_PENDING = 4 * MAX_BATCH  # submitters wait beyond this: leases must not age in a backlog
# A batch the database refuses for another reason than being out of reach (a constraint, a
# bug) is tried this often and then left to recovery. One it cannot reach is kept and tried
# again until it is written, however long the outage: the worker renews the leases of the
# results it holds (`unwritten`), so nobody else writes them off meanwhile, and claims no
# new work while writes fail, so what it holds stays bounded by its slots.
_TRIES = 5
_RETRY_MAX_S = 2.0

OnWritten = Callable[[models.Finish, bool], None]


class Completer:
    """One thread that writes finished jobs with `Backend.finish_many`: the first waits at
    most FLUSH_S for company, a full batch goes at once, and while one batch is being written
    the next gathers (group commit)."""

    def __init__(
        self,
        backend: Backend,
        *,
        on_written: OnWritten,
        on_db_error: Callable[[], None] = lambda: None,
        flush_s: float = FLUSH_S,
    ) -> None:
        self.backend = backend
        self.on_written = on_written
        self.on_db_error = on_db_error
        self.flush_s = flush_s
        self._items: list[models.Finish] = []
        self._in_flight: list[models.Finish] = []
        self._failing = False
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="queuectl-completer", daemon=True)
        self._thread.start()

    def submit(self, item: models.Finish) -> None:
        with self._cond:
            while len(self._items) >= _MAX_PENDING and not self._closing:
                self._cond.wait(0.1)
            self._items.append(item)
            if len(self._items) == 1 or len(self._items) >= MAX_BATCH:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Finished jobs not yet written (queued or being written)."""
        with self._cond:
            return len(self._items) + len(self._in_flight)

    def unwritten(self) -> list[models.Job]:
        """The jobs whose results wait to be written: their leases must still be renewed."""
        with self._cond:
            return [f.job for f in (*self._in_flight, *self._items)]

    @property
    def failing(self) -> bool:
        """The last write could not reach the database (and is being tried again)."""
        return self._failing

    def close(self, timeout_s: float = 30.0) -> bool:
        """Write everything submitted so far, then stop the thread; False when results were
        still unwritten after `timeout_s` (the database is out of reach)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error(
                "results_unwritten",
                job_ids=[j.id for j in self.unwritten()],
                note="their leases will expire and the jobs run again",
            )
            return False
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items:
                    return  # closing, and nothing left
                deadline = time.monotonic() + self.flush_s
                while len(self._items) < MAX_BATCH and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, self._items = self._items[:MAX_BATCH], self._items[MAX_BATCH:]
                self._in_flight = batch
                self._cond.notify_all()  # room for waiting submitters
            try:
                self._write(batch)
            except Exception:  # this thread carries every result of the process: it lives on
                log.exception("completer_crashed", jobs=len(batch))
            finally:
                with self._cond:
                    self._in_flight = []

    def _write(self, batch: list[models.Finish]) -> None:
        refused = 0
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = self.backend.finish_many(batch)
                break
            except errors.BackendUnavailable as exc:
                self._failing = True
                log.warning("finish_failed", error=str(exc), jobs=len(batch), try_=attempt)
            except errors.BackendError as exc:
                refused += 1
                log.warning("finish_failed", error=str(exc), jobs=len(batch), try_=attempt)
                if refused >= _TRIES:
                    log.error(
                        "finish_gave_up",
                        job_ids=[f.job.id for f in batch],
                        note="their leases will expire and the jobs run again",
                    )
                    self._failing = False
                    return
            self.on_db_error()
            time.sleep(min(2.0**attempt * 0.1, _RETRY_MAX_S))
        self._failing = False
        for item, ok in zip(batch, applied, strict=True):
            self.on_written(item, ok)
