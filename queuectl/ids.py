"""Job ids: short, unique, time-sortable (48-bit ms clock + 30-bit counter, Crockford base32)."""

import os
import re
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# two base32 digits per lookup: an id is 8 lookups, and a bulk enqueue makes 100k of them
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_COUNTER_END = 1 << 30
VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _random30() -> int:
    # os.urandom, not secrets: the same kernel source without importing hashlib and hmac
    return int.from_bytes(os.urandom(4), "big") >> 2


def _clock(ms: int) -> str:
    """The 10-character clock part: 48 bits in 50, the top digit always 0."""
    pairs = _PAIRS
    return (
        _ALPHABET[(ms >> 45) & 31]
        + pairs[(ms >> 35) & 1023]
        + pairs[(ms >> 25) & 1023]
        + pairs[(ms >> 15) & 1023]
        + pairs[(ms >> 5) & 1023]
        + _ALPHABET[ms & 31]
    )


def new_ids(count: int) -> list[str]:
    """`count` ids in creation order, each 16 characters; ids made in one process in the
    same millisecond still sort in order."""
    global _last_ms, _last_rand
    pairs = _PAIRS
    out: list[str] = []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # same (or a stepped-back) millisecond: count up so order and uniqueness hold
            ms, rand = _last_ms, _last_rand + 1
        else:
            rand = _random30()
        prefix = _clock(ms)
        for _ in range(count):
            if rand >= _COUNTER_END:  # past the counter's end, borrow the next millisecond
                ms, rand = ms + 1, 0
                prefix = _clock(ms)
            out.append(prefix + pairs[rand >> 20] + pairs[(rand >> 10) & 1023] + pairs[rand & 1023])
            rand += 1
        _last_ms, _last_rand = ms, rand - 1
    return out


def new_id() -> str:
    """16 characters; ids made in one process in the same millisecond still sort in order."""
    return new_ids(1)[0]


def is_valid(job_id: str) -> bool:
    return VALID_ID.fullmatch(job_id) is not None
