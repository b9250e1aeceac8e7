"""Pure retry policy: how long a failed attempt waits, or None for the DLQ."""

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
