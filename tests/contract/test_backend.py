"""The Backend contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta
from typing import Any, cast

import pytest

from queuectl import errors, models
from queuectl.backends.base import Backend

S = models.JobState
HOST = "test-host"


def spec(command: str = "true", **kw: object) -> models.JobSpec:
    return models.JobSpec(command=command, **kw)  # type: ignore[arg-type]


def claim(
    backend: Backend, n: int = 1, queues: tuple[str, ...] = (), ttl: float = 30
) -> list[models.Job]:
    return backend.claim([f"w{i}" for i in range(n)], queues, host=HOST, lease_ttl_s=ttl)


def ok(**kw: object) -> models.Outcome:
    return models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0, **kw)  # type: ignore[arg-type]


def failed(code: int = 1) -> models.Outcome:
    return models.Outcome(models.OutcomeKind.FAILED, exit_code=code, error=f"exit code {code}")


def test_migrate_is_idempotent(backend: Backend) -> None:
    assert backend.migrate() == backend.migrate() >= 1


def test_enqueue_returns_pending_jobs_with_defaults(backend: Backend) -> None:
    (job,) = backend.enqueue([spec("echo hi")])
    assert job.state is S.PENDING
    assert job.attempts == 0 and job.max_retries == 3
    assert job.queue == "default" and job.priority == 0
    assert job.timeout_s is None
    assert abs((job.run_at - job.created_at).total_seconds()) < 1
    assert backend.get_job(job.id) == job


def test_enqueue_snapshots_configured_defaults(backend: Backend) -> None:
    backend.set_setting("max-retries", "7")
    backend.set_setting("job-timeout", "30")
    (job,) = backend.enqueue([spec()])
    (explicit,) = backend.enqueue([spec(max_retries=0, timeout_s=0.0)])
    backend.set_setting("max-retries", "1")
    assert backend.get_job(job.id).max_retries == 7  # later config changes don't reach it
    assert job.timeout_s == 30
    assert explicit.max_retries == 0 and explicit.timeout_s is None


def test_duplicate_id_rejects_the_whole_batch(backend: Backend) -> None:
    backend.enqueue([spec(id="a")])
    with pytest.raises(errors.DuplicateJob):
        backend.enqueue([spec(id="b"), spec(id="a")])
    with pytest.raises(errors.DuplicateJob):
        backend.enqueue([spec(id="c"), spec(id="c")])
    assert [j.id for j in backend.list_jobs()] == ["a"]


def test_bulk_enqueue_keeps_input_order(backend: Backend) -> None:
    jobs = backend.enqueue([spec(f"echo {i}") for i in range(300)])
    assert [j.command for j in jobs] == [f"echo {i}" for i in range(300)]
    claimed = claim(backend, 300)
    assert [j.id for j in claimed] == [j.id for j in jobs]  # FIFO within a priority


def test_unicode_and_long_commands_round_trip(backend: Backend) -> None:
    command = "printf '%s' 'héllo wörld ✓ 日本語 🚀' # " + "x" * 5000
    (job,) = backend.enqueue([spec(command)])
    assert backend.get_job(job.id).command == command


def test_claim_orders_by_priority_then_run_at_then_insertion(backend: Backend) -> None:
    now = models.utcnow()
    backend.enqueue(
        [
            spec(id="low"),
            spec(id="high", priority=10),
            spec(id="older", run_at=now - timedelta(minutes=5)),
            spec(id="future", priority=99, run_at=now + timedelta(hours=1)),
            spec(id="low2"),
        ]
    )
    assert [j.id for j in claim(backend, 10)] == ["high", "older", "low", "low2"]


def test_claim_moves_to_processing_under_a_fresh_lease(backend: Backend) -> None:
    backend.enqueue([spec(id="a"), spec(id="b")])
    a, b = claim(backend, 2)
    assert (a.worker_id, b.worker_id) == ("w0", "w1")
    for job in (a, b):
        assert job.state is S.PROCESSING and job.attempts == 1 and job.lease_token == 1
        assert job.started_at is not None
    assert claim(backend, 5) == []  # nothing is claimed twice


def test_claim_respects_queues_and_limit(backend: Backend) -> None:
    backend.enqueue([spec(id=f"m{i}", queue="mail") for i in range(3)] + [spec(id="d")])
    assert [j.id for j in claim(backend, 2, ("mail",))] == ["m0", "m1"]
    assert [j.id for j in claim(backend, 5, ("other",))] == []
    assert [j.id for j in claim(backend, 5, ("mail", "default"))] == ["m2", "d"]


def test_finish_success_completes(backend: Backend) -> None:
    backend.enqueue([spec(id="a")])
    (job,) = claim(backend)
    assert backend.finish(job, ok(output="hi\n", output_bytes=3), None)
    done = backend.get_job("a")
    assert done.state is S.COMPLETED and done.exit_code == 0 and done.finished_at is not None
    (run,) = backend.runs("a")
    assert (run.attempt, run.outcome, run.output, run.exit_code) == (1, "succeeded", "hi\n", 0)


def test_failure_waits_out_its_backoff_then_goes_dead(backend: Backend) -> None:
    backend.enqueue([spec(id="a", max_retries=1)])
    (job,) = claim(backend)
    assert backend.finish(job, failed(3), timedelta(seconds=60))
    waiting = backend.get_job("a")
    assert waiting.state is S.FAILED and waiting.last_error == "exit code 3"
    assert 55 < (waiting.run_at - models.utcnow()).total_seconds() <= 60
    assert claim(backend) == []  # not due yet
    assert backend.has_work(())  # but a burst worker must wait for it
    backend.retry(["a"])  # skip the backoff
    (again,) = claim(backend)
    assert again.attempts == 2
    assert backend.finish(again, failed(4), None)
    dead = backend.get_job("a")
    assert dead.state is S.DEAD and dead.exit_code == 4
    assert [r.attempt for r in backend.runs("a")] == [1, 2]


def test_late_finish_with_an_old_lease_token_changes_nothing(backend: Backend) -> None:
    backend.enqueue([spec(id="a")])
    (first,) = claim(backend, ttl=0.05)
    time.sleep(0.15)
    assert [j.id for j in backend.recover_expired(everything, lease_ttl_s=30)] == ["a"]
    backend.retry(["a"])
    (second,) = claim(backend)
    assert not backend.finish(first, ok(), None)  # the lost worker reports late
    assert backend.get_job("a").state is S.PROCESSING
    assert backend.finish(second, ok(), None)
    assert backend.get_job("a").state is S.COMPLETED


def test_recovery_fails_expired_leases_as_worker_lost(backend: Backend) -> None:
    backend.enqueue([spec(id="a", max_retries=1), spec(id="b", max_retries=0)])
    claim(backend, 2, ttl=0.05)
    time.sleep(0.15)
    seen: list[tuple[str, str | None]] = []

    def note(job: models.Job, host: str | None, session: str | None) -> bool:
        seen.append((job.id, host))
        return True

    recovered = backend.recover_expired(note, lease_ttl_s=30)
    assert sorted(j.id for j in recovered) == ["a", "b"]
    assert sorted(seen) == [("a", HOST), ("b", HOST)]
    a, b = backend.get_job("a"), backend.get_job("b")
    assert a.state is S.FAILED and a.last_error == "worker lost"
    assert b.state is S.DEAD and b.last_error == "worker lost"
    assert backend.runs("a")[0].outcome == "lost"
    assert backend.recover_expired(everything, lease_ttl_s=30) == []


def everything(job: models.Job, host: str | None, session: str | None) -> bool:
    return True  # a sweeper that may recover every expired lease


def test_recovery_leaves_the_leases_its_judge_refuses_and_sees_the_runs_session(
    backend: Backend,
) -> None:
    """The sweeper decides per job (recovery.Reaper: its owner may be alive and holding its
    result); what it refuses stays processing, untouched, for a later sweep. It is told the
    session tag the owner's heartbeat recorded for the running attempt."""
    backend.enqueue([spec(id="a"), spec(id="b")])
    a, _b = claim(backend, 2, ttl=0.05)
    worker = models.WorkerInfo(id="w0", host=HOST, pid=1, queues=())
    backend.heartbeat([worker], [models.RunningJob(a, session="4242:99")], lease_ttl_s=0.05)
    time.sleep(0.15)
    seen: dict[str, str | None] = {}

    def only_b(job: models.Job, host: str | None, session: str | None) -> bool:
        seen[job.id] = session
        return job.id == "b"

    assert [j.id for j in backend.recover_expired(only_b, lease_ttl_s=30)] == ["b"]
    assert seen == {"a": "4242:99", "b": None}
    assert backend.get_job("a").state is S.PROCESSING
    assert backend.finish(a, ok(), None)  # its owner was alive after all: its result stands
    assert backend.get_job("a").state is S.COMPLETED
    backend.retry(["b"])
    (_again,) = claim(backend, ttl=0.05)
    time.sleep(0.15)  # a new attempt starts with no session until a heartbeat names one
    seen.clear()
    backend.recover_expired(only_b, lease_ttl_s=30)
    assert seen == {"b": None}


