"""Job ids: short, unique, time-sortable (48-bit ms clock + 30-bit counter, Crockford base32)."""

import re
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id() -> str:
    """16 characters; ids made in one process in the same millisecond still sort in order."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # same (or a stepped-back) millisecond: count up so order and uniqueness hold;
            # past the counter's end, borrow the next millisecond
            ms, rand = _last_ms, _last_rand + 1
            if rand >= 1 << 30:
                ms, rand = ms + 1, 0
        else:
            rand = secrets.randbits(30)
        _last_ms, _last_rand = ms, rand
    return _b32(ms, 10) + _b32(rand, 6)


def is_valid(job_id: str) -> bool:
    return VALID_ID.fullmatch(job_id) is not None
