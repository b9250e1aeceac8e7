"""Unit tests of the worker's parts without a database: the executors (real /bin/sh) and the
lease keeper's fence and heartbeat answers (a stand-in backend that only heartbeats)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import structlog

from queuectl import allowlist, config, errors, models
from queuectl.backends.base import Backend
from queuectl.executors import NoopExecutor, ShellExecutor
from queuectl.leases import LeaseKeeper
from queuectl.observe import NULL_METRICS
from queuectl.recovery import Connectivity
from queuectl.slots import Slot, Slots
from tests.unit.factories import make_job

K = models.OutcomeKind
SETTINGS = config.Settings(database_url="unused", heartbeat_s=0.5, lease_ttl_s=2.0)
POLICY = models.Policy()
LOG = structlog.get_logger("test")


def test_the_shell_executor_runs_the_command_with_the_jobs_environment() -> None:
    shell = ShellExecutor(SETTINGS, environ={"PATH": "/usr/bin:/bin"}, lifeline=False)
    job = make_job(command='echo "$QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT"; exit 3', attempts=2)
    attempt = shell.prepare(job, POLICY)
    assert not isinstance(attempt, models.Outcome)
    assert attempt.start() is None
    outcome = attempt.wait()
    assert (outcome.kind, outcome.exit_code, outcome.output) == (K.FAILED, 3, "job-1 2\n")


def test_the_pinned_allow_list_refuses_whatever_the_database_allows() -> None:
    shell = ShellExecutor(
        dataclasses.replace(SETTINGS, allowed_commands=("echo *",)), lifeline=False
    )
    refused = shell.prepare(make_job(command="rm -rf /tmp/x"), POLICY)
    assert isinstance(refused, models.Outcome)
    assert refused.kind is K.REFUSED
    assert refused.error == f"{allowlist.REFUSED} (pinned on this worker)"
    assert "it was not run" in refused.output
    assert shell.refusal("echo hi", POLICY) is None


def test_the_databases_allow_list_refuses_too() -> None:
    shell = ShellExecutor(SETTINGS, lifeline=False)
    narrow = dataclasses.replace(POLICY, allowed_commands=("true",))
    refused = shell.prepare(make_job(command="false"), narrow)
    assert isinstance(refused, models.Outcome)
    assert (refused.kind, refused.error) == (K.REFUSED, allowlist.REFUSED)


def test_the_noop_executor_succeeds_without_running_anything() -> None:
    noop = NoopExecutor()
    assert noop.inline
    outcome = noop.prepare(make_job(command="exit 1"), POLICY)
    assert isinstance(outcome, models.Outcome)
    assert (outcome.kind, outcome.exit_code) == (K.SUCCEEDED, 0)


class Beats:
    """A backend that only heartbeats: answers with `control`, or raises `error`."""

    def __init__(self, *, single_host: bool) -> None:
        self.single_host = single_host
        self.notifies = False
        self.control = models.WorkerControl()
        self.error: Exception | None = None
        self.sent: list[list[str]] = []

    def heartbeat(
        self,
        workers: Sequence[models.WorkerInfo],
        running: Sequence[models.RunningJob],
        *,
        lease_ttl_s: float,
    ) -> models.WorkerControl:
        self.sent.append([r.job.id for r in running])
        if self.error is not None:
            raise self.error
        return self.control

    def listen(self, on_notify: Any, stop: threading.Event, *, on_error: Any = None) -> bool:
        return False  # as SQLite: no notifications


class Recorded:
    """An attempt that only records what was done to it."""

    session_tag = None

    def __init__(self) -> None:
        self.kills: list[tuple[str, models.OutcomeKind]] = []

    def start(self) -> str | None:
        return None

    def wait(self, *, on_tick: Any = None) -> models.Outcome:
        raise AssertionError("not in these tests")

    def kill(self, reason: models.OutcomeKind) -> None:
        self.kills.append(("kill", reason))

    def force_kill(self, reason: models.OutcomeKind) -> None:
        self.kills.append(("force_kill", reason))

    def pause(self) -> None:
        self.kills.append(("pause", K.INTERRUPTED))

    def resume(self) -> None:
        self.kills.append(("resume", K.INTERRUPTED))

    def output_if_changed(self) -> tuple[str, int] | None:
        return None


def keeper(
    backend: Beats, *, unwritten: Sequence[models.Job] = ()
) -> tuple[LeaseKeeper, Slot, Recorded, list[str]]:
    """A keeper over one running job (renewed just now), and what it asked the worker."""
    slots = Slots(["w-1", "w-2"])
    slot = Slot(make_job(id="running"), renewed_at=time.monotonic())
    attempt = Recorded()
    slots.add(slot)
    slots.attach(slot, attempt)
    asked: list[str] = []
    kept = LeaseKeeper(
        cast(Backend, backend),
        SETTINGS,
        slots=slots,
        workers=[],
        connectivity=Connectivity(max_gap_s=1.0),
        unwritten=lambda: list(unwritten),
        on_stop=lambda: asked.append("stop"),
        recover=lambda: asked.append("recover"),
        metrics=NULL_METRICS,
        log=LOG,
    )
    return kept, slot, attempt, asked


def test_a_heartbeat_renews_running_and_unwritten_jobs_and_relays_stop_and_cancel() -> None:
    backend = Beats(single_host=False)
    kept, slot, attempt, asked = keeper(backend, unwritten=[make_job(id="written-soon")])
    slot.renewed_at = 0.0
    backend.control = models.WorkerControl(stop=True, cancel=frozenset({"running"}))
    kept.beat()
    assert backend.sent == [["running", "written-soon"]]
    assert slot.renewed_at > 0.0
    assert asked == ["stop"]
    assert attempt.kills == [("kill", K.CANCELLED)]  # gracefully: SIGTERM, then the grace


def test_a_lease_recovered_elsewhere_kills_the_local_copy_at_once() -> None:
    backend = Beats(single_host=False)
    kept, slot, attempt, _ = keeper(backend)
    backend.control = models.WorkerControl(lost=frozenset({"running"}))
    before = slot.renewed_at
    kept.beat()
    assert attempt.kills == [("force_kill", K.LOST)]  # no grace: it may run elsewhere now
    assert slot.renewed_at == before  # a lost lease is not renewed
    slot.exited = True  # a job that already exited may have written its result: no kill
    attempt.kills.clear()
    kept.beat()
    assert attempt.kills == []


def test_the_fence_kills_a_job_whose_lease_was_not_renewed_for_almost_a_lease() -> None:
    backend = Beats(single_host=False)
    kept, slot, attempt, _ = keeper(backend)
    kept.fence(slot, LOG)
    assert attempt.kills == []  # renewed just now
    slot.renewed_at = time.monotonic() - kept.fence_s - 0.1
    kept.fence(slot, LOG)
    assert attempt.kills == [("force_kill", K.LOST)]


def test_on_sqlite_a_failed_renewal_blocks_everyone_so_the_fence_waits() -> None:
    backend = Beats(single_host=True)
    kept, slot, attempt, _ = keeper(backend)
    backend.error = errors.BackendUnavailable("database is locked")
    kept.beat()
    slot.renewed_at = time.monotonic() - kept.fence_s - 0.1
    kept.fence(slot, LOG)
    assert attempt.kills == []  # nobody could recover it either
    backend.error = None
    kept.beat()  # the lock is back: renewed, and the fence has nothing to do
    kept.fence(slot, LOG)
    assert attempt.kills == []
    postgres = Beats(single_host=False)
    kept_pg, slot_pg, attempt_pg, _ = keeper(postgres)
    postgres.error = errors.BackendUnavailable("down")
    kept_pg.beat()
    slot_pg.renewed_at = time.monotonic() - kept_pg.fence_s - 0.1
    kept_pg.fence(slot_pg, LOG)  # Postgres cannot tell an outage from a cut-off worker
    assert attempt_pg.kills == [("force_kill", K.LOST)]


def test_suspension_pauses_jobs_and_resumes_them_after_one_heartbeat() -> None:
    backend = Beats(single_host=False)
    kept, slot, attempt, _ = keeper(backend)
    kept.before_suspend()
    slot.renewed_at = time.monotonic() - kept.fence_s - 0.1
    kept.fence(slot, LOG)  # stopped: the lease aged, but the heartbeat after SIGCONT decides
    assert attempt.kills == [("pause", K.INTERRUPTED)]
    kept.after_resume()
    assert backend.sent == [["running"]]
    assert attempt.kills[-1][0] == "resume"
    assert slot.renewed_at > time.monotonic() - 1


def test_the_heartbeat_thread_beats_on_its_own_and_stops_on_close() -> None:
    backend = Beats(single_host=False)
    kept, _, _, _ = keeper(backend)
    kept.start(on_job_notice=lambda queue: None)
    deadline = time.monotonic() + 5
    while len(backend.sent) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kept.close()
    assert not any(t.is_alive() for t in kept._threads)