def _in_thread(call: Any, *args: Any, **kw: Any) -> Any:
    """Run `call` on another thread and wait at most 5 s: a call that needs a lock the
    caller holds (SQLite's write lock, a Postgres row lock) would not return in time."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call(*args, **kw)), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), f"{call.__name__} waited for the sweeper's locks"
    return result[0]


def test_recovery_reaps_outside_any_transaction_and_what_happens_meanwhile_wins(
    backend: Backend,
) -> None:
    """recover_expired calls `reap` (a /proc scan, kills) holding no transaction: a renewal,
    a finish or another sweep can write meanwhile, and the recovery then re-checks each
    chosen job: still processing, under the same lease token, still expired."""
    backend.enqueue([spec(id="renewed"), spec(id="finished"), spec(id="again"), spec(id="lost")])
    jobs = {j.id: j for j in claim(backend, 4, ttl=0.05)}
    time.sleep(0.15)
    worker = models.WorkerInfo(id="w0", host=HOST, pid=1, queues=())

    def judge(job: models.Job, host: str | None, session: str | None) -> bool:
        if job.id == "renewed":  # its owner was alive after all and renews its lease
            running = [models.RunningJob(jobs["renewed"])]
            control = _in_thread(backend.heartbeat, [worker], running, lease_ttl_s=30)
            assert "renewed" not in control.lost
        elif job.id == "finished":  # its owner reports its result late, but in time
            assert _in_thread(backend.finish, jobs["finished"], ok(), None)
        elif job.id == "again":  # another sweeper recovers it, and a worker claims it again
            swept = _in_thread(backend.recover_expired, only_again, lease_ttl_s=30)
            assert [j.id for j in swept] == ["again"]
            _in_thread(backend.retry, ["again"])
            (claimed,) = _in_thread(claim, backend, 1, ("default",), 0.01)
            assert claimed.id == "again"
            time.sleep(0.05)  # expired again, under a new lease token
        return True

    def only_again(job: models.Job, host: str | None, session: str | None) -> bool:
        return job.id == "again"

    recovered = backend.recover_expired(judge, lease_ttl_s=30)
    assert [j.id for j in recovered] == ["lost"]
    assert backend.get_job("renewed").state is S.PROCESSING
    assert backend.get_job("finished").state is S.COMPLETED
    again = backend.get_job("again")
    assert again.state is S.PROCESSING and again.lease_token == jobs["again"].lease_token + 1
    assert backend.get_job("lost").state is S.FAILED
    assert backend.get_job("lost").last_error == "worker lost"


def _raw(backend: Backend, sql: str) -> None:
    """One statement straight through the backend's connector (no pre-checks, no ON
    CONFLICT): what the driver reports is translated by the connector alone."""
    with cast(Any, backend).c.transaction() as session:
        handle = getattr(session, "cur", None) or session.conn
        handle.execute(sql)


def test_a_unique_violation_means_the_same_error_on_both_dialects(backend: Backend) -> None:
    backend.enqueue([spec(id="a"), spec(id="b")])
    with pytest.raises(errors.DuplicateJob, match="duplicate job id"):
        _raw(backend, "UPDATE queuectl_jobs SET id = 'a' WHERE id = 'b'")
    for name in ("tick", "tock"):
        backend.add_schedule(models.Schedule(name=name, cron="* * * * *", command="true"))
    with pytest.raises(errors.DuplicateSchedule, match="already exists"):
        _raw(backend, "UPDATE queuectl_schedules SET name = 'tick' WHERE name = 'tock'")
    with pytest.raises(errors.DuplicateSchedule, match="'tick' already exists"):
        backend.add_schedule(models.Schedule(name="tick", cron="* * * * *", command="true"))
    with pytest.raises(errors.DuplicateJob, match="'a' already exists"):
        backend.enqueue([spec(id="a")])
    with pytest.raises(errors.DuplicateJob, match="'b' already exists"):
        backend.enqueue_bulk([spec(id="c"), spec(id="b")])
    assert sorted(j.id for j in backend.list_jobs()) == ["a", "b"]


def test_a_ttl_bounds_the_wait_for_a_first_start_only(backend: Backend) -> None:
    """A job whose TTL passes while it waits out a retry's backoff already ran: the
    policy's retries are still its own (it used to end dead 'expired before it ran')."""
    soon = models.utcnow() + timedelta(seconds=0.3)
    backend.enqueue(
        [
            spec(id="ran", max_retries=3, expires_at=soon, priority=1),
            spec(id="never", expires_at=soon),
        ]
    )
    (ran,) = claim(backend)
    assert backend.finish(ran, failed(1), timedelta(seconds=30))
    time.sleep(0.4)
    assert backend.expire_jobs() == 1
    assert backend.get_job("never").state is S.DEAD
    waiting = backend.get_job("ran")
    assert (
        waiting.state is S.FAILED and waiting.attempts == 1 and waiting.last_error == "exit code 1"
    )
    backend.retry(["ran"])  # due now: it is claimed, not expired
    (again,) = claim(backend)
    assert again.id == "ran" and again.attempts == 2


