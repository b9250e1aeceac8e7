"""Orchestrator behaviour with an injected clock, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from queuectl import config, models
from queuectl.backends import open_backend
from queuectl.backends.base import Backend
from queuectl.orchestrator import Orchestrator

SETTINGS = config.Settings(database_url="unused")


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[Orchestrator, Orchestrator, Backend]]:
    """Two orchestrators, each with its own connection, as two processes would have."""
    with (
        contextlib.closing(open_backend(db_url)) as a,
        contextlib.closing(open_backend(db_url)) as b,
    ):
        a.migrate()
        yield Orchestrator(a, SETTINGS), Orchestrator(b, SETTINGS), a


def minute(at: datetime) -> float:
    return at.replace(second=0, microsecond=0).timestamp()


def every_minute_schedule(backend: Backend) -> float:
    """Add the schedule 'tick' (* * * * *); the first whole minute after it exists."""
    backend.add_schedule(models.Schedule(name="tick", cron="* * * * *", command="true"))
    return minute(models.utcnow() + timedelta(minutes=1))


def cron_jobs(backend: Backend) -> list[str]:
    return sorted(j.id for j in backend.list_jobs(limit=1000) if j.id.startswith("tick:"))


def test_every_minute_schedule_fires_once_per_slot_with_two_orchestrators(
    two: tuple[Orchestrator, Orchestrator, Backend],
) -> None:
    first, second, backend = two
    start = every_minute_schedule(backend)
    # five minutes of ticks every 15 s, both orchestrators racing for every slot
    for step in range(20):
        now = start + step * 15
        first.fire_schedules(now)
        second.fire_schedules(now)
    slots = [datetime.fromtimestamp(start + 60 * m, UTC) for m in range(5)]
    assert cron_jobs(backend) == [f"tick:{s.strftime('%Y%m%dT%H%MZ')}" for s in slots]
    assert backend.list_schedules()[0].fired == 5


def test_missed_slots_are_not_replayed_in_a_burst(
    two: tuple[Orchestrator, Orchestrator, Backend],
) -> None:
    first, _, backend = two
    start = every_minute_schedule(backend)
    first.fire_schedules(start)
    first.fire_schedules(start + 10 * 60 + 5)  # ten minutes of downtime
    assert len(cron_jobs(backend)) == 2  # the first slot and only the latest missed one


def test_paused_schedules_do_not_fire_and_resume_skips_the_pause(
    two: tuple[Orchestrator, Orchestrator, Backend],
) -> None:
    first, _, backend = two
    start = every_minute_schedule(backend)
    first.fire_schedules(start)
    backend.pause_schedule("tick", paused=True)
    first.fire_schedules(start + 60)
    first.fire_schedules(start + 120)
    assert len(cron_jobs(backend)) == 1
    paused_until = datetime.fromtimestamp(start + 120, UTC)
    backend.pause_schedule("tick", paused=False, skip_to=paused_until)
    first.fire_schedules(start + 125)
    assert len(cron_jobs(backend)) == 1  # the slot passed while paused is skipped
    first.fire_schedules(start + 180)
    assert len(cron_jobs(backend)) == 2


def test_only_the_leader_sweeps(two: tuple[Orchestrator, Orchestrator, Backend]) -> None:
    first, second, backend = two
    backend.add_schedule(models.Schedule(name="tick", cron="* * * * *", command="true"))
    backend.enqueue(
        [models.JobSpec(command="true", id="x", expires_at=models.utcnow() - timedelta(seconds=1))]
    )
    now = minute(models.utcnow() + timedelta(minutes=1))
    first.tick(now)
    second.tick(now)
    assert first.is_leader != second.is_leader
    assert len(cron_jobs(backend)) == 1
    assert backend.get_job("x").state is models.JobState.DEAD  # expire_jobs ran


def test_a_failing_sweep_does_not_stop_the_others(
    two: tuple[Orchestrator, Orchestrator, Backend],
) -> None:
    first, _, backend = two
    backend.enqueue(
        [models.JobSpec(command="true", id="x", expires_at=models.utcnow() - timedelta(seconds=1))]
    )
    broken = first.sweeps[0]

    def explode(now: float) -> int:
        raise RuntimeError("boom")

    broken.fn = explode
    first.tick(models.utcnow().timestamp())
    assert backend.get_job("x").state is models.JobState.DEAD


def test_retention_prunes_old_finished_jobs(
    two: tuple[Orchestrator, Orchestrator, Backend],
) -> None:
    first, _, backend = two
    backend.set_setting("retention-completed", "0.001")
    backend.set_setting("retention-dead", "none")
    backend.enqueue([models.JobSpec(command="true", id=i, max_retries=0) for i in ("ok", "bad")])
    for job in backend.claim(["w0", "w1"], (), host="h", lease_ttl_s=30):
        outcome = models.OutcomeKind.SUCCEEDED if job.id == "ok" else models.OutcomeKind.FAILED
        backend.finish(job, models.Outcome(outcome, exit_code=0), None)
    import time

    time.sleep(0.05)
    assert first.prune_finished(time.time()) == 1
    assert [j.id for j in backend.list_jobs()] == ["bad"]  # dead jobs are kept ("none")


@pytest.mark.parametrize(
    ("night", "nightly", "hourly"),
    [
        # Berlin springs forward at 01:00Z (02:00 CET -> 03:00 CEST): 02:30 does not exist
        ("2027-03-28", ["20270327T0130Z", "20270328T0100Z"], range(21, 21 + 8)),
        # and falls back at 01:00Z (03:00 CEST -> 02:00 CET): 02:00-02:59 happens twice
        ("2027-10-31", ["20271030T0030Z", "20271031T0030Z"], range(21, 21 + 8)),
    ],
)
def test_a_dst_night_in_berlin_fires_each_slot_once(
    two: tuple[Orchestrator, Orchestrator, Backend],
    night: str,
    nightly: list[str],
    hourly: range,
) -> None:
    first, second, backend = two
    for name, cron in (("nightly", "30 2 * * *"), ("hourly", "0 * * * *")):
        backend.add_schedule(
            models.Schedule(name=name, cron=cron, command="true", tz="Europe/Berlin")
        )
    # seven hours around the change, ticked every minute by two racing orchestrators; the
    # first tick fires the latest slot already missed (the evening before), as ever
    start = datetime.fromisoformat(f"{night}T00:00:00+00:00") - timedelta(hours=2, minutes=30)
    for minute in range(7 * 60):
        now = (start + timedelta(minutes=minute, seconds=5)).timestamp()
        first.fire_schedules(now)
        second.fire_schedules(now)
    jobs = {j.id: j for j in backend.list_jobs(limit=1000)}
    day_before = (datetime.fromisoformat(night) - timedelta(days=1)).strftime("%Y%m%d")
    expected_hourly = [
        f"hourly:{day_before if hour < 24 else night.replace('-', '')}T{hour % 24:02d}00Z"
        for hour in hourly
    ]
    assert sorted(jobs) == sorted(expected_hourly + [f"nightly:{slot}" for slot in nightly])
    # every real hour, the one DST adds or drops included: ids are UTC, so none repeats
    hours = sorted(datetime.strptime(i, "hourly:%Y%m%dT%H%MZ") for i in jobs if "hourly" in i)
    assert {b - a for a, b in itertools.pairwise(hours)} == {timedelta(hours=1)}
    fired = {s.name: (s.fired, s.tz) for s in backend.list_schedules()}
    assert fired == {"hourly": (8, "Europe/Berlin"), "nightly": (2, "Europe/Berlin")}
