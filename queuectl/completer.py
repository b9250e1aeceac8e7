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
_TRIES = 5  # a batch that cannot reach the database is retried, then left to recovery

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
        self._in_flight = 0
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
            return len(self._items) + self._in_flight

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything submitted so far, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

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
                self._in_flight = len(batch)
                self._cond.notify_all()  # room for waiting submitters
            try:
                self._write(batch)
            except Exception:  # this thread carries every result of the process: it lives on
                log.exception("completer_crashed", jobs=len(batch))
            finally:
                with self._cond:
                    self._in_flight = 0

    def _write(self, batch: list[models.Finish]) -> None:
        for attempt in range(1, _TRIES + 1):
            try:
                applied = self.backend.finish_many(batch)
                break
            except errors.BackendError as exc:
                log.warning("finish_failed", error=str(exc), jobs=len(batch), try_=attempt)
                self.on_db_error()
                time.sleep(min(2.0**attempt * 0.1, 2.0))
        else:
            log.error(
                "finish_gave_up",
                job_ids=[f.job.id for f in batch],
                note="their leases will expire and the jobs run again",
            )
            return
        for item, ok in zip(batch, applied, strict=True):
            self.on_written(item, ok)