def test_heartbeat_renews_leases_and_reports_control(backend: Backend) -> None:
    backend.enqueue([spec(id="a"), spec(id="b")])
    a, b = claim(backend, 2, ttl=0.5)
    workers = [models.WorkerInfo(id=w, host=HOST, pid=1, queues=()) for w in ("w0", "w1")]
    running = [models.RunningJob(a, output="so far", output_bytes=6), models.RunningJob(b)]
    control = backend.heartbeat(workers, running, lease_ttl_s=30)
    assert control == models.WorkerControl()
    time.sleep(0.6)
    assert backend.recover_expired(everything, lease_ttl_s=30) == []  # renewed
    assert backend.runs("a")[0].output == "so far"
    backend.cancel("b")
    assert backend.request_stop(lease_ttl_s=30) == ["w0", "w1"]
    stale = dataclasses.replace(a, lease_token=99)
    control = backend.heartbeat(workers, [models.RunningJob(stale), running[1]], lease_ttl_s=30)
    assert control.stop and control.cancel == {"b"} and control.lost == {"a"}


def test_workers_are_listed_while_their_heartbeat_is_fresh(backend: Backend) -> None:
    w = models.WorkerInfo(id="w0", host=HOST, pid=42, queues=("a", "b"))
    backend.heartbeat([w], [], lease_ttl_s=30)
    (listed,) = backend.list_workers(lease_ttl_s=30)
    assert (listed.id, listed.host, listed.pid, listed.queues) == ("w0", HOST, 42, ("a", "b"))
    assert listed.heartbeat_age_s is not None and listed.heartbeat_age_s < 5
    time.sleep(0.2)
    assert backend.list_workers(lease_ttl_s=0.1) == []  # stale = not alive
    assert backend.stats(lease_ttl_s=30).workers == 1
    backend.deregister_workers(["w0"])
    assert backend.list_workers(lease_ttl_s=30) == []


