"""Identifiers: ULIDs, sortable by creation time."""

from __future__ import annotations

import os
import threading
import time

_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base32, the ULID alphabet."""

_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]
"""Two digits for each 10 bits: a ULID's 26 digits (130 bits, the top two zero) are 13 pairs."""

_SHIFTS = range(120, -1, -10)

RANDOM_BITS = 80
"""A ULID is 48 bits of milliseconds then 80 random bits."""


class _Generator:
    """Makes this process's ULIDs; each one is above the one before (the ULID spec's
    monotonic generator, which also keeps the order when the wall clock steps back)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last >> RANDOM_BITS:
                self._last += 1
            else:
                self._last = ms << RANDOM_BITS | int.from_bytes(os.urandom(RANDOM_BITS // 8), "big")
            return self._last


_generator = _Generator()


def new_id() -> str:
    """A new ULID string (26 characters, time-sortable, increasing within this process)."""
    value = _generator.next()
    return "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])
