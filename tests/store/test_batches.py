"""The group-commit batcher shared by PostgreSQL journal writes and finishes."""

from __future__ import annotations

import asyncio

import pytest

from inferpipe.core.errors import LeaseLost
from inferpipe.store.postgres.batches import MAX_IN_FLIGHT, Batches


async def test_writes_that_arrive_during_a_batch_go_together_in_the_next() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        await gate.wait()
        return [i * 10 for i in items]

    b: Batches[int, int] = Batches(write, max_batch=3)
    calls = [asyncio.create_task(b.submit(i)) for i in range(8)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(8)]
    assert sorted(i for batch in batches for i in batch) == list(range(8))
    assert all(len(batch) <= 3 for batch in batches)
    assert len(batches) == 3  # 8 items, at most 3 a batch, MAX_IN_FLIGHT writers
    assert MAX_IN_FLIGHT == 2


async def test_an_item_refused_fails_alone_and_a_failed_batch_fails_every_caller() -> None:
    async def write(items: list[str]) -> list[str | BaseException]:
        if "down" in items:
            raise OSError("server gone")
        return [LeaseLost(i) if i == "stale" else i for i in items]

    b: Batches[str, str] = Batches(write, max_batch=10)
    ok, stale = await asyncio.gather(b.submit("ok"), b.submit("stale"), return_exceptions=True)
    assert ok == "ok" and isinstance(stale, LeaseLost)
    with pytest.raises(OSError):
        await b.submit("down")
    assert await b.submit("after") == "after"  # the batcher carries on