def test_stats_count_workers_that_went_silent_without_a_goodbye(backend: Backend) -> None:
    """What the QueuectlWorkerDown alert reads: slots past their lease that never
    deregistered (killed); a clean exit deregisters and is not counted."""
    silent = models.WorkerInfo(id="w-killed", host=HOST, pid=1, queues=())
    polite = models.WorkerInfo(id="w-stopped", host=HOST, pid=2, queues=())
    backend.heartbeat([silent, polite], [], lease_ttl_s=30)
    assert (backend.stats(lease_ttl_s=30).workers, backend.stats(lease_ttl_s=30).lost_workers) == (
        2,
        0,
    )
    backend.deregister_workers(["w-stopped"])
    time.sleep(0.3)
    stats = backend.stats(lease_ttl_s=0.2)
    assert (stats.workers, stats.busy_workers, stats.lost_workers) == (0, 0, 1)
    assert stats.to_json()["lost_workers"] == 1


def test_cancel_transitions(backend: Backend) -> None:
    backend.enqueue([spec(id="p"), spec(id="r"), spec(id="d")])
    assert backend.cancel("p").state is S.CANCELLED
    running = [j for j in claim(backend, 2)]
    assert {j.id for j in running} == {"r", "d"}
    requested = backend.cancel("r")
    assert requested.state is S.PROCESSING and requested.cancel_requested
    d = next(j for j in running if j.id == "d")
    backend.finish(d, ok(), None)
    with pytest.raises(errors.InvalidTransition):
        backend.cancel("d")
    with pytest.raises(errors.JobNotFound):
        backend.cancel("nope")


