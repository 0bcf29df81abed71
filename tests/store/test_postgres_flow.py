"""What only the PostgreSQL store's flow control has: claims serialized per key by advisory
locks (a claim waits for the key's lock, then counts what the holder committed), keys held by
another claim passed over on later pages, and slot releases announced with NOTIFY."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from inferpipe.core.records import NewRun, RunFlow, RunStatus
from inferpipe.store.base import Outcome
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.postgres.admission import flow_lock
from tests.store.conftest import PostgresServer, unique_workspace

NOW = 1_700_000_000_000
LEASE_MS = 60_000


def keyed(run_id: str, key: str, *, priority: int = 0, fair: bool = True) -> NewRun:
    flow = RunFlow(concurrency=((key, 1),), fair_key=key if fair else None)
    return NewRun(run_id, "f", [], [], NOW, priority=priority, flow=flow)


def ids(prefix: str, *names: str) -> list[str]:
    """Run ids of one test (ids are unique across the workspaces of the shared database)."""
    return [f"{prefix}-{name}" for name in names]


@pytest.fixture
async def store(postgres: PostgresServer) -> AsyncIterator[PostgresStore]:
    made = PostgresStore(postgres.url, unique_workspace())
    await made.open()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def other(postgres: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    """A connection of "another worker", to hold locks and commit behind a claim's back."""
    conn = await asyncpg.connect(postgres.url)
    try:
        yield conn
    finally:
        await conn.close()


async def _waiting_for_a_lock(conn: asyncpg.Connection) -> None:
    """Until some backend waits for an advisory lock (the claim under test)."""
    for _ in range(500):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the claim never waited for the key's lock")


async def test_a_claim_waits_for_the_keys_lock_and_counts_what_its_holder_committed(
    store: PostgresStore, other: asyncpg.Connection
) -> None:
    a1, a2 = ids(store.workspace, "a1", "a2")
    await store.create_runs([keyed(a1, "k"), keyed(a2, "k")], NOW)
    tx = other.transaction()
    await tx.start()
    # Another claim holds the key and starts a1 (as its own claim would, under the lock).
    await other.execute("SELECT pg_advisory_xact_lock($1)", flow_lock(store.workspace, "slot", "k"))
    await other.execute(
        "UPDATE runs SET status = 'running', lease_owner = 'w0', lease_expires_at_ms = $1,"
        " attempts = 1 WHERE id = $2",
        NOW + LEASE_MS,
        a1,
    )
    # Our claim reads a2 (a1 is locked by the other one) and waits for the key's lock.
    claim = asyncio.create_task(store.claim("w1", ["f"], 10, NOW, LEASE_MS))
    await _waiting_for_a_lock(other)
    await tx.commit()
    assert await claim == []  # a1 runs now: the key has no free slot for a2
    waiting = await store.get_run(a2)
    assert waiting is not None and waiting.status is RunStatus.QUEUED
    assert waiting.status_reason == "waiting for a concurrency slot: k has 1 running"


async def test_a_later_page_passes_over_a_key_another_claim_holds(
    store: PostgresStore, other: asyncpg.Connection
) -> None:
    # a1..a3 fill the first page (limit 2): a1 starts, a2 is held back; the second page has b1
    # (queued behind them by its negative priority), whose key another claim holds.
    a1, a2, a3, b1 = ids(store.workspace, "a1", "a2", "a3", "b1")
    await store.create_runs([keyed(run_id, "a") for run_id in (a1, a2, a3)], NOW)
    await store.create_runs([keyed(b1, "b", priority=-1, fair=False)], NOW)
    async with other.transaction():
        await other.execute(
            "SELECT pg_advisory_xact_lock($1)", flow_lock(store.workspace, "slot", "b")
        )
        claimed = await store.claim("w1", ["f"], 2, NOW, LEASE_MS)  # does not wait for "b"
        assert [c.run.id for c in claimed] == [a1]
    (later,) = await store.claim("w1", ["f"], 2, NOW, LEASE_MS)
    assert later.run.id == b1


async def test_a_run_freeing_a_slot_notifies_the_workers(store: PostgresStore) -> None:
    a1, a2 = ids(store.workspace, "a1", "a2")
    await store.create_runs([keyed(a1, "k"), keyed(a2, "k")], NOW)
    (first,) = await store.claim("w1", ["f"], 10, NOW, LEASE_MS)
    woken = asyncio.Event()
    stop = await store.listen(woken.set)
    try:
        await store.finish(first.lease, Outcome(RunStatus.COMPLETED), [], NOW + 1)
        await asyncio.wait_for(woken.wait(), timeout=10)
    finally:
        await stop()
    (second,) = await store.claim("w2", ["f"], 10, NOW + 1, LEASE_MS)
    assert first.run.id == a1 and second.run.id == a2
