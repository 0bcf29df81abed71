"""The `Store` protocol, exercised directly: every backend must pass this one suite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from inferpipe.core.errors import InvalidScoreError, LeaseLost, RunNotFoundError
from inferpipe.core.events import Event
from inferpipe.core.records import (
    ClaimedRun,
    LogRecord,
    NewRun,
    NewWait,
    RunFlow,
    RunStatus,
    StepKind,
    StepRecord,
    StepStatus,
    WaitKind,
)
from inferpipe.core.scores import ScoreRecord, ScoreSource
from inferpipe.store import payloads
from inferpipe.store.base import (
    DEDUPE_WINDOW_MS,
    Outcome,
    PlannedEvent,
    Progress,
    ProgressResult,
    RunFilter,
    ScoreFilter,
    Store,
    WakeClaim,
)
from inferpipe.store.blobs import BlobNotFoundError, FileBlobStore
from tests.store.conftest import unique_workspace

NOW = 1_700_000_000_000
LEASE_MS = 10_000
FN = "fn"

_ids = iter(range(1, 1_000_000))


def new_id(prefix: str) -> str:
    # Sortable like ULIDs, so "newest first" is the reverse of creation order.
    return f"{prefix}{next(_ids):08d}"


def planned(
    name: str, data: dict[str, Any] | None = None, *, id: str | None = None, runs: int = 0
) -> PlannedEvent:
    event = Event(name, data or {}, id=id or new_id("ev"), ts_ms=NOW)
    made = [
        NewRun(new_id("run"), FN, [event.id or ""], [event.as_dict()], NOW) for _ in range(runs)
    ]
    return PlannedEvent(event, made)


async def queued(
    store: Store, *, fn: str = FN, ready_at_ms: int = NOW, priority: int = 0, **extra: Any
) -> str:
    run = NewRun(new_id("run"), fn, [], [], ready_at_ms, priority=priority, **extra)
    await store.create_runs([run], NOW)
    return run.id


async def started(store: Store, owner: str = "w1", now_ms: int = NOW, **extra: Any) -> ClaimedRun:
    run_id = await queued(store, **extra)
    (claimed,) = await store.claim(owner, [FN], 1, now_ms, LEASE_MS)
    assert claimed.run.id == run_id
    return claimed


def step(
    run_id: str, key: str, status: StepStatus = StepStatus.COMPLETED, **extra: Any
) -> StepRecord:
    return StepRecord(run_id, key, key, StepKind.RUN, status, started_at_ms=NOW, **extra)


async def open_wait(
    store: Store,
    claimed: ClaimedRun,
    event_name: str,
    expression: str | None,
    *,
    key: str = "wait",
    expires_at_ms: int | None = None,
    lookback_ms: int | None = None,
    now_ms: int = NOW,
) -> ProgressResult:
    run_id = claimed.run.id
    wait = NewWait(run_id, WaitKind.STEP, event_name, expression, key, expires_at_ms, lookback_ms)
    record = StepRecord(
        run_id, key, key, StepKind.WAIT_FOR_EVENT, StepStatus.WAITING, wake_at_ms=expires_at_ms
    )
    return await store.commit(claimed.lease, Progress(steps=[record], waits=[wait]), now_ms)


async def step_of(store: Store, run_id: str, key: str) -> StepRecord:
    (found,) = [s for s in await store.get_steps(run_id) if s.key == key]
    return found


# events -----------------------------------------------------------------------------------


async def test_ingest_stores_events_and_drops_duplicates_within_24h(store: Store) -> None:
    first = await store.ingest([planned("a/created", {"n": 1}, id="e-1")], NOW)
    assert first.accepted == ["e-1"] and first.duplicates == []
    again = await store.ingest([planned("a/created", {"n": 2}, id="e-1", runs=1)], NOW + 1000)
    assert again.accepted == [] and again.duplicates == ["e-1"] and again.runs_created == []
    event = await store.get_event("e-1")
    assert event is not None and event["data"] == {"n": 1} and event["received_at"] == NOW

    later = NOW + DEDUPE_WINDOW_MS + 1
    after = await store.ingest([planned("a/created", {"n": 3}, id="e-1", runs=1)], later)
    assert after.accepted == ["e-1"] and len(after.runs_created) == 1
    event = await store.get_event("e-1")
    assert event is not None and event["data"] == {"n": 3}


async def test_duplicates_within_one_batch(store: Store) -> None:
    result = await store.ingest([planned("a", id="d-1"), planned("a", id="d-1")], NOW)
    assert result.accepted == ["d-1"] and result.duplicates == ["d-1"]


async def test_concurrent_intake_of_one_id_accepts_it_once(store: Store) -> None:
    results = await asyncio.gather(
        *(store.ingest([planned("tick", id="cron:f:1", runs=1)], NOW) for _ in range(6))
    )
    assert sum(len(r.accepted) for r in results) == 1
    assert sum(len(r.runs_created) for r in results) == 1
    assert len((await store.list_runs()).items) == 1


async def test_planned_events_create_their_runs(store: Store) -> None:
    item = planned("user/signed.up", {"name": "Ada"}, runs=2)
    result = await store.ingest([item], NOW)
    assert sorted(result.runs_created) == sorted(r.id for r in item.runs)
    run = await store.get_run(item.runs[0].id)
    assert run is not None and run.status is RunStatus.QUEUED and run.function_id == FN
    assert run.event_ids == [item.event.id] and run.events[0]["data"] == {"name": "Ada"}
    by_event = await store.list_runs(RunFilter(event_id=item.event.id))
    assert sorted(r.id for r in by_event.items) == sorted(result.runs_created)


async def test_list_events_pages_newest_first(store: Store) -> None:
    for i in range(5):
        await store.ingest([planned("page/e", {"i": i})], NOW + i)
    await store.ingest([planned("other/e")], NOW + 10)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        page = await store.list_events(name="page/e", limit=2, cursor=cursor)
        seen += [e["data"]["i"] for e in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [4, 3, 2, 1, 0]
    window = await store.list_events(since_ms=NOW + 1, until_ms=NOW + 3)
    assert [e["data"]["i"] for e in window.items] == [2, 1]


# waits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["async.data.ticket_id == 'tk_1'", "async.data.ticket_id == 'tk_1' && async.data.n > 1", None],
    ids=["pinned", "pinned-and-more", "no-expression"],
)
async def test_wait_resolved_by_matching_event(store: Store, expression: str | None) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "fb/received", expression)
    await store.park(claimed.lease, RunStatus.WAITING, None, NOW)
    other = "fb/received" if expression else "fb/other"
    miss = await store.ingest([planned(other, {"ticket_id": "tk_2", "n": 5})], NOW + 1)
    assert miss.waits_resolved == []
    hit_event = planned("fb/received", {"ticket_id": "tk_1", "n": 5})
    hit = await store.ingest([hit_event], NOW + 2)
    assert hit.waits_resolved == [claimed.run.id]
    run = await store.get_run(claimed.run.id)
    assert run is not None and run.status is RunStatus.QUEUED and run.ready_at_ms == NOW + 2
    resolved = await step_of(store, claimed.run.id, "wait")
    assert resolved.status is StepStatus.COMPLETED
    assert resolved.output["id"] == hit_event.event.id
    # resolved once: a second matching event finds no wait
    again = await store.ingest([planned("fb/received", {"ticket_id": "tk_1", "n": 9})], NOW + 3)
    assert again.waits_resolved == []


async def test_unpinned_expression(store: Store) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "score", "async.data.value > 0.5 || async.data.force")
    await store.park(claimed.lease, RunStatus.WAITING, None, NOW)
    assert (
        await store.ingest([planned("score", {"value": 0.1, "force": False})], NOW)
    ).waits_resolved == []
    assert (await store.ingest([planned("score", {"value": 0.9})], NOW)).waits_resolved == [
        claimed.run.id
    ]


async def test_pins_match_numbers_by_value(store: Store) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "n", "async.data.n == 1")
    result = await store.ingest([planned("n", {"n": 1.0})], NOW)
    assert result.waits_resolved == [claimed.run.id]


async def test_pins_resolve_in_a_batch_with_many_values(store: Store) -> None:
    waiting = []
    for expression in ("async.data.o.k == 'x' && async.data.b", "async.data.b == true"):
        claimed = await started(store)
        await open_wait(store, claimed, "many", expression)
        waiting.append(claimed.run.id)
    wide = {f"m{i}": i for i in range(1200)}  # more values than one lookup carries
    batch = [planned("many", wide), planned("many", {"o": {"k": "x"}, "b": True})]
    result = await store.ingest(batch, NOW)
    assert sorted(result.waits_resolved) == sorted(waiting)


@pytest.mark.parametrize(
    "expression", ["async.data.missing.deep == 1", "async.data.count > 3"], ids=["pin", "scan"]
)
async def test_expression_failing_on_missing_field_does_not_match(
    store: Store, expression: str
) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "x", expression)
    assert (await store.ingest([planned("x", {"other": 1})], NOW)).waits_resolved == []
    good = {"missing": {"deep": 1}, "count": 5}
    assert (await store.ingest([planned("x", good)], NOW)).waits_resolved == [claimed.run.id]


async def test_expired_wait_does_not_match(store: Store) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "late", None, expires_at_ms=NOW + 1000)
    await store.park(claimed.lease, RunStatus.WAITING, NOW + 1000, NOW)
    assert (await store.ingest([planned("late")], NOW + 2000)).waits_resolved == []
    assert (await step_of(store, claimed.run.id, "wait")).status is StepStatus.WAITING


async def test_lookback_resolves_wait_at_once(store: Store) -> None:
    early = planned("approval", {"doc": "d1"})
    await store.ingest([early], NOW)
    claimed = await started(store, now_ms=NOW + 5000)
    result = await open_wait(
        store, claimed, "approval", "async.data.doc == 'd1'", lookback_ms=10_000, now_ms=NOW + 5000
    )
    assert result.resolved["wait"]["id"] == early.event.id
    assert (await step_of(store, claimed.run.id, "wait")).status is StepStatus.COMPLETED

    other = await started(store, now_ms=NOW + 5000)
    short = await open_wait(
        store, other, "approval", "async.data.doc == 'd1'", lookback_ms=1000, now_ms=NOW + 5000
    )
    assert short.resolved == {}
    none = await open_wait(store, other, "approval", None, key="w2", now_ms=NOW + 5000)
    assert none.resolved == {}


async def test_event_during_lease_makes_park_requeue_now(store: Store) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "signal", None)
    result = await store.ingest([planned("signal")], NOW + 10)
    assert result.waits_resolved == [claimed.run.id]
    running = await store.get_run(claimed.run.id)
    assert running is not None and running.status is RunStatus.RUNNING
    await store.park(claimed.lease, RunStatus.WAITING, None, NOW + 20)
    run = await store.get_run(claimed.run.id)
    assert run is not None and run.status is RunStatus.QUEUED and run.ready_at_ms == NOW + 20
    (again,) = await store.claim("w2", [FN], 5, NOW + 20, LEASE_MS)
    assert again.journal["wait"].status is StepStatus.COMPLETED


async def test_wake_claim_takes_the_resumed_run_and_a_crash_hands_it_over(store: Store) -> None:
    keyed = RunFlow(concurrency=(("k", 5),))
    waiting = []
    for flow in (None, None, keyed):
        claimed = await started(store, flow=flow)
        await open_wait(store, claimed, "go", None)
        logged = LogRecord(claimed.run.id, 1, "info", "x", NOW)
        await store.commit(claimed.lease, Progress(logs=[logged]), NOW)
        await store.park(claimed.lease, RunStatus.WAITING, None, NOW)
        waiting.append(claimed)
    await queued(store, fn="other")
    (other,) = await store.claim("w1", ["other"], 1, NOW, LEASE_MS)
    await open_wait(store, other, "go", None)
    await store.park(other.lease, RunStatus.WAITING, None, NOW)
    claim = WakeClaim("w1", [FN], LEASE_MS)

    assert (await store.ingest([planned("stop")], NOW + 1, claim=claim)).runs_claimed == []
    event = planned("go")
    result = await store.ingest([event], NOW + 2, claim=claim)
    # the first plain run in id order; the one with a concurrency key, the one of a function
    # the claimer does not run, and those over the limit are left to claims
    assert sorted(result.waits_resolved) == sorted([*(c.run.id for c in waiting), other.run.id])
    (taken,) = result.runs_claimed
    first = waiting[0]
    assert taken.run.id == first.run.id and taken.lease.owner == "w1"
    assert taken.lease.token == first.lease.token + 1 and not taken.taken_over
    assert taken.run.status is RunStatus.RUNNING and taken.run.executions == 2
    assert taken.run.lease_expires_at_ms == NOW + 2 + LEASE_MS
    assert taken.journal["wait"].status is StepStatus.COMPLETED
    assert taken.journal["wait"].output["id"] == event.event.id
    assert taken.log_count == 1
    assert await store.get_run(first.run.id) == taken.run
    rest = await store.claim("w2", [FN, "other"], 5, NOW + 3, LEASE_MS)
    assert sorted(c.run.id for c in rest) == sorted(
        [waiting[1].run.id, waiting[2].run.id, other.run.id]
    )

    # its claimer dies: the run is taken over when the lease ends, the claimer is fenced
    (again,) = await store.claim("w2", [FN], 1, NOW + 2 + LEASE_MS + 1, LEASE_MS)
    assert again.run.id == first.run.id and again.taken_over
    assert again.journal["wait"].status is StepStatus.COMPLETED
    with pytest.raises(LeaseLost):
        await store.finish(taken.lease, Outcome(RunStatus.COMPLETED, output=1), [], NOW)
    await store.finish(again.lease, Outcome(RunStatus.COMPLETED, output=2), [], NOW)


async def test_park_without_events_sleeps_until_ready_time(store: Store) -> None:
    claimed = await started(store)
    await store.park(claimed.lease, RunStatus.SLEEPING, NOW + 5000, NOW)
    assert await store.claim("w", [FN], 5, NOW + 4999, LEASE_MS) == []
    assert await store.next_ready_at([FN]) == NOW + 5000
    (woken,) = await store.claim("w", [FN], 5, NOW + 5000, LEASE_MS)
    assert woken.run.executions == 2


async def test_park_is_capped_by_finish_timeout(store: Store) -> None:
    claimed = await started(store, finish_timeout_ms=3000)
    await store.park(claimed.lease, RunStatus.WAITING, None, NOW)
    run = await store.get_run(claimed.run.id)
    assert run is not None and run.ready_at_ms == NOW + 3000


async def test_cancel_waits(store: Store) -> None:
    run = NewRun(new_id("run"), FN, [], [], NOW)
    run.cancel_waits.append(
        NewWait(run.id, WaitKind.CANCEL, "order/cancelled", "async.data.order == 'o1'")
    )
    await store.create_runs([run], NOW)
    (claimed,) = await store.claim("w", [FN], 1, NOW, LEASE_MS)
    miss = await store.ingest([planned("order/cancelled", {"order": "o2"})], NOW)
    assert miss.runs_cancelled == []
    hit = await store.ingest([planned("order/cancelled", {"order": "o1"})], NOW + 1)
    assert hit.runs_cancelled == [run.id]
    assert (
        await store.ingest([planned("order/cancelled", {"order": "o1"})], NOW + 2)
    ).runs_cancelled == []
    result = await store.commit(claimed.lease, Progress(), NOW + 3)
    assert result.cancel_requested is not None and "order/cancelled" in result.cancel_requested
    await store.park(claimed.lease, RunStatus.SLEEPING, NOW + 60_000, NOW + 3)
    (again,) = await store.claim("w", [FN], 1, NOW + 3, LEASE_MS)
    assert again.run.cancel_requested == result.cancel_requested


async def test_request_cancel(store: Store) -> None:
    run_id = await queued(store, ready_at_ms=NOW + 60_000)
    run = await store.request_cancel(run_id, "by request", NOW)
    assert run.cancel_requested == "by request" and run.ready_at_ms == NOW
    with pytest.raises(RunNotFoundError):
        await store.request_cancel("nope", "x", NOW)


# work -------------------------------------------------------------------------------------


async def test_claim_order_is_priority_then_ready_time(store: Store) -> None:
    r1 = await queued(store, ready_at_ms=NOW - 10)
    r2 = await queued(store, ready_at_ms=NOW, priority=5)
    r3 = await queued(store, ready_at_ms=NOW - 20)
    await queued(store, ready_at_ms=NOW + 1000, priority=9)
    await queued(store, fn="other", ready_at_ms=NOW - 100)
    order = []
    for _ in range(4):
        order += [c.run.id for c in await store.claim("w", [FN], 1, NOW, LEASE_MS)]
    assert order == [r2, r3, r1]
    assert await store.next_ready_at([FN]) == NOW + 1000


async def test_claim_returns_journal_and_lease(store: Store) -> None:
    claimed = await started(store)
    log = LogRecord(claimed.run.id, 1, "info", "hello", NOW)
    await store.commit(
        claimed.lease, Progress(steps=[step(claimed.run.id, "a", output=[1])], logs=[log]), NOW
    )
    await store.park(claimed.lease, RunStatus.QUEUED, NOW, NOW)
    (again,) = await store.claim("w2", [FN], 1, NOW, LEASE_MS)
    assert again.lease.token == claimed.lease.token + 1 and again.lease.owner == "w2"
    assert again.journal["a"].output == [1] and again.log_count == 1
    assert again.run.status is RunStatus.RUNNING and again.run.lease_owner == "w2"
    assert [lg.message for lg in await store.get_logs(claimed.run.id)] == ["hello"]


async def test_concurrent_claims_never_share_a_run(store: Store) -> None:
    for _ in range(20):
        await queued(store)
    batches = await asyncio.gather(
        *(store.claim(f"w{i}", [FN], 3, NOW, LEASE_MS) for i in range(10))
    )
    ids = [c.run.id for batch in batches for c in batch]
    assert len(ids) == 20 and len(set(ids)) == 20


async def test_expired_lease_is_taken_over_and_old_writer_fenced(store: Store) -> None:
    old = await started(store)
    assert await store.claim("w2", [FN], 1, NOW + LEASE_MS - 1, LEASE_MS) == []
    # the first instant a claim can take it, so a clock jumped there does not spin
    assert await store.next_ready_at([FN]) == NOW + LEASE_MS + 1
    assert await store.claim("w2", [FN], 1, NOW + LEASE_MS, LEASE_MS) == []
    (new,) = await store.claim("w2", [FN], 1, NOW + LEASE_MS + 1, LEASE_MS)
    assert new.run.id == old.run.id and new.lease.token > old.lease.token
    assert new.taken_over and not old.taken_over

    with pytest.raises(LeaseLost):
        await store.commit(old.lease, Progress(steps=[step(old.run.id, "x")]), NOW)
    with pytest.raises(LeaseLost):
        await store.park(old.lease, RunStatus.SLEEPING, NOW, NOW)
    with pytest.raises(LeaseLost):
        await store.finish(old.lease, Outcome(RunStatus.COMPLETED, output=1), [], NOW)
    assert await store.renew_leases([old.lease, new.lease], NOW + 99_999) == [old.run.id]
    assert await store.get_steps(old.run.id) == []
    run = await store.get_run(old.run.id)
    assert run is not None and run.status is RunStatus.RUNNING and run.lease_owner == "w2"


async def test_a_claim_takes_no_more_runs_than_asked_with_expired_leases_among_them(
    store: Store,
) -> None:
    """Expired leases are taken first, and count against the limit like any run taken: a
    worker asking for its free slots gets no more runs than it has slots."""
    stale = [await started(store, owner=f"dead{i}") for i in range(2)]
    ready = [await queued(store) for _ in range(3)]
    after = NOW + LEASE_MS + 1
    taken = await store.claim("w2", [FN], 3, after, LEASE_MS)
    assert len(taken) == 3
    assert {c.run.id for c in taken if c.taken_over} == {c.run.id for c in stale}
    assert len(await store.claim("w2", [FN], 5, after, LEASE_MS)) == len(ready) - 1


async def test_start_run_inserts_the_run_claimed_and_a_crash_hands_it_over(
    store: Store,
) -> None:
    event = Event("e", {"k": 1}, id=new_id("ev"), ts_ms=NOW)
    run = NewRun(new_id("run"), FN, [event.id or ""], [event.as_dict()], NOW)
    started = await store.start_run(run, NOW, "w1", LEASE_MS)
    assert started is not None and started.journal == {} and started.log_count == 0
    assert started.lease.owner == "w1" and started.lease.token == 1 and not started.taken_over
    assert started.run.status is RunStatus.RUNNING and started.run.executions == 1
    assert started.run.started_at_ms == NOW and started.run.lease_expires_at_ms == NOW + LEASE_MS
    assert started.run.events == [event.as_dict()]
    assert await store.get_run(run.id) == started.run
    page = await store.list_runs(RunFilter(event_id=event.id))
    assert [r.id for r in page.items] == [run.id]
    assert await store.claim("w2", [FN], 5, NOW + 1, LEASE_MS) == []  # held, not ready
    # another run with that id is left alone
    assert await store.start_run(run, NOW, "w3", LEASE_MS) is None

    # its starter dies: the run is taken over when the lease ends, the starter is fenced
    (taken,) = await store.claim("w2", [FN], 1, NOW + LEASE_MS + 1, LEASE_MS)
    assert taken.run.id == run.id and taken.taken_over and taken.lease.token == 2
    with pytest.raises(LeaseLost):
        await store.finish(started.lease, Outcome(RunStatus.COMPLETED, output=1), [], NOW)
    await store.finish(taken.lease, Outcome(RunStatus.COMPLETED, output=2), [], NOW)
    done = await store.get_run(run.id)
    assert done is not None and done.status is RunStatus.COMPLETED and done.output == 2


async def test_renewed_lease_is_not_taken_over(store: Store) -> None:
    claimed = await started(store)
    assert await store.renew_leases([claimed.lease], NOW + 3 * LEASE_MS) == []
    assert await store.claim("w2", [FN], 1, NOW + 2 * LEASE_MS, LEASE_MS) == []


async def test_completed_step_is_recorded_exactly_once(store: Store) -> None:
    claimed = await started(store)
    rid = claimed.run.id
    first = await store.commit(claimed.lease, Progress(steps=[step(rid, "a", output="first")]), NOW)
    assert first.final == {}
    second = await store.commit(
        claimed.lease, Progress(steps=[step(rid, "a", output="second")]), NOW
    )
    assert second.final["a"].output == "first"
    failed = step(rid, "b", StepStatus.FAILED, error={"code": "x"})
    await store.commit(claimed.lease, Progress(steps=[failed]), NOW)
    retry = await store.commit(claimed.lease, Progress(steps=[step(rid, "b", output=1)]), NOW)
    assert retry.final["b"].status is StepStatus.FAILED
    assert [(s.key, s.output) for s in await store.get_steps(rid)] == [("a", "first"), ("b", None)]


async def test_retrying_step_is_updated_until_final(store: Store) -> None:
    claimed = await started(store)
    rid = claimed.run.id
    retrying = step(rid, "a", StepStatus.RETRYING, attempt=0, wake_at_ms=NOW + 100)
    await store.commit(claimed.lease, Progress(steps=[retrying]), NOW)
    done = step(rid, "a", attempt=1, output="ok")
    result = await store.commit(claimed.lease, Progress(steps=[done]), NOW + 100)
    assert result.final == {}
    stored = await step_of(store, rid, "a")
    assert (stored.status, stored.attempt, stored.output) == (StepStatus.COMPLETED, 1, "ok")


async def test_commit_creates_runs_and_sends_events(store: Store) -> None:
    claimed = await started(store)
    child = NewRun(new_id("run"), FN, [], [], NOW, parent_run_id=claimed.run.id)
    sent = planned("child/event", runs=1)
    result = await store.commit(claimed.lease, Progress(runs=[child], events=[sent]), NOW)
    assert result.ingest is not None and result.ingest.accepted == [sent.event.id]
    children = await store.list_runs(RunFilter(parent_run_id=claimed.run.id))
    assert [r.id for r in children.items] == [child.id]
    assert await store.get_run(sent.runs[0].id) is not None


async def test_finish_deletes_waits_and_ingests_events(store: Store) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "never", None)
    done = planned("run/finished", runs=1)
    result = await store.finish(
        claimed.lease, Outcome(RunStatus.COMPLETED, output={"ok": True}), [done], NOW
    )
    assert result.cancel_requested is None and result.work_ready  # its event started a run
    run = await store.get_run(claimed.run.id)
    assert run is not None and run.status is RunStatus.COMPLETED and run.output == {"ok": True}
    assert run.finished_at_ms == NOW and run.lease_owner is None
    assert (await store.ingest([planned("never")], NOW)).waits_resolved == []
    assert await store.get_event(done.event.id or "") is not None
    assert await store.get_run(done.runs[0].id) is not None
    assert await store.claim("w", [FN], 5, NOW, LEASE_MS) != []  # the run the event started


async def test_finished_run_resumes_its_invoker(store: Store) -> None:
    parent = await started(store)
    await open_wait(store, parent, "fn/finished", "async.data.run_id == 'child-1'")
    await store.park(parent.lease, RunStatus.WAITING, None, NOW)
    child = await started(store, owner="w2")
    finished = planned("fn/finished", {"run_id": "child-1", "status": "completed"})
    result = await store.finish(child.lease, Outcome(RunStatus.COMPLETED), [finished], NOW + 5)
    assert result.work_ready
    run = await store.get_run(parent.run.id)
    assert run is not None and run.status is RunStatus.QUEUED and run.ready_at_ms == NOW + 5


async def test_a_finish_that_makes_no_run_ready_says_so(store: Store) -> None:
    """Its event starts and resumes nothing and the run held no slot: a worker whose run
    finished so need not claim."""
    parent = await started(store)
    await open_wait(store, parent, "fn/finished", "async.data.run_id == 'someone-else'")
    await store.park(parent.lease, RunStatus.WAITING, None, NOW)
    child = await started(store, owner="w2")
    finished = planned("fn/finished", {"run_id": child.run.id, "status": "completed"})
    result = await store.finish(child.lease, Outcome(RunStatus.COMPLETED), [finished], NOW)
    assert result.cancel_requested is None and not result.work_ready
    lone = await started(store)
    assert not (await store.finish(lone.lease, Outcome(RunStatus.COMPLETED), [], NOW)).work_ready
    run = await store.get_run(parent.run.id)
    assert run is not None and run.status is RunStatus.WAITING


async def test_rerun_from_failed_step_copies_completed_steps(store: Store) -> None:
    trigger = planned("order/placed", runs=1)
    await store.ingest([trigger], NOW)
    (claimed,) = await store.claim("w", [FN], 1, NOW, LEASE_MS)
    rid = claimed.run.id
    steps = [step(rid, "a", output=1), step(rid, "b", StepStatus.FAILED, error={"code": "e"})]
    await store.commit(claimed.lease, Progress(steps=steps), NOW)
    await store.finish(claimed.lease, Outcome(RunStatus.FAILED, error={"code": "e"}), [], NOW)

    again = await store.rerun(rid, new_id("run"), from_failed_step=True, now_ms=NOW + 1)
    assert (
        again.rerun_of == rid
        and again.status is RunStatus.QUEUED
        and again.events == claimed.run.events
    )
    assert [(s.key, s.output) for s in await store.get_steps(again.id)] == [("a", 1)]
    by_event = await store.list_runs(RunFilter(event_id=trigger.event.id))
    assert again.id in [r.id for r in by_event.items]

    fresh = await store.rerun(rid, new_id("run"), from_failed_step=False, now_ms=NOW + 1)
    assert await store.get_steps(fresh.id) == []
    with pytest.raises(RunNotFoundError):
        await store.rerun("missing", new_id("run"), from_failed_step=False, now_ms=NOW)


async def test_purge_removes_old_finished_runs_and_events(store: Store) -> None:
    await store.ingest([planned("old/event", id="old")], NOW)
    old = await started(store)
    log = LogRecord(old.run.id, 1, "info", "x", NOW)
    await store.commit(old.lease, Progress(steps=[step(old.run.id, "a")], logs=[log]), NOW)
    await store.finish(old.lease, Outcome(RunStatus.COMPLETED), [], NOW)
    alive = await queued(store, ready_at_ms=NOW + 10**9)
    recent = await started(store, now_ms=NOW + 10_000)
    await store.finish(recent.lease, Outcome(RunStatus.COMPLETED), [], NOW + 10_000)

    removed = await store.purge(NOW + 5000)
    assert removed == 2  # one run, one event
    assert await store.get_run(old.run.id) is None
    assert await store.get_steps(old.run.id) == [] and await store.get_logs(old.run.id) == []
    assert await store.get_event("old") is None
    assert await store.get_run(alive) is not None and await store.get_run(recent.run.id) is not None


async def test_list_runs_pages_and_filters(store: Store) -> None:
    made = [await queued(store) for _ in range(5)]
    other = await queued(store, fn="other")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_runs(RunFilter(function_id=FN), limit=2, cursor=cursor)
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(made))
    assert [r.id for r in (await store.list_runs(RunFilter(function_id="other"))).items] == [other]
    claimed = await store.claim("w", [FN], 1, NOW, LEASE_MS)
    running = await store.list_runs(RunFilter(status=RunStatus.RUNNING))
    assert [r.id for r in running.items] == [claimed[0].run.id]
    assert (await store.list_runs(RunFilter(since_ms=NOW + 1))).items == []


async def test_workspaces_are_isolated(store: Store) -> None:
    claimed = await started(store)
    await open_wait(store, claimed, "shared/name", None)
    await store.ingest([planned("shared/name", id="only-here", runs=1)], NOW)
    other = store.for_workspace(store.workspace + "-other")

    assert other.workspace != store.workspace
    assert await other.get_event("only-here") is None
    assert (await other.list_events()).items == []
    assert (await other.list_runs()).items == []
    assert await other.get_run(claimed.run.id) is None
    assert await other.get_steps(claimed.run.id) == []
    assert await other.claim("w", [FN], 10, NOW + 10 * LEASE_MS, LEASE_MS) == []
    assert await other.next_ready_at([FN]) is None
    with pytest.raises(RunNotFoundError):
        await other.request_cancel(claimed.run.id, "x", NOW)
    assert await other.purge(NOW + 10**12) == 0
    # an event with the same id and name in the other workspace is new there, and resolves
    # nothing here
    result = await other.ingest([planned("shared/name", id="only-here")], NOW)
    assert result.accepted == ["only-here"] and result.waits_resolved == []
    assert len((await store.list_runs()).items) == 2


async def test_concurrent_commits_are_fenced_one_by_one(store: Store) -> None:
    for _ in range(20):
        await queued(store)
    claimed = await store.claim("w", [FN], 20, NOW, LEASE_MS)
    stale = claimed[0].lease
    await store.park(stale, RunStatus.QUEUED, NOW, NOW)
    (retaken,) = await store.claim("w2", [FN], 1, NOW, LEASE_MS)
    assert retaken.run.id == stale.run_id

    async def write(c: ClaimedRun) -> ProgressResult | LeaseLost:
        progress = Progress(steps=[step(c.run.id, "a", output=c.run.id)])
        try:
            return await store.commit(c.lease, progress, NOW)
        except LeaseLost as exc:
            return exc

    results = await asyncio.gather(*(write(c) for c in claimed))
    assert isinstance(results[0], LeaseLost) and results[0].run_id == stale.run_id
    assert all(isinstance(r, ProgressResult) and r.final == {} for r in results[1:])
    for c in claimed[1:]:
        assert (await step_of(store, c.run.id, "a")).output == c.run.id
    assert await store.get_steps(stale.run_id) == []


async def test_event_racing_a_lookback_wait_is_never_missed(store: Store) -> None:
    """Whichever commits first, the wait sees the event: by lookback, or by intake."""
    for i in range(15):
        claimed = await started(store)
        event = planned("race/signal", {"i": i})
        opened, ingested = await asyncio.gather(
            open_wait(store, claimed, "race/signal", f"async.data.i == {i}", lookback_ms=60_000),
            store.ingest([event], NOW),
        )
        assert "wait" in opened.resolved or ingested.waits_resolved == [claimed.run.id]
        assert (await step_of(store, claimed.run.id, "wait")).status is StepStatus.COMPLETED


async def test_a_finish_racing_a_lookback_wait_on_its_event_is_never_missed(store: Store) -> None:
    """As an event sent by `ingest`: whichever commits first, the wait sees the finish's event."""
    for i in range(15):
        waiter = await started(store)
        child = await started(store, owner="w2")
        event = planned("race/finished", {"i": i})
        await asyncio.gather(
            open_wait(store, waiter, "race/finished", f"async.data.i == {i}", lookback_ms=60_000),
            store.finish(child.lease, Outcome(RunStatus.COMPLETED), [event], NOW),
        )
        assert (await step_of(store, waiter.run.id, "wait")).status is StepStatus.COMPLETED


