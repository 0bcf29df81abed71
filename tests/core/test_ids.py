"""Run and event ids: ULIDs (Crockford base32 of 48 bits of milliseconds, 80 random bits)."""

from __future__ import annotations

import itertools
import threading
import time

from inferpipe.core.ids import new_id

DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(ulid: str) -> int:
    value = 0
    for digit in ulid:
        value = value * 32 + DIGITS.index(digit)
    return value


def test_an_id_is_a_ulid_of_now() -> None:
    before_ms = time.time_ns() // 1_000_000
    ulid = new_id()
    after_ms = time.time_ns() // 1_000_000
    assert len(ulid) == 26 and set(ulid) <= set(DIGITS)
    assert ulid[0] in "01234567"  # 130 bits of digits, the top two zero
    assert before_ms <= decode(ulid) >> 80 <= after_ms


def test_ids_made_one_after_another_increase() -> None:
    ids = [new_id() for _ in range(20_000)]  # many in each millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    same_ms = [b for a, b in itertools.pairwise(ids) if decode(a) >> 80 == decode(b) >> 80]
    assert same_ms, "no two ids in one millisecond: the monotonic case went untested"


def test_ids_from_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [ulid for ids in made for ulid in ids]
    assert len(set(every)) == len(every)
    assert all(ids == sorted(ids) for ids in made)
