"""Unit tests of queuectl.ids: new_id (short, unique, time-sortable) and is_valid."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from queuectl import ids

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase
CROCKFORD = set(ALPHABET)
MS = 1_780_000_000_000  # a fixed wall-clock millisecond


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the ids made by earlier tests, and put the real state back afterwards."""
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_last_rand", 0)


def _fake_clock(monkeypatch: pytest.MonkeyPatch, *millis: int) -> None:
    ticks: Iterator[int] = iter(millis)
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: next(ticks) * 1_000_000))


def _fake_random(monkeypatch: pytest.MonkeyPatch, value: int) -> None:
    monkeypatch.setattr(ids, "_random30", lambda: value)


def test_new_id_is_16_lowercase_crockford_characters():
    job_id = ids.new_id()
    assert len(job_id) == 16
    assert set(job_id) <= CROCKFORD


def test_new_id_is_valid():
    assert ids.is_valid(ids.new_id())


def test_ten_thousand_ids_are_unique_and_sorted_in_creation_order():
    made = [ids.new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)


def test_id_starts_with_the_millisecond_clock(monkeypatch, fresh_state):
    _fake_clock(monkeypatch, MS, MS + 1)
    first, second = ids.new_id(), ids.new_id()
    assert first[:10] != second[:10]
    # decode the 10-character clock prefix back to the millisecond
    value = 0
    for ch in first[:10]:
        value = value * 32 + ALPHABET.index(ch)
    assert value == MS


def test_ids_from_a_later_millisecond_sort_after_earlier_ones(monkeypatch, fresh_state):
    _fake_clock(monkeypatch, MS, MS + 1)
    _fake_random(monkeypatch, (1 << 30) - 1)  # the largest random part first
    first = ids.new_id()
    _fake_random(monkeypatch, 0)  # the smallest one next
    second = ids.new_id()
    assert first < second


def test_ids_in_the_same_millisecond_count_up(monkeypatch, fresh_state):
    _fake_clock(monkeypatch, MS, MS, MS)
    _fake_random(monkeypatch, 100)
    made = [ids.new_id() for _ in range(3)]
    assert made == sorted(made)
    assert len(set(made)) == 3
    assert {m[:10] for m in made} == {made[0][:10]}


def test_ids_stay_ordered_when_the_clock_steps_back(monkeypatch, fresh_state):
    _fake_clock(monkeypatch, MS, MS - 5_000, MS - 4_000)
    _fake_random(monkeypatch, 100)
    made = [ids.new_id() for _ in range(3)]
    assert made == sorted(made)
    assert len(set(made)) == 3


def test_ids_in_the_same_millisecond_stay_ordered_when_the_random_part_is_at_its_maximum(
    monkeypatch, fresh_state
):
    # new_id() counts the 30-bit random part up within one millisecond; from the largest
    # value it wraps to 0, so the second id must still sort after the first
    _fake_clock(monkeypatch, MS, MS)
    _fake_random(monkeypatch, (1 << 30) - 1)
    first, second = ids.new_id(), ids.new_id()
    assert first != second
    assert first < second


@pytest.mark.parametrize(
    "job_id",
    ["a", "job-1", "A-Z_0.9:x", "nightly.backup:2026-01-31", "x" * 128, "0123456789abcdef"],
)
def test_is_valid_accepts_ids_of_the_allowed_characters(job_id):
    assert ids.is_valid(job_id)


@pytest.mark.parametrize(
    "job_id",
    ["", "a b", "x" * 129, "a/b", "job\n", "\njob", "tab\there", "é", "a*", "id#1", " job"],
)
def test_is_valid_rejects_bad_ids(job_id):
    assert not ids.is_valid(job_id)


def _reference(ms: int, rand: int) -> str:
    """The encoding spelled out digit by digit: 10 clock digits, then 6 counter digits."""
    return "".join(ALPHABET[(ms >> (5 * i)) & 31] for i in reversed(range(10))) + "".join(
        ALPHABET[(rand >> (5 * i)) & 31] for i in reversed(range(6))
    )


@pytest.mark.parametrize("rand", [0, 1, 31, 32, 1023, 1024, 123_456_789, (1 << 30) - 1])
def test_new_id_encodes_clock_and_counter_in_crockford_base32(monkeypatch, fresh_state, rand):
    _fake_clock(monkeypatch, MS)
    _fake_random(monkeypatch, rand)
    assert ids.new_id() == _reference(MS, rand)


def test_new_ids_counts_up_and_borrows_the_next_millisecond_past_the_counters_end(
    monkeypatch, fresh_state
):
    _fake_clock(monkeypatch, MS)
    _fake_random(monkeypatch, (1 << 30) - 2)
    made = ids.new_ids(4)
    assert made == [
        _reference(MS, (1 << 30) - 2),
        _reference(MS, (1 << 30) - 1),
        _reference(MS + 1, 0),
        _reference(MS + 1, 1),
    ]


def test_a_batch_and_the_ids_after_it_are_unique_and_in_order():
    made = ids.new_ids(50_000) + [ids.new_id() for _ in range(10)] + ids.new_ids(10)
    assert len(set(made)) == len(made)
    assert made == sorted(made)