# scores -----------------------------------------------------------------------------------


def score(run_id: str, name: str = "quality", value: float = 0.5, **extra: Any) -> ScoreRecord:
    return ScoreRecord(new_id("sc"), run_id, name, value, ScoreSource.FEEDBACK, NOW, **extra)


async def test_scores_are_attached_updated_and_listed(store: Store) -> None:
    claimed = await started(store)
    rid = claimed.run.id
    first = await store.put_score(score(rid, reason="ok"), NOW)
    assert first.function_id == FN and first.value == 0.5 and first.reason == "ok"
    again = await store.put_score(
        ScoreRecord(first.id, rid, "quality", 0.9, ScoreSource.FEEDBACK, NOW), NOW + 5
    )
    assert again.value == 0.9 and again.updated_at_ms == NOW + 5
    await store.put_score(score(rid, "other", 1.0), NOW)
    assert [s.name for s in await store.list_scores(ScoreFilter(run_id=rid))] == [
        "quality",
        "other",
    ]
    assert [s.value for s in await store.list_scores(ScoreFilter(name="quality"))] == [0.9]
    assert await store.list_scores(ScoreFilter(function_id="nope")) == []
    with pytest.raises(RunNotFoundError):
        await store.put_score(score("missing-run"), NOW)
    other = store.for_workspace(store.workspace + "-other")
    assert await other.list_scores(ScoreFilter(run_id=rid)) == []