def test_retry_rules_and_all_or_nothing(backend: Backend) -> None:
    backend.enqueue([spec(id="p"), spec(id="x", max_retries=0, priority=1)])
    with pytest.raises(errors.InvalidTransition):
        backend.retry(["p"])
    (x,) = claim(backend, 1)
    backend.finish(x, failed(), None)
    assert backend.get_job("x").state is S.DEAD
    with pytest.raises(errors.InvalidTransition):
        backend.retry(["x", "p"])  # one bad id: nothing changes
    assert backend.get_job("x").state is S.DEAD
    with pytest.raises(errors.JobNotFound):
        backend.retry(["x", "missing"])
    (again,) = backend.retry(["x"], dead_only=True)
    assert again.state is S.PENDING and again.attempts == 0 and again.max_retries == 0
    with pytest.raises(errors.InvalidTransition):
        backend.retry(["p"], dead_only=True)


def test_dlq_retry_all_and_purge(backend: Backend) -> None:
    backend.enqueue([spec(id=f"d{i}", max_retries=0) for i in range(3)] + [spec(id="keep")])
    for job in claim(backend, 3):
        backend.finish(job, failed(), None)
    assert backend.stats(lease_ttl_s=30).dlq == 3
    assert backend.retry_all_dead() == 3
    for job in claim(backend, 4):
        backend.finish(job, failed(), None) if job.id != "keep" else None
    assert backend.purge_dead() == 3
    assert [j.id for j in backend.list_jobs()] == ["keep"]


def test_runs_keep_numbering_across_a_dlq_retry(backend: Backend) -> None:
    backend.enqueue([spec(id="a", max_retries=0)])
    (job,) = claim(backend)
    backend.finish(job, failed(), None)
    backend.retry(["a"], dead_only=True)
    (job,) = claim(backend)
    assert job.attempts == 1
    backend.finish(job, ok(), None)
    assert [(r.attempt, r.outcome) for r in backend.runs("a")] == [(1, "failed"), (2, "succeeded")]


def test_interrupted_job_goes_back_to_pending(backend: Backend) -> None:
    backend.enqueue([spec(id="a")])
    (job,) = claim(backend)
    interrupted = models.Outcome(models.OutcomeKind.INTERRUPTED, error="interrupted")
    assert backend.finish(job, interrupted, None)
    assert backend.get_job("a").state is S.PENDING
    assert [j.id for j in claim(backend)] == ["a"]


def test_list_jobs_filters_newest_first(backend: Backend) -> None:
    backend.enqueue([spec(id="a"), spec(id="b", queue="q"), spec(id="c")])
    backend.cancel("c")
    assert [j.id for j in backend.list_jobs()] == ["c", "b", "a"]
    assert [j.id for j in backend.list_jobs(state=S.PENDING)] == ["b", "a"]
    assert [j.id for j in backend.list_jobs(queue="q")] == ["b"]
    assert [j.id for j in backend.list_jobs(limit=1)] == ["c"]


def test_stats_counts_by_state_and_queue(backend: Backend) -> None:
    backend.enqueue([spec(), spec(), spec(queue="mail")])
    claim(backend, 1)
    stats = backend.stats(lease_ttl_s=30)
    assert stats.by_state == {"pending": 2, "processing": 1}
    assert stats.by_queue == {"default": {"pending": 1, "processing": 1}, "mail": {"pending": 1}}
    assert stats.to_json()["total"] == 3


def test_settings_persist_and_shape_the_policy(backend: Backend) -> None:
    assert backend.policy() == models.Policy()
    backend.set_setting("backoff-base", "3")
    backend.set_setting("backoff-base", "5")
    assert backend.get_settings() == {"backoff-base": "5"}
    assert backend.policy().backoff_base == 5.0


def test_missing_job_is_not_found(backend: Backend) -> None:
    with pytest.raises(errors.JobNotFound):
        backend.get_job("nope")
    with pytest.raises(errors.JobNotFound):
        backend.runs("nope")


