"""Flow control through the Client and the backend (DESIGN §8), on both backends: pause,
limits, dependencies, unique keys, wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from queuectl import Client, errors, models

Outcome = models.Outcome
OK = models.OutcomeKind.SUCCEEDED


@pytest.fixture
def q(db_url: str) -> Iterator[Client]:
    with Client(db_url) as client:
        yield client


def claim(q: Client, n: int = 1, queues: tuple[str, ...] = ()) -> list[models.Job]:
    slots = [f"slot-{i}-{time.monotonic_ns()}" for i in range(n)]
    return q.backend.claim(slots, list(queues), host="test-host", lease_ttl_s=30)


def finish(q: Client, job: models.Job, kind: models.OutcomeKind = OK) -> None:
    outcome = Outcome(kind, exit_code=0 if kind is OK else 1, error=None if kind is OK else "x")
    assert q.backend.finish(job, outcome, None)


def state(q: Client, job_id: str) -> str:
    return str(q.get(job_id).state)


# --- dependencies ---------------------------------------------------------------------------


def test_a_job_after_two_others_waits_for_both_to_complete(q: Client) -> None:
    a = q.enqueue("true", id="a")
    b = q.enqueue("true", id="b")
    c = q.enqueue("true", id="c", after=["a", "b"])
    assert c.state == "blocked"
    assert [j.id for j in claim(q, 4)] == ["a", "b"]  # a blocked job is never claimed
    finish(q, q.get("a"))
    assert state(q, "c") == "blocked"  # b is still running
    finish(q, q.get("b"))
    assert state(q, "c") == "pending"
    assert [j.id for j in claim(q, 4)] == ["c"]
    deps = q.dependencies("c")
    assert [(d.side, d.id, d.state) for d in deps] == [
        ("after", "a", "completed"),
        ("after", "b", "completed"),
    ]
    assert [(d.side, d.id) for d in q.dependencies("a")] == [("dependent", "c")]
    assert a.state == b.state == "pending"


def test_a_dead_dependency_cancels_its_dependents_transitively(q: Client) -> None:
    q.enqueue("false", id="a", max_retries=0)
    q.enqueue("true", id="b", after=["a"])
    q.enqueue("true", id="c", after=["b"])
    q.enqueue("true", id="other")
    (a,) = claim(q, 1)
    finish(q, a, models.OutcomeKind.FAILED)
    assert state(q, "a") == "dead"
    b, c = q.get("b"), q.get("c")
    assert (b.state, b.last_error) == ("cancelled", "dependency a dead")
    assert (c.state, c.last_error) == ("cancelled", "dependency b cancelled")
    assert state(q, "other") == "pending"


def test_cancelling_a_dependency_cancels_dependents_and_retry_blocks_them_again(
    q: Client,
) -> None:
    q.enqueue("true", id="a")
    q.enqueue("true", id="b", after=["a"])
    q.cancel("a")
    assert (q.get("b").state, q.get("b").last_error) == ("cancelled", "dependency a cancelled")
    again = q.retry("b")
    assert again.state == "blocked"  # a is still cancelled: b waits for it again
    q.retry("a")
    (a,) = claim(q, 2)
    assert a.id == "a"
    finish(q, a)
    assert state(q, "b") == "pending"


def test_enqueue_after_finished_jobs_is_pending_or_cancelled_at_once(q: Client) -> None:
    q.enqueue("true", id="done")
    finish(q, claim(q)[0])
    q.enqueue("true", id="gone")
    q.cancel("gone")
    assert q.enqueue("true", after=["done"]).state == "pending"
    late = q.enqueue("true", after=["done", "gone"])
    assert (late.state, late.last_error) == ("cancelled", "dependency gone cancelled")


def test_cancel_of_a_blocked_job_cascades(q: Client) -> None:
    q.enqueue("true", id="a")
    q.enqueue("true", id="b", after=["a"])
    q.enqueue("true", id="c", after=["b"])
    assert q.cancel("b").state == "cancelled"
    assert (q.get("c").state, q.get("c").last_error) == ("cancelled", "dependency b cancelled")
    assert state(q, "a") == "pending"


def test_unknown_or_self_dependency_inserts_nothing(q: Client) -> None:
    q.enqueue("true", id="a")
    with pytest.raises(errors.JobNotFound):
        q.enqueue("true", id="x", after=["a", "nope"])
    with pytest.raises(errors.UsageError, match="itself"):
        q.enqueue("true", id="y", after=["y"])
    assert [j.id for j in q.list()] == ["a"]
    assert q.dependencies("a") == []


def test_a_batch_line_may_depend_on_an_earlier_line_not_a_later_one(q: Client) -> None:
    jobs = q.enqueue_many(
        [
            {"id": "first", "command": "true"},
            {"id": "second", "command": "true", "after": ["first"]},
            {"id": "third", "command": "true", "after": ["first", "second"]},
        ]
    )
    assert [j.state for j in jobs] == ["pending", "blocked", "blocked"]
    for job_id in ("first", "second"):
        (job,) = claim(q)
        assert job.id == job_id
        finish(q, job)
    assert state(q, "third") == "pending"
    with pytest.raises(errors.UsageError, match="not a later one"):
        q.enqueue_many(
            [{"id": "p", "command": "true", "after": ["r"]}, {"id": "r", "command": "true"}]
        )
    assert {j.id for j in q.list()} == {"first", "second", "third"}


def test_the_settle_sweep_unblocks_when_a_dependency_was_purged(q: Client) -> None:
    q.enqueue("true", id="a")
    q.enqueue("true", id="b", after=["a"])
    q.cancel("a")
    q.retry("b")  # blocked again on a, which is cancelled: on purpose, so the sweep
    assert state(q, "b") == "blocked"  # leaves it to wait for a's retry
    assert q.backend.settle_blocked() == 0
    q.retry("a")
    finish(q, claim(q)[0])
    assert state(q, "b") == "pending"
    # a purged dependency holds nothing back
    q.enqueue("false", id="d", max_retries=0, queue="other")
    q.enqueue("true", id="e", after=["d"])
    (d,) = claim(q, 1, ("other",))
    finish(q, d, models.OutcomeKind.FAILED)
    q.retry("e")
    assert state(q, "e") == "blocked"
    assert q.dlq_purge() == 1  # d, dead
    assert q.dependencies("e") == []
    assert q.backend.settle_blocked() == 1
    assert state(q, "e") == "pending"


# --- unique keys ----------------------------------------------------------------------------


def test_a_unique_key_held_by_an_unfinished_job_inserts_nothing(q: Client) -> None:
    first = q.enqueue("echo 1", unique_key="nightly")
    again = q.enqueue("echo 2", unique_key="nightly")
    assert (again.id, again.conflict, first.conflict) == (first.id, True, False)
    assert len(q.list()) == 1
    (job,) = claim(q)
    assert q.enqueue("echo 3", unique_key="nightly").id == first.id  # processing holds it
    finish(q, job)
    fresh = q.enqueue("echo 4", unique_key="nightly")  # completed: free again
    assert fresh.id != first.id and not fresh.conflict
    assert q.enqueue("x", unique_key="nightly", unique_for="1h").id == fresh.id
    q.cancel(fresh.id)
    # finished within the window: still held with unique_for, free without
    assert q.enqueue("x", unique_key="nightly", unique_for="1h").id == fresh.id
    assert q.enqueue("x", unique_key="nightly").id not in {first.id, fresh.id}


def test_unique_keys_within_one_batch(q: Client) -> None:
    jobs = q.enqueue_many(
        [
            {"id": "u1", "command": "true", "unique_key": "k"},
            {"id": "u2", "command": "true", "unique_key": "k"},
            {"command": "true", "after": ["u2"]},
        ]
    )
    assert [j.id for j in jobs[:2]] == ["u1", "u1"]
    assert [j.conflict for j in jobs] == [False, True, False]
    assert [d.id for d in q.dependencies(jobs[2].id)] == ["u1"]  # u2 is u1
    assert {j.id for j in q.list()} == {"u1", jobs[2].id}


def test_two_threads_racing_one_unique_key_insert_one_job(db_url: str) -> None:
    rounds, inserted = 30, []
    clients = [Client(db_url), Client(db_url)]
    try:
        for c in clients:
            c.ping()
        for r in range(rounds):
            barrier = threading.Barrier(2)
            results: list[models.Job] = []

            def go(
                c: Client,
                r: int = r,
                barrier: threading.Barrier = barrier,
                results: list[models.Job] = results,
            ) -> None:
                barrier.wait()
                results.append(c.enqueue("true", unique_key=f"race-{r}"))

            threads = [threading.Thread(target=go, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len({j.id for j in results}) == 1, results
            inserted.append(sum(not j.conflict for j in results))
        assert inserted == [1] * rounds
        assert len(clients[0].list(limit=1000)) == rounds
    finally:
        for c in clients:
            c.close()


# --- queues ---------------------------------------------------------------------------------


def test_a_paused_queue_is_not_claimed_while_others_run_on(q: Client) -> None:
    q.pause_queues(["mail"])
    q.pause_queues(["mail"])  # idempotent
    q.enqueue("true", id="m", queue="mail")
    q.enqueue("true", id="d")
    assert [j.id for j in claim(q, 4)] == ["d"]
    assert claim(q, 4, ("mail",)) == []
    assert not q.backend.has_work(["mail"])  # a burst worker does not wait for it
    q.resume_queues(["mail", "never-seen"])  # idempotent, also for a queue without jobs
    assert [j.id for j in claim(q, 4)] == ["m"]
    assert [c.name for c in q.backend.queue_controls()] == []  # no settings left: no rows


def test_a_concurrency_limit_caps_processing_jobs_of_its_queue(q: Client) -> None:
    q.set_queue("api", concurrency=2)
    for i in range(5):
        q.enqueue("true", id=f"api{i}", queue="api")
    q.enqueue("true", id="free")
    got = claim(q, 8)
    assert sorted(j.id for j in got) == ["api0", "api1", "free"]
    assert claim(q, 8) == []
    finish(q, got[0] if got[0].queue == "api" else got[1])
    assert [j.id for j in claim(q, 8)] == ["api2"]
    q.set_queue("api", concurrency=None)
    assert len(claim(q, 8)) == 2
    (api,) = [x for x in q.queues() if x["name"] == "api"]
    assert (api["concurrency"], api["running"]) == (None, 4)


def test_a_lowered_limit_holds_new_claims_until_running_jobs_end(q: Client) -> None:
    q.set_queue("api", concurrency=3)
    for _ in range(6):
        q.enqueue("true", queue="api")
    running = claim(q, 6)
    assert len(running) == 3
    q.set_queue("api", concurrency=1)
    finish(q, running[0])
    assert claim(q, 6) == []  # 2 still running > 1
    finish(q, running[1])
    assert claim(q, 6) == []
    finish(q, running[2])
    assert len(claim(q, 6)) == 1


def test_a_rate_limit_caps_starts_per_window(q: Client) -> None:
    q.set_queue("mail", rate="3/2s")
    for _ in range(8):
        q.enqueue("true", queue="mail")
    started = time.monotonic()
    first = claim(q, 8)
    assert len(first) == 3
    for job in first:
        finish(q, job)  # finishing does not free a rate slot
    assert claim(q, 8) == []
    while time.monotonic() - started < 2.2:
        time.sleep(0.05)
    assert len(claim(q, 8)) == 3
    (mail,) = q.queues()
    assert mail["rate"] == "3/2s"


def test_queue_settings_reject_bad_values_and_change_nothing(q: Client) -> None:
    for bad in ({"concurrency": -1}, {"concurrency": "x"}, {"rate": "0/1m"}):
        with pytest.raises(errors.UsageError):
            q.set_queue("api", **bad)
    for bad_rate in ("5/potato", "5", "five/1s", "1/0s"):
        with pytest.raises(errors.UsageError):
            q.set_queue("api", rate=bad_rate)
    with pytest.raises(errors.UsageError):
        q.set_queue("bad queue", concurrency=1)
    with pytest.raises(errors.UsageError):
        q.set_queue("api")
    assert q.backend.queue_controls() == []


# --- wait -----------------------------------------------------------------------------------


def test_wait_returns_when_another_connection_finishes_the_job(db_url: str) -> None:
    with Client(db_url) as q, Client(db_url) as other:
        job = q.enqueue("true")
        (claimed,) = claim(other)

        def later() -> None:
            time.sleep(0.4)
            finish(other, claimed)

        t = threading.Thread(target=later)
        t.start()
        started = time.monotonic()
        (done,) = q.wait([job.id], timeout="20s")
        took = time.monotonic() - started
        t.join()
        assert done.state == "completed"
        assert 0.35 < took < 1.5  # woken by the finish, not by a multi-second poll
        with pytest.raises(errors.WaitTimeout) as timed_out:
            q.wait([q.enqueue("true").id], timeout=0.3)
        assert timed_out.value.exit_code == 124


def test_with_a_queue_held_claims_go_queue_by_queue_in_claim_order(q: Client) -> None:
    q.enqueue_many([{"command": "true", "queue": "bulk"} for _ in range(50)])
    q.pause_queues(["bulk"])
    q.set_queue("api", concurrency=1)
    q.enqueue("true", id="low", queue="a", priority=1)
    q.enqueue("true", id="high", queue="b", priority=5)
    q.enqueue("true", id="api1", queue="api")
    q.enqueue("true", id="api2", queue="api")
    # every queue: the active ones per queue, merged in priority order; one of the limited
    assert [j.id for j in claim(q, 3)] == ["high", "low", "api1"]
    q.enqueue("true", id="c1", queue="c")
    assert [j.id for j in claim(q, 3, ("bulk", "c", "api"))] == ["c1"]  # api is at its limit
    assert claim(q, 3, ("bulk",)) == []


def test_the_settle_sweep_finishes_a_cascade_a_crash_lost(q: Client) -> None:
    """A dependency that died after its dependent last changed, with no follow-up (the
    worker was killed between the two transactions): the sweep cancels the dependent."""
    q.enqueue("true", id="a")
    q.enqueue("true", id="b", after=["a"])
    q.enqueue("true", id="c", after=["b"])
    # a's end written alone, as a crash between the finish and its follow-up leaves it
    with q.backend.c.transaction() as s:  # type: ignore[attr-defined]
        s.run("cancel_now", {"ids": q.backend.c.param_ids(["a"])})  # type: ignore[attr-defined]
    assert state(q, "b") == "blocked"
    assert q.backend.settle_blocked() == 1  # b (c follows in b's cascade)
    assert q.get("b").last_error == "dependency a cancelled"
    assert q.get("c").last_error == "dependency b cancelled"
