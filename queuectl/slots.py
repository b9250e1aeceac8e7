"""A worker process's job slots: which are free, which job each busy one runs."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queuectl import models
    from queuectl.executors import Attempt


@dataclass
class Slot:
    """One running job of this process."""

    job: models.Job
    # monotonic time the lease was last known renewed (claim, then each heartbeat): past
    # lease-ttl minus one beat, the job may be recovered elsewhere, so it is killed here
    renewed_at: float = 0.0
    attempt: Attempt | None = None
    # the command has exited: its result may already be written, and then a heartbeat that
    # snapshotted this slot just before finds no processing row and reports the job "lost"
    exited: bool = False


class Slots:
    """Shared by the claim loop (takes free slots, adds jobs), the jobs' threads (attach
    their attempts, free their slots), the heartbeat and the stop paths (read the running
    jobs). One lock; nothing slow happens under it."""

    def __init__(self, slot_ids: Sequence[str]) -> None:
        self.ids = list(slot_ids)
        self._lock = threading.Lock()
        self._free = list(slot_ids)
        self._running: dict[str, Slot] = {}  # by job id
        self._forced = False

    def __len__(self) -> int:
        """Jobs running now."""
        return len(self._running)

    def take_free(self) -> list[str]:
        """Every free slot, now the caller's to claim into."""
        with self._lock:
            free, self._free = self._free, []
        return free

    def give_back(self, slot_ids: Sequence[str]) -> None:
        """Slots taken for a claim that brought fewer jobs."""
        with self._lock:
            self._free.extend(slot_ids)

    def add(self, slot: Slot) -> None:
        with self._lock:
            self._running[slot.job.id] = slot

    def release(self, job: models.Job) -> None:
        """The job is over here: its slot (the job's worker_id) is free again."""
        with self._lock:
            self._running.pop(job.id, None)
            self._free.append(job.worker_id or "")

    def snapshot(self) -> list[Slot]:
        with self._lock:
            return list(self._running.values())

    def attach(self, slot: Slot, attempt: Attempt) -> bool:
        """Give a slot its attempt; False when a force stop came first (kill it then). Under
        the lock that `force` takes: no attempt escapes a force stop."""
        with self._lock:
            slot.attempt = attempt
            return not self._forced

    def force(self) -> list[Slot]:
        """From now on every attach says no; the slots running now."""
        with self._lock:
            self._forced = True
            return list(self._running.values())