async def test_a_score_and_its_announcement_commit_together(store: Store) -> None:
    rid = (await started(store)).run.id
    first = await store.put_score(score(rid), NOW, [planned("score/recorded", {"n": 1})])
    page = await store.list_events(name="score/recorded")
    assert [e["data"] for e in page.items] == [{"n": 1}]
    other = store.for_workspace(store.workspace + "-other")
    other_rid = (await started(other)).run.id
    taken = ScoreRecord(first.id, other_rid, "quality", 0.1, ScoreSource.FEEDBACK, NOW)
    with pytest.raises(InvalidScoreError):
        await other.put_score(taken, NOW, [planned("score/recorded", {"n": 2})])
    assert (await other.list_events(name="score/recorded")).items == []
    assert await other.list_scores(ScoreFilter(run_id=other_rid)) == []


async def test_scores_written_with_progress_and_finish_take_the_experiment(store: Store) -> None:
    claimed = await started(store)
    rid = claimed.run.id
    assigned = StepRecord(
        rid, "exp", "exp", StepKind.EXPERIMENT, StepStatus.COMPLETED,
        output={"experiment": "prompt-v", "variant": "b"},
    )  # fmt: skip
    await store.commit(claimed.lease, Progress(steps=[assigned], scores=[score(rid)]), NOW)
    done = Outcome(RunStatus.COMPLETED, scores=[score(rid, "final", 1.0)])
    await store.finish(claimed.lease, done, [], NOW)
    found = await store.list_scores(ScoreFilter(experiment="prompt-v"))
    assert sorted((s.name, s.variant) for s in found) == [("final", "b"), ("quality", "b")]
    assert await store.purge(NOW + 1) >= 1
    assert await store.list_scores(ScoreFilter(run_id=rid)) == []