def test_run_samples_cover_finished_attempts_in_the_window(backend: Backend) -> None:
    backend.enqueue([spec(id="a"), spec(id="b", queue="mail", max_retries=0), spec(id="c")])
    a, b, c = claim(backend, 3)
    time.sleep(0.05)
    backend.finish(a, ok(), None)
    backend.finish(b, failed(), None)
    samples = backend.run_samples(since_s=60)
    assert sorted((s.queue, s.outcome) for s in samples) == [
        ("default", "succeeded"),
        ("mail", "failed"),
    ]  # c still runs: not a sample yet
    assert all(0.04 < s.run_s < 5 and 0 <= s.wait_s < 5 for s in samples)
    assert [s.queue for s in backend.run_samples(since_s=60, queue="mail")] == ["mail"]
    time.sleep(0.2)
    assert backend.run_samples(since_s=0.1) == []
    del c


def test_list_jobs_searches_and_pages_with_a_cursor(backend: Backend) -> None:
    backend.enqueue([spec(f"echo item-{i}", id=f"j{i}") for i in range(7)])
    backend.enqueue([spec("tar czf backup.tgz /data", id="backup")])
    assert [j.id for j in backend.list_jobs(search="backup.tgz")] == ["backup"]
    assert [j.id for j in backend.list_jobs(search="j3")] == ["j3"]  # an exact id
    assert [j.id for j in backend.list_jobs(search="50%_")] == []  # no LIKE wildcards
    first = backend.list_jobs(limit=3)
    assert [j.id for j in first] == ["backup", "j6", "j5"]
    second = backend.list_jobs(limit=3, before=first[-1].id)
    assert [j.id for j in second] == ["j4", "j3", "j2"]
    assert [j.id for j in backend.list_jobs(limit=3, before="j0")] == []


def test_a_fleet_takes_turns_at_the_recovery_sweep(backend: Backend) -> None:
    """Postgres: one sweep per period across every worker, whoever asks; the settings'
    version changes with a setting. SQLite (one host): every worker sweeps, version unknown."""
    first, version = backend.sweep_turn("w1", every_s=0.3)
    assert first
    if backend.single_host:
        assert version is None
        assert backend.sweep_turn("w2", every_s=0.3) == (True, None)
        return
    assert backend.sweep_turn("w2", every_s=0.3) == (False, version)
    assert backend.sweep_turn("w1", every_s=0.3)[0] is False  # nor the last sweeper, early
    time.sleep(0.4)
    assert backend.sweep_turn("w2", every_s=0.3) == (True, version)
    assert backend.sweep_turn("w3", every_s=0.3)[0] is False
    backend.set_setting("backoff-base", "3")
    assert backend.sweep_turn("w3", every_s=0.3)[1] != version


@pytest.mark.integration
def test_sweep_turns_race_to_one_winner_per_period(pg_url: str) -> None:
    """Postgres only (SQLite has no turns): six processes' connections ask at once."""
    from queuectl.backends import open_backend

    winners: list[str] = []
    others = [open_backend(pg_url) for _ in range(6)]
    barrier = threading.Barrier(len(others))

    def ask(b: Backend, name: str) -> None:
        barrier.wait()
        if b.sweep_turn(name, every_s=30)[0]:
            winners.append(name)

    try:
        threads = [threading.Thread(target=ask, args=(b, f"w{i}")) for i, b in enumerate(others)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        for b in others:
            b.close()
    assert len(winners) == 1, winners


@pytest.mark.integration
def test_a_wake_up_says_its_queue_and_how_many_jobs_fell_due(pg_url: str) -> None:
    """Postgres only: SQLite workers watch the file's commit counter, with no payload."""
    import contextlib

    import psycopg

    from queuectl.backends import open_backend

    with (
        contextlib.closing(open_backend(pg_url)) as backend,
        psycopg.connect(pg_url, autocommit=True) as conn,
    ):
        conn.execute("LISTEN queuectl_wake")
        backend.enqueue([spec(queue="mail"), spec(queue="mail"), spec(queue="sms")])
        backend.enqueue([spec(queue="mail", run_at=models.utcnow() + timedelta(hours=1))])
        got = sorted(n.payload for n in conn.notifies(timeout=1.0))
    assert got == ["mail 2", "sms 1"]  # the delayed job wakes nobody now
