"""Opaque, time-ordered string ids (``acc_01J…``) so lists sort by creation and cursors are just the last id."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """``prefix_`` + 10 chars of milliseconds + 12 chars of randomness (60 bits)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(8), "big") >> 4
    return f"{prefix}_{_b32(millis, 10)}{_b32(rand, 12)}"
