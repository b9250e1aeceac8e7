"""The Worker in this process, on SQLite and on PostgreSQL: real shell commands, real rows.

Each test drives a Worker (run(burst=True), or run() on a thread it then stops) and reads
back what the database holds. The worker has a backend of its own, as its process would;
the test reads and writes through the `backend` fixture."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from queuectl import config, models
from queuectl.backends import open_backend
from queuectl.backends.base import Backend
from queuectl.executors import Attempt, Executor, NoopExecutor, ShellExecutor
from queuectl.worker import Worker

S = models.JobState
K = models.OutcomeKind
HOST = "testhost"
# quick beats, so that a cancel or stop lands within a fraction of a second
SETTINGS = config.Settings(
    database_url="unused",
    hostname=HOST,
    heartbeat_s=0.2,
    lease_ttl_s=5.0,
    recovery_every_s=60.0,
    poll_interval_s=0.2,
    kill_grace_s=0.5,
)


@pytest.fixture
def worker_backend(backend: Backend) -> Iterator[Backend]:
    """The worker's own connection(s) to the test's database."""
    pooled = backend.url.startswith("postgres")
    with contextlib.closing(open_backend(backend.url, pool_size=4 if pooled else 0)) as b:
        yield b


@pytest.fixture
def make_worker(worker_backend: Backend) -> Callable[..., Worker]:
    def make(
        executor: Executor | None = None, settings: config.Settings = SETTINGS, **kw: Any
    ) -> Worker:
        return Worker(
            worker_backend,
            settings,
            executor=executor or ShellExecutor(settings, lifeline=False),
            **kw,
        )

    return make


class InThread:
    """`worker.run()` on a thread, as the CLI runs it on the main one."""

    def __init__(self, worker: Worker, *, burst: bool = False) -> None:
        self.worker = worker
        self.done: int | None = None
        self.thread = threading.Thread(target=self._run, args=(burst,), daemon=True)
        self.thread.start()

    def _run(self, burst: bool) -> None:
        self.done = self.worker.run(burst=burst)

    def join(self, timeout: float = 15.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not exit"
        assert self.done is not None
        return self.done


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def enqueue(backend: Backend, command: str, **kw: Any) -> models.Job:
    (job,) = backend.enqueue([models.JobSpec(command=command, **kw)])
    return job


def state(backend: Backend, job_id: str) -> models.JobState:
    return backend.get_job(job_id).state


def test_burst_runs_every_due_job_of_its_queues_and_exits(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    ours = [enqueue(backend, "true", queue="q") for _ in range(3)]
    theirs = enqueue(backend, "true", queue="other")
    started = time.monotonic()
    assert make_worker(count=2, queues=["q"]).run(burst=True) == 3
    assert time.monotonic() - started < 5
    for job in ours:
        done = backend.get_job(job.id)
        assert (done.state, done.exit_code, done.attempts) == (S.COMPLETED, 0, 1)
    assert state(backend, theirs.id) is S.PENDING
    assert backend.list_workers(lease_ttl_s=30) == []  # deregistered on the way out


def test_a_failure_backs_off_then_goes_dead_when_retries_are_spent(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    job = enqueue(backend, "echo oops; exit 3", max_retries=1)
    run = InThread(make_worker(), burst=True)
    wait_for(lambda: backend.get_job(job.id).attempts == 1 and state(backend, job.id) is S.FAILED)
    waiting = backend.get_job(job.id)
    # backoff-base 2 ^ 1 attempt = 2 s, from the failure
    assert waiting.last_error == "exit code 3" and waiting.exit_code == 3
    assert 1.0 < (waiting.run_at - models.utcnow()).total_seconds() <= 2.0
    assert run.join() == 2  # burst waits out the backoff: a retry is work left
    dead = backend.get_job(job.id)
    assert (dead.state, dead.attempts, dead.exit_code) == (S.DEAD, 2, 3)
    first, second = backend.runs(job.id)
    assert first.outcome == second.outcome == str(K.FAILED)
    assert "oops" in first.output
    assert first.finished_at is not None
    assert (second.started_at - first.finished_at).total_seconds() >= 1.9


def test_a_job_past_its_timeout_is_killed_and_recorded_as_timed_out(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    job = enqueue(backend, "sleep 30", timeout_s=0.3, max_retries=0)
    started = time.monotonic()
    assert make_worker().run(burst=True) == 1
    assert time.monotonic() - started < 5  # SIGTERM ends `sleep` at once
    dead = backend.get_job(job.id)
    assert dead.state is S.DEAD and dead.last_error == "timed out after 0.3s"
    assert backend.runs(job.id)[0].outcome == str(K.TIMED_OUT)


def test_a_cancel_reaches_the_running_job_through_the_heartbeat(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    job = enqueue(backend, "sleep 30")
    run = InThread(make_worker(), burst=True)
    wait_for(lambda: state(backend, job.id) is S.PROCESSING)
    asked = time.monotonic()
    assert backend.cancel(job.id).cancel_requested
    assert run.join() == 1
    assert time.monotonic() - asked < 5  # a beat (0.2 s), then SIGTERM
    cancelled = backend.get_job(job.id)
    assert cancelled.state is S.CANCELLED
    assert backend.runs(job.id)[0].outcome == str(K.CANCELLED)


class Gate:
    """An executor whose attempts run until the test opens the gate, then succeed."""

    inline = False

    def __init__(self) -> None:
        self.gate = threading.Event()

    def open(self, log: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def prepare(self, job: models.Job, policy: models.Policy) -> Attempt | models.Outcome:
        return _GatedAttempt(self.gate)


class _GatedAttempt:
    session_tag = None

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def start(self) -> str | None:
        return None

    def wait(self, *, on_tick: Callable[[], None] | None = None) -> models.Outcome:
        assert self.gate.wait(15)
        return models.Outcome(K.SUCCEEDED, exit_code=0)

    def kill(self, reason: models.OutcomeKind) -> None:
        raise AssertionError(f"killed: {reason}")

    force_kill = kill

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def output_if_changed(self) -> tuple[str, int] | None:
        return None


def test_a_late_finish_after_the_lease_moved_on_changes_nothing(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    # leases of 0.3 s that no heartbeat renews (the first beat is 30 s away): this worker
    # stalls past its lease while its job runs
    stalled = dataclasses.replace(SETTINGS, lease_ttl_s=0.3, heartbeat_s=30.0)
    gate = Gate()
    job = enqueue(backend, "true")
    run = InThread(make_worker(gate, settings=stalled), burst=True)
    wait_for(lambda: state(backend, job.id) is S.PROCESSING)
    time.sleep(0.4)
    # another process's sweep recovers the job, and another worker claims it again
    assert [j.id for j in backend.recover_expired(lambda *_: True, lease_ttl_s=30)] == [job.id]
    backend.retry([job.id])
    (again,) = backend.claim(["elsewhere-1-1"], (), host="elsewhere", lease_ttl_s=30)
    gate.gate.set()  # the stalled copy finishes, and reports late
    assert run.join() == 1
    row = backend.get_job(job.id)
    assert (row.state, row.worker_id, row.lease_token, row.attempts) == (
        S.PROCESSING,
        "elsewhere-1-1",
        again.lease_token,
        2,
    )
    assert [r.outcome for r in backend.runs(job.id)] == [str(K.LOST), None]


def test_one_stop_drains_and_a_second_releases_running_jobs_uncounted(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    quick = enqueue(backend, "sleep 1", priority=1)
    slow = enqueue(backend, "sleep 30")
    waiting = enqueue(backend, "true", priority=-1)
    worker = make_worker(count=2)
    run = InThread(worker)
    wait_for(lambda: state(backend, quick.id) is state(backend, slow.id) is S.PROCESSING)
    worker.signal_received()  # SIGTERM: no more claims, running jobs go on
    wait_for(lambda: state(backend, quick.id) is S.COMPLETED)
    assert state(backend, slow.id) is S.PROCESSING
    assert run.thread.is_alive()
    worker.signal_received()  # the second: kill them, hand them back
    assert run.join() == 2  # results written: the quick job's and the released one's
    released = backend.get_job(slow.id)
    assert (released.state, released.attempts) == (S.PENDING, 0)  # not a failure of the job
    assert backend.runs(slow.id)[0].outcome == str(K.INTERRUPTED)
    assert state(backend, waiting.id) is S.PENDING  # never claimed after the first stop
    assert backend.list_workers(lease_ttl_s=30) == []


def test_a_job_lost_by_a_dead_worker_of_this_host_is_recovered_at_start(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid no process has now: the worker that held the job is gone
    job = enqueue(backend, "true", max_retries=0)
    backend.claim([f"{HOST}-{dead.pid}-1"], (), host=HOST, lease_ttl_s=0.1)
    time.sleep(0.2)
    assert make_worker().run(burst=True) == 0
    lost = backend.get_job(job.id)
    assert (lost.state, lost.last_error) == (S.DEAD, "worker lost")


def test_the_noop_executor_completes_jobs_without_running_them(
    backend: Backend, make_worker: Callable[..., Worker]
) -> None:
    jobs = backend.enqueue([models.JobSpec(command="exit 1") for _ in range(20)])
    assert make_worker(NoopExecutor(), count=4).run(burst=True) == 20
    for job in jobs:
        done = backend.get_job(job.id)
        assert (done.state, done.exit_code, done.attempts) == (S.COMPLETED, 0, 1)


def test_a_notice_wakes_a_worker_by_its_queue_and_its_eagerness(
    make_worker: Callable[..., Worker],
) -> None:
    """Not run: the notice handler alone. Other queues never wake it; a payload without a
    count (a reconnect, '*') always does; one job wakes it with its eagerness as the chance,
    which a lost race halves (down to 1/32) and a won one doubles; a burst of COUNT jobs
    wakes it at COUNT times that."""
    worker = make_worker(queues=("mail",))
    woken = worker._wake
    worker._on_job_notice("sms 5")
    assert not woken.is_set()
    for payload in ("", "*", "mail"):
        woken.clear()
        worker._on_job_notice(payload)
        assert woken.is_set(), payload
    worker._eagerness = 1 / 32
    hits = 0
    for _ in range(640):
        woken.clear()
        worker._on_job_notice("mail 1")
        hits += woken.is_set()
    assert 3 <= hits <= 50, hits  # about 20 of 640 (sd 4.4)
    woken.clear()
    worker._on_job_notice("mail 32")  # 32 jobs: 32 x 1/32, certain
    assert woken.is_set()
    assert worker._backlog  # a freed slot will claim, woken or not
