"""The orchestrator's part of the Backend contract, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from queuectl import errors, models
from queuectl.backends.base import Backend


def schedule(name: str = "tick", **kw: object) -> models.Schedule:
    return models.Schedule(name=name, cron="* * * * *", command="echo tick", **kw)  # type: ignore[arg-type]


def test_leadership_is_exclusive_renewable_and_released(backend: Backend) -> None:
    assert backend.acquire_leadership("orch", "a", ttl_s=30)
    assert not backend.acquire_leadership("orch", "b", ttl_s=30)
    assert backend.acquire_leadership("orch", "a", ttl_s=30)  # renewal
    assert backend.leader("orch") == "a"
    backend.release_leadership("orch", "b")  # not the holder: nothing happens
    assert backend.leader("orch") == "a"
    backend.release_leadership("orch", "a")
    assert backend.leader("orch") is None
    assert backend.acquire_leadership("orch", "b", ttl_s=0.1)
    time.sleep(0.25)
    assert backend.leader("orch") is None  # expired
    assert backend.acquire_leadership("orch", "a", ttl_s=30)  # taken over


def test_schedules_add_list_pause_remove(backend: Backend) -> None:
    created = backend.add_schedule(schedule(queue="mail", priority=3, max_retries=1))
    assert (created.name, created.queue, created.priority, created.fired) == ("tick", "mail", 3, 0)
    with pytest.raises(errors.DuplicateSchedule):
        backend.add_schedule(schedule())
    assert backend.pause_schedule("tick", paused=True).paused
    assert [s.paused for s in backend.list_schedules()] == [True]
    skip = datetime(2030, 1, 1, tzinfo=UTC)
    resumed = backend.pause_schedule("tick", paused=False, skip_to=skip)
    assert not resumed.paused
    assert resumed.last_slot == skip
    backend.remove_schedule("tick")
    assert backend.list_schedules() == []
    with pytest.raises(errors.NotFound):
        backend.remove_schedule("tick")
    with pytest.raises(errors.NotFound):
        backend.pause_schedule("tick", paused=True)


def test_a_schedule_keeps_its_time_zone(backend: Backend) -> None:
    assert backend.add_schedule(schedule("utc")).tz == "UTC"
    berlin = backend.add_schedule(schedule("berlin", tz="Europe/Berlin"))
    assert (berlin.tz, berlin.to_json()["tz"]) == ("Europe/Berlin", "Europe/Berlin")
    assert {s.name: s.tz for s in backend.list_schedules()} == {
        "berlin": "Europe/Berlin",
        "utc": "UTC",
    }
    assert backend.pause_schedule("berlin", paused=True).tz == "Europe/Berlin"


def test_each_slot_fires_exactly_once(backend: Backend) -> None:
    backend.set_setting("max-retries", "6")
    backend.add_schedule(schedule(queue="cron"))
    slot = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    assert backend.fire_schedule("tick", slot)
    assert not backend.fire_schedule("tick", slot)  # a second orchestrator, or a retry
    assert not backend.fire_schedule("tick", slot - timedelta(minutes=1))  # older: never
    assert backend.fire_schedule("tick", slot + timedelta(minutes=1))
    jobs = backend.list_jobs()
    assert sorted(j.id for j in jobs) == [
        f"tick:{(slot + timedelta(minutes=m)).strftime('%Y%m%dT%H%MZ')}" for m in (0, 1)
    ]
    assert {(j.queue, j.command, j.max_retries) for j in jobs} == {("cron", "echo tick", 6)}
    (stored,) = backend.list_schedules()
    assert (stored.fired, stored.last_slot) == (2, slot + timedelta(minutes=1))
    backend.pause_schedule("tick", paused=True)
    assert not backend.fire_schedule("tick", slot + timedelta(minutes=2))


def test_expired_jobs_are_dead_lettered_not_run(backend: Backend) -> None:
    soon = models.utcnow() + timedelta(milliseconds=100)
    backend.enqueue(
        [
            models.JobSpec(command="true", id="late", expires_at=soon),
            models.JobSpec(command="true", id="fine", expires_at=soon + timedelta(hours=1)),
        ]
    )
    time.sleep(0.2)
    claimed = backend.claim(["w"], (), host="h", lease_ttl_s=30)
    assert [j.id for j in claimed] == ["fine"]  # the expired job is never claimed
    assert backend.expire_jobs() == 1
    late = backend.get_job("late")
    assert (late.state, late.last_error) == (models.JobState.DEAD, "expired before it ran")
    assert late.expires_at is not None


def test_prune_deletes_only_old_finished_jobs(backend: Backend) -> None:
    backend.enqueue([models.JobSpec(command="true", id=i) for i in ("a", "b", "p")])
    for job in backend.claim(["w0", "w1"], (), host="h", lease_ttl_s=30):
        backend.finish(job, models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0), None)
    assert backend.prune_finished(models.JobState.COMPLETED, older_than_s=60) == 0
    time.sleep(0.15)
    assert backend.prune_finished(models.JobState.COMPLETED, older_than_s=0.1) == 2
    assert [j.id for j in backend.list_jobs()] == ["p"]  # pending jobs are never pruned


def test_oldest_due_reports_waiting_time_per_queue(backend: Backend) -> None:
    backend.enqueue(
        [
            models.JobSpec(
                command="true", queue="a", run_at=models.utcnow() - timedelta(seconds=30)
            ),
            models.JobSpec(command="true", queue="b", run_at=models.utcnow() + timedelta(hours=1)),
        ]
    )
    oldest = backend.oldest_due()
    assert set(oldest) == {"a"}
    assert 29 < oldest["a"] < 60


def test_a_retried_expired_job_can_run_again(backend: Backend) -> None:
    past = models.utcnow() - timedelta(seconds=1)
    backend.enqueue([models.JobSpec(command="true", id="old", expires_at=past)])
    assert not backend.has_work(())  # expired: nothing a burst worker could claim
    assert backend.expire_jobs() == 1
    (again,) = backend.retry(["old"], dead_only=True)
    assert again.expires_at is None
    assert backend.has_work(())
    assert [j.id for j in backend.claim(["w"], (), host="h", lease_ttl_s=30)] == ["old"]


def test_prune_works_in_batches(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from queuectl.backends import common

    monkeypatch.setattr(common, "PRUNE_BATCH", 2)
    backend.enqueue([models.JobSpec(command="true", id=f"j{i}") for i in range(5)])
    for job in backend.claim([f"w{i}" for i in range(5)], (), host="h", lease_ttl_s=30):
        backend.finish(job, models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0), None)
    time.sleep(0.05)
    assert backend.prune_finished(models.JobState.COMPLETED, older_than_s=0.01) == 5
    assert backend.list_jobs() == []
