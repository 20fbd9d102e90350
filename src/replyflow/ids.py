"""Opaque, time-ordered string ids (``acc_01J…``) so lists sort by creation and cursors are just the last id."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_RAND_BITS = 60

_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the newest id made in this process


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 chars of milliseconds + 12 chars of randomness (60 bits).

    Monotonic within a process (as ULID's monotonic mode): an id made in the same millisecond as the previous one,
    or while the clock stepped back, continues from it (its random part plus one), so two rows written one after the
    other in the same millisecond still sort in the order they were made.
    """
    global _last
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(8), "big") >> (64 - _RAND_BITS)
    with _lock:
        last_millis, last_rand = _last
        if millis <= last_millis:
            millis, rand = last_millis, last_rand + 1
            if rand >= 1 << _RAND_BITS:
                millis, rand = last_millis + 1, 0
        _last = (millis, rand)
    return f"{prefix}_{_b32(millis, 10)}{_b32(rand, 12)}"
