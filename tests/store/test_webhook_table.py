"""`Store.webhooks` on SQLite and PostgreSQL: records by workspace and kind, atomic updates,
children listed newest first, receipts."""

from __future__ import annotations

import asyncio
import time

from inferpipe.store import payloads
from inferpipe.store.base import Store
from inferpipe.store.webhooks import Change, RecordKind, WebhookRecord


async def test_records_are_scoped_by_workspace_and_kind(store: Store) -> None:
    table, ws = store.webhooks, store.workspace
    await table.put(WebhookRecord(ws, RecordKind.SOURCE, "s1", {"a": 1}, 10, 10))
    again = await table.put(WebhookRecord(ws, RecordKind.SOURCE, "s1", {"a": 2}, 20, 20))
    assert (again.body, again.created_at_ms, again.updated_at_ms) == ({"a": 2}, 10, 20)
    assert await table.get(ws, RecordKind.SUBSCRIPTION, "s1") is None
    assert await table.get(f"{ws}-other", RecordKind.SOURCE, "s1") is None
    assert [r.id for r in await table.list_records(ws, RecordKind.SOURCE)] == ["s1"]
    assert await table.delete(ws, RecordKind.SOURCE, "s1")
    assert not await table.delete(ws, RecordKind.SOURCE, "s1")


async def test_children_newest_first_with_a_time_cursor(store: Store) -> None:
    table, ws = store.webhooks, store.workspace
    for n in range(5):
        parent = "sub-a" if n % 2 == 0 else "sub-b"
        await table.put(WebhookRecord(ws, RecordKind.DELIVERY, f"d{n}", {}, n, n, parent))
    found = await table.list_records(ws, RecordKind.DELIVERY, parent="sub-a")
    assert [r.id for r in found] == ["d4", "d2", "d0"]
    older = await table.list_records(ws, RecordKind.DELIVERY, parent="sub-a", before_ms=4, limit=1)
    assert [r.id for r in older] == ["d2"]


async def test_concurrent_updates_lose_nothing(store: Store) -> None:
    table, ws = store.webhooks, store.workspace
    await table.put(WebhookRecord(ws, RecordKind.DELIVERY, "d", {"attempts": []}, 1, 1))

    def add(n: int) -> Change:
        return lambda body: {**body, "attempts": [*body["attempts"], n]}

    await asyncio.gather(
        *(table.update(ws, RecordKind.DELIVERY, "d", add(n), 2) for n in range(20))
    )
    found = await table.get(ws, RecordKind.DELIVERY, "d")
    assert found is not None and sorted(found.body["attempts"]) == list(range(20))
    assert await table.update(ws, RecordKind.DELIVERY, "missing", add(0), 3) is None


async def test_receipts_keep_the_first_signed_timestamp_and_both_are_purged(store: Store) -> None:
    table, ws = store.webhooks, store.workspace
    assert await table.receipt(ws, "src", "m1") is None
    await table.put_receipt(ws, "src", "m1", "100", 1000)
    await table.put_receipt(ws, "src", "m1", "200", 2000)
    assert await table.receipt(ws, "src", "m1") == "100"
    assert await table.receipt(ws, "other", "m1") is None
    await table.put(WebhookRecord(ws, RecordKind.DELIVERY, "old", {}, 10, 10, "sub"))
    await table.put(WebhookRecord(ws, RecordKind.DELIVERY, "new", {}, 10, 3000, "sub"))
    await table.put(WebhookRecord(ws, RecordKind.SUBSCRIPTION, "sub", {}, 10, 10))
    assert await table.purge(ws, 2000, 500) == 1  # the old delivery; the receipt is younger
    assert await table.receipt(ws, "src", "m1") == "100"
    assert await table.purge(ws, 2000, 1500) == 1
    assert await table.receipt(ws, "src", "m1") is None
    left = await table.list_records(ws, RecordKind.DELIVERY)
    assert [r.id for r in left] == ["new"]
    assert await table.get(ws, RecordKind.SUBSCRIPTION, "sub") is not None


async def test_a_blob_referenced_only_by_a_delivery_is_not_swept(store: Store) -> None:
    """A delivery's payload keeps a large run output's reference after the run is purged:
    the sweep counts it, so the delivery log and a redelivery can still read the output."""
    table, ws = store.webhooks, store.workspace
    big = "y" * 4096
    ref = await payloads.Payloads(store.blobs, ws, 1024).offload({"answer": big})
    assert payloads.ref_of(ref) is not None
    body = {"payload": {"type": "run.finished", "data": {"output": ref}}, "attempts": []}
    await table.put(WebhookRecord(ws, RecordKind.DELIVERY, "d", body, 1, 1, "sub"))
    later = int(time.time() * 1000) + 2 * payloads.SWEEP_GRACE_MS
    assert await payloads.sweep(store, later) == 0
    assert len(await store.blobs.list_blobs(ws)) == 1
    await table.delete(ws, RecordKind.DELIVERY, "d")
    assert await payloads.sweep(store, later) == 1
