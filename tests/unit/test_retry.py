"""Unit tests of queuectl.retry.delay_for: exponential backoff, the cap, the DLQ cut-off, jitter."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from queuectl import models
from queuectl.retry import delay_for
from tests.unit.factories import make_job


def _job(**changes: Any) -> models.Job:
    return make_job(**{**dict(command="false", lease_token=0), **changes})


class _NoRandom(random.Random):
    """An rng that fails the test if it is consulted."""

    def uniform(self, a: float, b: float) -> float:
        raise AssertionError("rng used although jitter is 0")


def test_delay_doubles_per_attempt():
    policy = models.Policy(backoff_base=2.0)
    delays = [delay_for(_job(attempts=n, max_retries=5), policy) for n in (1, 2, 3, 4)]
    assert delays == [timedelta(seconds=s) for s in (2, 4, 8, 16)]


def test_delay_is_base_to_the_power_of_attempts():
    policy = models.Policy(backoff_base=3.0)
    assert delay_for(_job(attempts=3), policy) == timedelta(seconds=27)


def test_base_of_one_gives_a_constant_one_second_delay():
    policy = models.Policy(backoff_base=1.0)
    assert delay_for(_job(attempts=1), policy) == timedelta(seconds=1)
    assert delay_for(_job(attempts=3), policy) == timedelta(seconds=1)


def test_delay_is_capped_at_backoff_max():
    policy = models.Policy(backoff_base=2.0, backoff_max_s=60.0)
    assert delay_for(_job(attempts=5, max_retries=10), policy) == timedelta(seconds=32)
    assert delay_for(_job(attempts=6, max_retries=10), policy) == timedelta(seconds=60)
    assert delay_for(_job(attempts=10, max_retries=10), policy) == timedelta(seconds=60)


def test_huge_exponent_is_capped_instead_of_overflowing():
    policy = models.Policy(backoff_base=10.0, backoff_max_s=3600.0)
    job = _job(attempts=1000, max_retries=1000)
    assert delay_for(job, policy) == timedelta(seconds=3600)


def test_last_allowed_retry_still_gets_a_delay():
    policy = models.Policy(backoff_base=2.0)
    assert delay_for(_job(attempts=3, max_retries=3), policy) == timedelta(seconds=8)


def test_none_once_attempts_exceed_max_retries():
    policy = models.Policy()
    assert delay_for(_job(attempts=4, max_retries=3), policy) is None
    assert delay_for(_job(attempts=9, max_retries=3), policy) is None


def test_zero_max_retries_sends_the_first_failure_to_the_dlq():
    assert delay_for(_job(attempts=1, max_retries=0), models.Policy()) is None


def test_policy_max_retries_does_not_override_the_job_snapshot():
    # the job's own max_retries (snapshotted at enqueue) decides, not today's policy
    policy = models.Policy(max_retries=0)
    assert delay_for(_job(attempts=2, max_retries=5), policy) == timedelta(seconds=4)


def test_zero_jitter_is_exact_and_does_not_use_the_rng():
    policy = models.Policy(backoff_base=2.0, backoff_jitter=0.0)
    assert delay_for(_job(attempts=3), policy, rng=_NoRandom(1)) == timedelta(seconds=8)


def test_jitter_stays_within_its_fraction_of_the_delay():
    policy = models.Policy(backoff_base=2.0, backoff_jitter=0.25)
    rng = random.Random(1234)
    seen = []
    for _ in range(500):
        delay = delay_for(_job(attempts=3), policy, rng=rng)
        assert delay is not None
        seen.append(delay.total_seconds())
    assert all(6.0 <= s <= 10.0 for s in seen)
    # the spread is really applied, on both sides of the exact value
    assert min(seen) < 7.0
    assert max(seen) > 9.0


def test_jitter_is_reproducible_with_a_seeded_rng():
    policy = models.Policy(backoff_base=2.0, backoff_jitter=0.5)
    first = [delay_for(_job(attempts=2), policy, rng=random.Random(7)) for _ in range(3)]
    again = [delay_for(_job(attempts=2), policy, rng=random.Random(7)) for _ in range(3)]
    assert first == again
    other = delay_for(_job(attempts=2), policy, rng=random.Random(8))
    assert other != first[0]


def test_full_jitter_never_makes_a_delay_negative():
    policy = models.Policy(backoff_base=2.0, backoff_jitter=1.0)
    rng = random.Random(99)
    for _ in range(500):
        delay = delay_for(_job(attempts=1), policy, rng=rng)
        assert delay is not None
        assert timedelta(0) <= delay <= timedelta(seconds=4)


def test_jitter_still_returns_none_once_retries_are_spent():
    policy = models.Policy(backoff_jitter=0.5)
    assert delay_for(_job(attempts=4, max_retries=3), policy, rng=random.Random(1)) is None


@pytest.mark.parametrize("attempts", [0, 1, 2])
def test_delay_is_a_timedelta(attempts):
    delay = delay_for(_job(attempts=attempts), models.Policy())
    assert isinstance(delay, timedelta)
    assert delay == timedelta(seconds=2.0**attempts)
