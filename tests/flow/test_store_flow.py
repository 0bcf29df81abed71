"""Flow control in the store itself: limits enforced inside the claim transaction, state that
survives a restart, and the fair order of the queue."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from inferpipe.core.records import FlowPace, NewRun, RunFlow, RunStatus
from inferpipe.store.base import Outcome
from inferpipe.store.sqlite import SQLiteStore

NOW = 1_700_000_000_000
LEASE_MS = 10_000
_ids = itertools.count(1)


def run(*, key: str | None = None, limit: int = 1, **flow: object) -> NewRun:
    concurrency = ((key, limit),) if key else ()
    plan = RunFlow(concurrency=concurrency, fair_key=key, **flow)  # type: ignore[arg-type]
    return NewRun(f"run{next(_ids):06d}", "f", [], [], NOW, flow=plan)


async def opened(path: Path) -> SQLiteStore:
    store = SQLiteStore(path)
    await store.open()
    return store


async def test_concurrent_claims_never_exceed_a_key_limit(tmp_path: Path) -> None:
    store = await opened(tmp_path / "db")
    await store.create_runs([run(key="k", limit=3) for _ in range(20)], NOW)
    batches = await asyncio.gather(
        *(store.claim(f"w{i}", ["f"], 5, NOW, LEASE_MS) for i in range(8))
    )
    assert sum(len(b) for b in batches) == 3
    (first, *_) = [c for b in batches for c in b]
    await store.finish(first.lease, Outcome(RunStatus.COMPLETED), [], NOW)
    assert len(await store.claim("w9", ["f"], 5, NOW, LEASE_MS)) == 1
    await store.close()


async def test_limits_survive_a_restart(tmp_path: Path) -> None:
    store = await opened(tmp_path / "db")
    pace = FlowPace("rate:f", 1, 3_600_000)
    held_run, blocked, paced = run(key="k"), run(key="k"), run(rate_limit=pace)
    await store.create_runs([held_run, blocked, paced], NOW)
    (held,) = await store.claim("w1", ["f"], 1, NOW, LEASE_MS)
    assert held.run.id == held_run.id
    await store.close()

    store = await opened(tmp_path / "db")  # a new process on the same file
    again = run(rate_limit=pace)
    await store.create_runs([again], NOW + 1)
    skipped = await store.get_run(again.id)
    assert skipped is not None and skipped.status is RunStatus.SKIPPED  # the hit was kept
    claimed = await store.claim("w2", ["f"], 10, NOW + 1, LEASE_MS)
    # the key's slot is still held by the run claimed before the restart
    assert [c.run.id for c in claimed] == [paced.id]
    waiting = await store.get_run(blocked.id)
    assert waiting is not None and waiting.status is RunStatus.QUEUED
    assert waiting.status_reason == "waiting for a concurrency slot: k has 1 running"
    # after its lease expires the held run is taken over; it still holds the slot
    later = NOW + LEASE_MS + 1
    taken = await store.claim("w3", ["f"], 10, later, LEASE_MS)
    assert [c.run.id for c in taken] == [held.run.id]
    await store.close()


async def test_a_throttled_run_keeps_its_reserved_start(tmp_path: Path) -> None:
    store = await opened(tmp_path / "db")
    pace = FlowPace("throttle:f", 1, 1000)
    runs = [run(throttle=pace) for _ in range(3)]
    await store.create_runs(runs, NOW)
    assert [c.run.id for c in await store.claim("w", ["f"], 10, NOW, LEASE_MS)] == [runs[0].id]
    assert await store.next_ready_at(["f"]) == NOW + 1000
    await store.close()
    store = await opened(tmp_path / "db")
    await store.create_runs([run(throttle=pace)], NOW + 500)  # after the two reserved
    got = [c.run.id for c in await store.claim("w", ["f"], 10, NOW + 1000, LEASE_MS)]
    assert got == [runs[1].id]
    got = [c.run.id for c in await store.claim("w", ["f"], 10, NOW + 2000, LEASE_MS)]
    assert got == [runs[2].id]
    assert await store.next_ready_at(["f"]) == NOW + 3000
    await store.close()


async def test_a_late_key_goes_ahead_of_a_busy_keys_backlog(tmp_path: Path) -> None:
    store = await opened(tmp_path / "db")
    busy = [NewRun(f"busy{i:03d}", "f", [], [], NOW, flow=_two_limits("busy")) for i in range(50)]
    await store.create_runs(busy, NOW)
    started = await store.claim("w", ["f"], 10, NOW, LEASE_MS)  # the global limit: 2
    late = NewRun("late", "f", [], [], NOW + 5, flow=_two_limits("late"))
    await store.create_runs([late], NOW + 5)
    assert await store.claim("w", ["f"], 10, NOW + 5, LEASE_MS) == []
    order = [c.run.id for c in started]
    for claimed in started:
        await store.finish(claimed.lease, Outcome(RunStatus.COMPLETED), [], NOW + 6)
        (nxt,) = await store.claim("w", ["f"], 1, NOW + 6, LEASE_MS)
        order.append(nxt.run.id)
    await store.close()
    # first come first served would start the late key's run 51st
    assert order == ["busy000", "busy001", "busy002", "late"]


def _two_limits(key: str) -> RunFlow:
    return RunFlow(concurrency=(("fn:f", 2), (key, 2)), fair_key=key)


async def test_next_ready_at_after_a_short_claim_skips_blocked_runs(tmp_path: Path) -> None:
    store = await opened(tmp_path / "db")
    await store.create_runs([run(key="k"), run(key="k")], NOW)
    later = NewRun("later", "f", [], [], NOW + 5000)
    await store.create_runs([later], NOW)
    assert len(await store.claim("w", ["f"], 10, NOW, LEASE_MS)) == 1
    assert await store.next_ready_at(["f"]) == NOW  # the blocked run is ready
    assert await store.next_ready_at(["f"], after_ms=NOW) == NOW + 5000
    await store.close()


async def test_a_run_asked_to_cancel_is_claimed_despite_a_full_key(tmp_path: Path) -> None:
    store = await opened(tmp_path / "db")
    first, second = run(key="k"), run(key="k")
    await store.create_runs([first, second], NOW)
    assert len(await store.claim("w", ["f"], 10, NOW, LEASE_MS)) == 1
    await store.request_cancel(second.id, "no longer needed", NOW)
    (claimed,) = await store.claim("w", ["f"], 10, NOW, LEASE_MS)  # it only finalizes
    assert claimed.run.id == second.id and claimed.run.cancel_requested == "no longer needed"
    await store.close()


async def test_purge_keeps_state_that_still_decides(tmp_path: Path) -> None:
    store = await opened(tmp_path / "db")
    day_ms = 86_400_000
    pace = FlowPace("rate:f", 1, 30 * day_ms)  # a period longer than the retention
    await store.create_runs([run(rate_limit=pace, idempotency_key="idem:f:1")], NOW)
    await store.purge(NOW + 2 * day_ms)
    await store.create_runs([run(rate_limit=pace)], NOW + 2 * day_ms)
    await store.create_runs([run(idempotency_key="idem:f:1")], NOW + 2 * day_ms)
    statuses = [r.status for r in (await store.list_runs()).items]
    await store.close()
    # the rate limit still holds; the idempotency key expired after a day and was purged
    assert statuses == [RunStatus.QUEUED, RunStatus.SKIPPED, RunStatus.QUEUED]
