"""Flow control in the store itself, on each backend: limits enforced inside the claim
transaction (exact across connections), state that survives a restart, and the fair order of
the queue."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from inferpipe.core.records import FlowBuffer, FlowPace, NewRun, RunFlow, RunStatus
from inferpipe.store.base import Outcome
from tests.flow.conftest import StoreMaker

NOW = 1_700_000_000_000
LEASE_MS = 10_000
_ids = itertools.count(1)


def run(*, key: str | None = None, limit: int = 1, **flow: Any) -> NewRun:
    concurrency = ((key, limit),) if key else ()
    plan = RunFlow(concurrency=concurrency, fair_key=key, **flow)
    return NewRun(f"run{next(_ids):06d}", "f", [], [], NOW, flow=plan)


async def test_concurrent_claims_never_exceed_a_key_limit(stores: StoreMaker) -> None:
    """Eight claims at once, on four stores (four connection pools, as four processes)."""
    views = [await stores.open() for _ in range(4)]
    store = views[0]
    await store.create_runs([run(key="k", limit=3) for _ in range(20)], NOW)
    await asyncio.gather(*(v.next_ready_at(["f"]) for v in views))  # connected: claims overlap
    batches = await asyncio.gather(
        *(views[i % 4].claim(f"w{i}", ["f"], 5, NOW, LEASE_MS) for i in range(8))
    )
    assert sum(len(b) for b in batches) == 3
    (first, *_) = [c for b in batches for c in b]
    finished = await store.finish(first.lease, Outcome(RunStatus.COMPLETED), [], NOW)
    assert finished.work_ready  # its slot is free: a run held back may start
    assert len(await store.claim("w9", ["f"], 5, NOW, LEASE_MS)) == 1


async def test_concurrent_claims_of_overlapping_keys_stay_within_every_limit(
    stores: StoreMaker,
) -> None:
    """Runs holding two keys each (a shared one and their own), claimed at once from several
    stores: no key ever runs more than its limit, and claims do not deadlock."""
    views = [await stores.open() for _ in range(3)]
    await asyncio.gather(*(v.next_ready_at(["f"]) for v in views))
    plans = [
        RunFlow(concurrency=(("fn:f", 4), (f"k{i % 5}", 1)), fair_key=f"k{i % 5}")
        for i in range(40)
    ]
    await views[0].create_runs(
        [NewRun(f"r{i:03d}", "f", [], [], NOW, flow=p) for i, p in enumerate(plans)], NOW
    )
    batches = await asyncio.gather(
        *(views[i % 3].claim(f"w{i}", ["f"], 3, NOW, LEASE_MS) for i in range(6))
    )
    taken = [c.run.id for b in batches for c in b]
    assert len(taken) == 4  # the shared key's limit
    keys = [plans[int(run_id[1:])].concurrency[1][0] for run_id in taken]
    assert len(set(keys)) == len(keys)  # one run per own key


async def test_limits_survive_a_restart(stores: StoreMaker) -> None:
    store = await stores.open()
    pace = FlowPace("rate:f", 1, 3_600_000)
    held_run, blocked, paced = run(key="k"), run(key="k"), run(rate_limit=pace)
    await store.create_runs([held_run, blocked, paced], NOW)
    (held,) = await store.claim("w1", ["f"], 1, NOW, LEASE_MS)
    assert held.run.id == held_run.id
    await store.close()

    store = await stores.open()  # a new process on the same database
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


async def test_a_throttled_run_keeps_its_reserved_start(stores: StoreMaker) -> None:
    store = await stores.open()
    pace = FlowPace("throttle:f", 1, 1000)
    runs = [run(throttle=pace) for _ in range(3)]
    await store.create_runs(runs, NOW)
    assert [c.run.id for c in await store.claim("w", ["f"], 10, NOW, LEASE_MS)] == [runs[0].id]
    assert await store.next_ready_at(["f"]) == NOW + 1000
    await store.close()
    store = await stores.open()
    await store.create_runs([run(throttle=pace)], NOW + 500)  # after the two reserved
    got = [c.run.id for c in await store.claim("w", ["f"], 10, NOW + 1000, LEASE_MS)]
    assert got == [runs[1].id]
    got = [c.run.id for c in await store.claim("w", ["f"], 10, NOW + 2000, LEASE_MS)]
    assert got == [runs[2].id]
    assert await store.next_ready_at(["f"]) == NOW + 3000


async def test_a_late_key_goes_ahead_of_a_busy_keys_backlog(stores: StoreMaker) -> None:
    store = await stores.open()
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
    # first come first served would start the late key's run 51st
    assert order == ["busy000", "busy001", "busy002", "late"]


def _two_limits(key: str) -> RunFlow:
    return RunFlow(concurrency=(("fn:f", 2), (key, 2)), fair_key=key)


async def test_next_ready_at_after_a_short_claim_skips_blocked_runs(stores: StoreMaker) -> None:
    store = await stores.open()
    await store.create_runs([run(key="k"), run(key="k")], NOW)
    later = NewRun("later", "f", [], [], NOW + 5000)
    await store.create_runs([later], NOW)
    assert len(await store.claim("w", ["f"], 10, NOW, LEASE_MS)) == 1
    assert await store.next_ready_at(["f"]) == NOW  # the blocked run is ready
    assert await store.next_ready_at(["f"], after_ms=NOW) == NOW + 5000


async def test_a_run_asked_to_cancel_is_claimed_despite_a_full_key(stores: StoreMaker) -> None:
    store = await stores.open()
    first, second = run(key="k"), run(key="k")
    await store.create_runs([first, second], NOW)
    assert len(await store.claim("w", ["f"], 10, NOW, LEASE_MS)) == 1
    await store.request_cancel(second.id, "no longer needed", NOW)
    (claimed,) = await store.claim("w", ["f"], 10, NOW, LEASE_MS)  # it only finalizes
    assert claimed.run.id == second.id and claimed.run.cancel_requested == "no longer needed"


async def test_purge_keeps_state_that_still_decides(stores: StoreMaker) -> None:
    store = await stores.open()
    day_ms = 86_400_000
    pace = FlowPace("rate:f", 1, 30 * day_ms)  # a period longer than the retention
    await store.create_runs([run(rate_limit=pace, idempotency_key="idem:f:1")], NOW)
    await store.purge(NOW + 2 * day_ms)
    await store.create_runs([run(rate_limit=pace)], NOW + 2 * day_ms)
    await store.create_runs([run(idempotency_key="idem:f:1")], NOW + 2 * day_ms)
    statuses = [r.status for r in (await store.list_runs()).items]
    # the rate limit still holds; the idempotency key expired after a day and was purged
    assert statuses == [RunStatus.QUEUED, RunStatus.SKIPPED, RunStatus.QUEUED]


async def test_concurrent_intakes_admit_each_key_exactly(stores: StoreMaker) -> None:
    """Eight intakes at once on four stores, each with a run of the same idempotency key,
    rate-limit key (3 per minute), singleton key and debounce key: one run per idempotency key,
    three within the rate, one unfinished singleton, one pending debounced run."""
    views = [await stores.open() for _ in range(4)]
    await asyncio.gather(*(v.next_ready_at(["f"]) for v in views))
    kinds: dict[str, dict[str, Any]] = {
        "idem": {"idempotency_key": "idempotency:f:o1"},
        "rate": {"rate_limit": FlowPace("rate:f", 3, 60_000)},
        "single": {"singleton_key": "singleton:f"},
        "debounce": {"buffer": FlowBuffer("debounce:f", 10_000)},
    }
    planned = {name: [run(**flow) for _ in range(8)] for name, flow in kinds.items()}
    await asyncio.gather(
        *(views[i % 4].create_runs([runs[i] for runs in planned.values()], NOW) for i in range(8))
    )
    stored = {r.id: r.status for r in (await views[0].list_runs(limit=100)).items}
    queued = {
        name: sum(stored.get(r.id) is RunStatus.QUEUED for r in runs)
        for name, runs in planned.items()
    }
    assert queued == {"idem": 1, "rate": 3, "single": 1, "debounce": 1}
    assert len(stored) == 3 * 8 + 1  # the other debounced events were folded, not recorded


async def test_a_due_throttled_run_is_not_starved_by_a_newer_backlog(stores: StoreMaker) -> None:
    """A run whose reserved start has come is claimed even when runs not reserved yet are
    ahead of it in the queue (they were created before its reserved start)."""
    store = await stores.open()
    pace = FlowPace("throttle:f", 1, 1000)
    first = [run(throttle=pace) for _ in range(2)]
    await store.create_runs(first, NOW)
    taken = await store.claim("w", ["f"], 2, NOW, LEASE_MS)
    assert [c.run.id for c in taken] == [first[0].id]  # the second starts at NOW + 1000
    await store.create_runs([run(throttle=pace) for _ in range(20)], NOW + 500)
    (due,) = await store.claim("w", ["f"], 1, NOW + 1000, LEASE_MS)
    assert due.run.id == first[1].id


async def test_runs_without_flow_control_are_claimed_in_queue_order(stores: StoreMaker) -> None:
    """Ready time minus priority, then insertion order (on PostgreSQL: the one-statement claim
    that needs no flow control check)."""
    store = await stores.open()
    late, urgent, early, tie = (f"run{next(_ids):06d}" for _ in range(4))
    runs = [
        NewRun(late, "f", [], [], NOW - 10),
        NewRun(urgent, "f", [], [], NOW, priority=5),
        NewRun(early, "f", [], [], NOW - 20),
        NewRun(tie, "f", [], [], NOW - 20),
    ]
    await store.create_runs(runs, NOW)
    claimed = await store.claim("w", ["f"], 10, NOW, LEASE_MS)
    assert [c.run.id for c in claimed] == [urgent, early, tie, late]
