"""Retention reaches webhook deliveries and incoming receipts (kept at least a day, so a
replay within the longest tolerance window is still refused)."""

from __future__ import annotations

from pathlib import Path

from inferpipe.server import retention
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.store.webhooks import RecordKind, WebhookRecord

DAY_MS = 86_400_000


async def test_old_deliveries_and_receipts_are_purged(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db", "ws")
    await store.open()
    try:
        now = 100 * DAY_MS
        table = store.webhooks
        await table.put(WebhookRecord("ws", RecordKind.SUBSCRIPTION, "sub", {}, 0, 0))
        for name, at in (("old", now - 10 * DAY_MS), ("recent", now - 60_000)):
            await table.put(WebhookRecord("ws", RecordKind.DELIVERY, name, {}, at, at, "sub"))
        await table.put_receipt("ws", "src", "m-old", "1", now - 3 * DAY_MS)
        await table.put_receipt("ws", "src", "m-hour", "2", now - DAY_MS // 24)
        await table.put_receipt("ws", "gh", "m-unsigned", "", now - 90 * DAY_MS)
        assert await retention.purge_older_than(store, 0.01, now_ms=now) == 2
        left = await table.list_records("ws", RecordKind.DELIVERY)
        assert [r.id for r in left] == ["recent"]
        assert await table.receipt("ws", "src", "m-old") is None
        assert await table.receipt("ws", "src", "m-hour") == "2"  # younger than a day
        assert await table.receipt("ws", "gh", "m-unsigned") == ""  # no timestamp: kept
        assert await table.get("ws", RecordKind.SUBSCRIPTION, "sub") is not None
    finally:
        await store.close()
