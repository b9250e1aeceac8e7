"""Times as the jobs list shows them: "3 min ago", "in 1 h 20 min", run times, what a job awaits."""

from __future__ import annotations

from datetime import datetime

from queuectl import models
from queuectl.durations import format_duration

_MINUTE, _HOUR, _DAY = 60, 3600, 86400


def span(seconds: float) -> str:
    """A coarse length for reading at a glance: 42 s, 3 min, 1 h 20 min, 2 d 4 h. Whole
    units, rounded down, so "in 1 h 59 min" never claims a job is due sooner than it is."""
    s = int(max(seconds, 0))
    if s < _MINUTE:
        return f"{s} s"
    if s < _HOUR:
        return f"{s // _MINUTE} min"
    if s < 2 * _DAY:
        hours, minutes = divmod(s // _MINUTE, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(s // _HOUR, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative(value: datetime | None, now: datetime) -> str:
    """`value` seen from `now`: "3 min ago", "in 2 h", "now" (within a second); "-" for none."""
    if value is None:
        return "-"
    delta = (value - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(-delta)} ago"


def run_time(job: models.Job, now: datetime) -> str:
    """How long the latest attempt ran ("1.2s"), or has been running ("running 12s"); "-"
    when that is not known from the job's row. A cancelled job's finished_at is when it was
    cancelled, not when an earlier attempt ended, so only a kill while running (which left
    started_at <= finished_at with no later attempt) could be timed: cancelled shows "-"."""
    if job.state is models.JobState.PROCESSING and job.started_at is not None:
        return f"running {format_duration((now - job.started_at).total_seconds())}"
    ran = job.state in (models.JobState.COMPLETED, models.JobState.FAILED, models.JobState.DEAD)
    if ran and job.started_at is not None and job.finished_at is not None:
        seconds = (job.finished_at - job.started_at).total_seconds()
        if seconds >= 0:
            return format_duration(seconds)
    return "-"


def awaits(job: models.Job, now: datetime) -> str:
    """What a waiting job waits for: "retry in 40 s" (a failed job's backoff), "retry due"
    (its backoff is over: the next free worker takes it), "due in 2 h" (a delayed job);
    "" for any other job."""
    if job.state is models.JobState.FAILED:
        return f"retry {relative(job.run_at, now)}" if job.run_at > now else "retry due"
    if job.state is models.JobState.PENDING and (job.run_at - now).total_seconds() >= 1:
        return f"due {relative(job.run_at, now)}"
    return ""