class _WriterLandsAfterListing:
    """A blob store whose listing is followed, before the sweep deletes anything, by `land`:
    a writer renewing a blob and committing a row that references it (the reviewed race)."""

    def __init__(self, inner: Any, land: Any) -> None:
        self._inner, self._land = inner, land
        self.url = inner.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def list_blobs(self, workspace: str) -> Any:
        listed = await self._inner.list_blobs(workspace)
        await self._land()
        return listed


@pytest.mark.parametrize("backend", ["file", "native"])
async def test_the_sweep_keeps_a_blob_a_commit_renewed_after_its_listing(
    store: Store, tmp_path: Path, backend: str
) -> None:
    if backend == "file":
        store.blobs = FileBlobStore(tmp_path / "blobs")  # type: ignore[misc]
    blobs = store.blobs
    offload = payloads.Payloads(blobs, store.workspace, threshold_bytes=10).offload
    ref = await offload("the same document, processed again")
    claimed = await started(store)
    await asyncio.sleep(0.01)
    cutoff_ms = int(time.time() * 1000)  # the blob was written before it: a candidate

    async def land() -> None:
        again = await offload("the same document, processed again")  # renews the blob
        await store.commit(
            claimed.lease, Progress(steps=[step(claimed.run.id, "a", output=again)]), NOW
        )

    store.blobs = _WriterLandsAfterListing(blobs, land)  # type: ignore[misc]
    try:
        assert await payloads.sweep(store, cutoff_ms, grace_ms=0) == 0
    finally:
        store.blobs = blobs  # type: ignore[misc]
    sha = payloads.ref_of(ref).sha256  # type: ignore[union-attr]
    assert await store.blob_refs() == {sha}
    assert await blobs.get(store.workspace, sha) == b'"the same document, processed again"'


