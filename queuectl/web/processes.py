"""The workers page's read model: slots (one row each in queuectl_workers) folded into the
worker processes that run them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from queuectl import models


@dataclass(frozen=True)
class Process:
    """One `worker start` process: where it runs, since when, and its slots."""

    host: str
    pid: int
    slots: tuple[models.WorkerInfo, ...]
    started_at: datetime | None
    uptime_s: float | None
    jobs_done: int | None  # None: its slots run a queuectl too old to report it
    rss_bytes: int | None
    heartbeat_age_s: float

    @property
    def busy(self) -> int:
        return sum(1 for s in self.slots if s.current_jobs)

    @property
    def stopping(self) -> bool:
        return any(s.stopping for s in self.slots)

    @property
    def queues(self) -> tuple[str, ...]:
        return self.slots[0].queues

    @property
    def key(self) -> str:
        """The id of its first slot: what `/worker/stop` takes to drain the whole process
        (a process drains when any of its slots is asked)."""
        return self.slots[0].id


def group(slots: Iterable[models.WorkerInfo], now: datetime | None = None) -> list[Process]:
    """Slots by (host, pid), in the order their processes started; slot ids are built from
    both (worker.py), so two processes never share a slot."""
    now = now or models.utcnow()
    by_process: dict[tuple[str, int], list[models.WorkerInfo]] = {}
    for slot in slots:
        by_process.setdefault((slot.host, slot.pid), []).append(slot)
    out = []
    for (host, pid), members in by_process.items():
        starts = [s.started_at for s in members if s.started_at is not None]
        started = min(starts) if starts else None
        done = [s.jobs_done for s in members if s.jobs_done is not None]
        rss = [s.rss_bytes for s in members if s.rss_bytes is not None]
        out.append(
            Process(
                host=host,
                pid=pid,
                slots=tuple(members),
                started_at=started,
                uptime_s=None if started is None else max(0.0, (now - started).total_seconds()),
                jobs_done=sum(done) if done else None,
                rss_bytes=max(rss) if rss else None,  # every slot reports the same process
                heartbeat_age_s=max(s.heartbeat_age_s or 0.0 for s in members),
            )
        )
    return sorted(out, key=lambda p: (p.started_at is None, p.started_at, p.host, p.pid))
