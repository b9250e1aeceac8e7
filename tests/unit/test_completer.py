"""Unit tests of queuectl.completer: batching, backlog, outage retries and giving up.

The backend is a stand-in with only `finish_many`, scripted to fail: these test the
completer's own rules, not a database (tests/contract/test_worker.py writes real rows)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import cast

import pytest

from queuectl import completer, errors, models
from queuectl.backends.base import Backend
from queuectl.completer import Completer
from tests.unit.factories import make_job


class Script:
    """`finish_many` that records every batch, raises what `fail` returns for it (None: no
    error), and waits on `gate` before answering."""

    def __init__(self, fail: Callable[[int], Exception | None] = lambda call: None) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def finish_many(self, items: Sequence[models.Finish]) -> list[bool]:
        self.calls.append([f.job.id for f in items])
        self.gate.wait(10)
        if (exc := self.fail(len(self.calls))) is not None:
            raise exc
        return [not f.job.id.startswith("stale") for f in items]


class Written:
    def __init__(self) -> None:
        self.items: list[tuple[str, bool]] = []
        self.db_errors = 0
        self.done = threading.Event()
        self.expected = 0

    def __call__(self, item: models.Finish, applied: bool) -> None:
        self.items.append((item.job.id, applied))
        if len(self.items) >= self.expected:
            self.done.set()

    def error(self) -> None:
        self.db_errors += 1


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(completer, "_RETRY_MAX_S", 0.01)  # the outage waits, cut short


@pytest.fixture
def written() -> Written:
    return Written()


@pytest.fixture
def make(written: Written) -> Iterator[Callable[..., Completer]]:
    made: list[Completer] = []

    def build(script: Script, flush_s: float = completer.FLUSH_S) -> Completer:
        c = Completer(
            cast(Backend, script),
            on_written=written,
            on_db_error=written.error,
            flush_s=flush_s,
        )
        made.append(c)
        return c

    yield build
    for c in made:
        c.close(timeout_s=5)


def finish(job_id: str, retry_in: timedelta | None = None) -> models.Finish:
    return models.Finish(
        make_job(id=job_id), models.Outcome(models.OutcomeKind.SUCCEEDED, exit_code=0), retry_in
    )


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_results_submitted_together_are_written_in_one_batch(
    make: Callable[..., Completer], written: Written
) -> None:
    script = Script()
    c = make(script, flush_s=0.2)  # the first result waits this long for company
    written.expected = 3
    for i in range(3):
        c.submit(finish(f"j{i}"))
    assert written.done.wait(5)
    assert script.calls == [["j0", "j1", "j2"]]
    assert written.items == [("j0", True), ("j1", True), ("j2", True)]
    assert c.pending == 0 and c.unwritten() == []


def test_a_result_the_database_refuses_is_reported_not_applied(
    make: Callable[..., Completer], written: Written
) -> None:
    written.expected = 2
    c = make(Script())
    c.submit(finish("stale-lease"))
    c.submit(finish("fresh"))
    assert written.done.wait(5)
    assert dict(written.items) == {"stale-lease": False, "fresh": True}


def test_a_backlog_is_held_as_unwritten_and_written_in_bounded_batches(
    make: Callable[..., Completer], written: Written
) -> None:
    script = Script()
    script.gate.clear()  # the first write hangs: everything after it piles up
    c = make(script)
    total = completer.MAX_BATCH * 2 + 100
    written.expected = total
    c.submit(finish("first"))
    wait_for(lambda: len(script.calls) == 1)
    for i in range(total - 1):
        c.submit(finish(f"j{i}"))
    # what waits to be written keeps its lease: the worker's heartbeat renews these
    assert c.pending == total
    assert {j.id for j in c.unwritten()} == {"first", *(f"j{i}" for i in range(total - 1))}
    script.gate.set()
    assert written.done.wait(10)
    assert [len(b) for b in script.calls] == [1, completer.MAX_BATCH, completer.MAX_BATCH, 99]
    assert len(written.items) == total and all(ok for _, ok in written.items)
    assert c.pending == 0


def test_an_outage_is_retried_until_the_write_succeeds(
    make: Callable[..., Completer], written: Written
) -> None:
    outage = threading.Event()
    outage.set()
    script = Script(lambda call: errors.BackendUnavailable("down") if outage.is_set() else None)
    c = make(script)
    written.expected = 1
    c.submit(finish("a"))
    # more tries than a refused batch gets: an outage is never given up on
    wait_for(lambda: len(script.calls) > 2 * completer._TRIES)
    during = c.failing  # the worker claims nothing meanwhile
    assert during
    assert [j.id for j in c.unwritten()] == ["a"]
    assert written.items == []
    outage.clear()
    assert written.done.wait(5)
    assert written.items == [("a", True)]
    assert not c.failing
    assert written.db_errors >= 2 * completer._TRIES


def test_a_batch_refused_for_another_reason_is_given_up_after_five_tries(
    make: Callable[..., Completer], written: Written
) -> None:
    script = Script(lambda call: errors.BackendError("constraint failed"))
    c = make(script)
    c.submit(finish("a"))
    wait_for(lambda: c.pending == 0)
    time.sleep(0.1)  # no sixth try comes
    assert script.calls == [["a"]] * 5
    assert written.items == []  # left to recovery: its lease will expire
    assert not c.failing
    c.submit(finish("b"))  # the completer lives on
    wait_for(lambda: c.pending == 0)
    assert script.calls[5] == ["b"]


def test_close_writes_everything_submitted_first(
    make: Callable[..., Completer], written: Written
) -> None:
    script = Script()
    c = make(script, flush_s=1.0)
    for i in range(5):
        c.submit(finish(f"j{i}"))
    started = time.monotonic()
    assert c.close(timeout_s=5)
    assert time.monotonic() - started < 0.9  # closing does not wait out the flush
    assert [i for i, _ in written.items] == [f"j{i}" for i in range(5)]


def test_close_says_so_when_results_stay_unwritten(
    make: Callable[..., Completer], written: Written
) -> None:
    outage = threading.Event()
    outage.set()
    script = Script(lambda call: errors.BackendUnavailable("down") if outage.is_set() else None)
    c = make(script)
    c.submit(finish("a"))
    assert not c.close(timeout_s=0.3)
    assert [j.id for j in c.unwritten()] == ["a"]
    outage.clear()  # let the thread finish, not retry for the rest of the session
    wait_for(lambda: c.pending == 0)