async def test_blob_refs_name_what_rows_reference_and_the_sweep_keeps_it(
    store: Store, tmp_path: Path
) -> None:
    store.blobs = FileBlobStore(tmp_path / "blobs")  # type: ignore[misc]
    offload = payloads.Payloads(store.blobs, store.workspace, threshold_bytes=10).offload
    in_step, in_output = await offload("s" * 100), await offload("o" * 100)
    orphan = await store.blobs.put(store.workspace, b'"written, then the commit crashed"')
    claimed = await started(store)
    await store.commit(
        claimed.lease, Progress(steps=[step(claimed.run.id, "a", output=in_step)]), NOW
    )
    outcome = Outcome(RunStatus.COMPLETED, output={"parts": [in_output, 1]})
    await store.finish(claimed.lease, outcome, [], NOW)
    shas = {payloads.ref_of(r).sha256 for r in (in_step, in_output)}  # type: ignore[union-attr]
    assert await store.blob_refs() == shas
    assert await store.for_workspace(unique_workspace()).blob_refs() == set()

    now = int(time.time() * 1000)
    assert await payloads.sweep(store, now) == 0  # the orphan is within its grace period
    assert await payloads.sweep(store, now + payloads.SWEEP_GRACE_MS + 1000) == 1
    with pytest.raises(BlobNotFoundError):
        await store.blobs.get(store.workspace, orphan)

    await store.purge(NOW + 1)  # the run goes, and with it what its rows referenced
    assert await store.blob_refs() == set()
    assert await payloads.sweep(store, now + payloads.SWEEP_GRACE_MS + 1000) == 2
    assert await store.blobs.list_blobs(store.workspace) == []
