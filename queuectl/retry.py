"""An attempt's fate: the backoff before a retry (None: the DLQ) and the state its job moves to."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from queuectl import models

if TYPE_CHECKING:
    import random


def delay_for(
    job: models.Job, policy: models.Policy, *, rng: random.Random | None = None
) -> timedelta | None:
    """`backoff-base ^ attempts` seconds, capped at `backoff-max`; None once retries are spent.

    `job.attempts` counts the attempt that just failed, so with base 2 the gaps after the
    first, second and third attempts are 2 s, 4 s and 8 s (DESIGN.md §2).
    """
    if job.attempts > job.max_retries:
        return None
    try:
        seconds = float(policy.backoff_base) ** job.attempts
    except OverflowError:
        seconds = policy.backoff_max_s
    seconds = min(seconds, policy.backoff_max_s)
    if policy.backoff_jitter > 0:
        # jitter spreads a thundering herd of retries; the default 0 keeps the formula exact
        # (and spares every CLI call importing random: backends import this module)
        if rng is None:
            import random
        spread = seconds * policy.backoff_jitter
        seconds = max(0.0, seconds + (rng or random).uniform(-spread, spread))
    return timedelta(seconds=min(seconds, policy.backoff_max_s))


# what a retry can help: the command failed, ran out of time, or its worker vanished. A refused
# command is refused again; a cancelled or interrupted attempt is not a failure of the job.
RETRYABLE = frozenset(
    {models.OutcomeKind.FAILED, models.OutcomeKind.TIMED_OUT, models.OutcomeKind.LOST}
)


def retry_in(job: models.Job, outcome: models.Outcome, policy: models.Policy) -> timedelta | None:
    """How long a finished attempt's job waits before its next one: the backoff for a
    retryable outcome with retries left, else None (the attempt is its last)."""
    return delay_for(job, policy) if outcome.kind in RETRYABLE else None


def next_state(outcome: models.Outcome, wait: timedelta | None) -> models.JobState:
    """The one place an attempt's fate is decided (Backend.finish's docstring): completed,
    cancelled, back to pending (interrupted), failed while a retry waits, else dead."""
    kind = outcome.kind
    if kind is models.OutcomeKind.SUCCEEDED:
        return models.JobState.COMPLETED
    if kind is models.OutcomeKind.CANCELLED:
        return models.JobState.CANCELLED
    if kind is models.OutcomeKind.INTERRUPTED:
        return models.JobState.PENDING
    return models.JobState.DEAD if wait is None else models.JobState.FAILED
