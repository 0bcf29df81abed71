"""A workspace with no enabled subscription starts no dispatch run per finished run, and no
delivery is lost to that: a subscription saved in this process counts at once, one saved in
another process once `DeliverySettings.recheck_s` has passed. A disabled subscription's queued
deliveries do not go out, and enabling it again does not send them (a redelivery does)."""

from __future__ import annotations

from pathlib import Path

from inferpipe.core.events import Event
from inferpipe.store.base import RunFilter
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.testing import Harness
from inferpipe.webhooks.delivery import (
    DISPATCH_FUNCTION_ID,
    SubscriptionPresence,
    delivery_of,
    list_deliveries,
)
from inferpipe.webhooks.subscriptions import EventType, webhook_subscriptions
from tests.webhooks.delivery_app import build
from tests.webhooks.receiver import receiver

FINISHED = [EventType.RUN_FINISHED]


async def dispatch_runs(h: Harness) -> int:
    found = await h.engine.store.list_runs(RunFilter(function_id=DISPATCH_FUNCTION_ID))
    return len(found.items)


async def run_work(h: Harness, n: int) -> None:
    await h.send(Event("test/work", {"n": n}))
    await h.advance("10ms")


async def test_no_subscription_no_dispatch_run_and_a_new_one_counts_at_once(
    tmp_path: Path,
) -> None:
    app = build(None, private=True, backoff_s=1.0)
    async with Harness(app, path=tmp_path / "gate.db") as h:
        delivery = delivery_of(app)
        for n in range(5):
            await run_work(h, n)
        # The first finish finds out there is none; the next ones start no dispatch run.
        assert await dispatch_runs(h) == 1
        with receiver() as hook:
            await delivery.subscriptions(h.engine.store).create(
                "default", hook.url, events=FINISHED, allow_private=True
            )
            await run_work(h, 10)  # no wait: a change in this process counts at once
            await h.advance("1h")
            (got,) = hook.accepted()
        assert got.payload["data"]["output"] == {"n": 10}
        assert await dispatch_runs(h) == 2


async def test_a_subscription_saved_by_another_process_counts_after_recheck_s(
    tmp_path: Path,
) -> None:
    app = build(None, private=True, backoff_s=1.0)
    delivery = delivery_of(app)
    async with Harness(app, path=tmp_path / "gate.db") as h:
        await run_work(h, 1)
        assert not delivery.presence.admits("default")
        other = SQLiteStore(tmp_path / "gate.db")  # another process's connection
        await other.open()
        try:
            with receiver() as hook:
                await webhook_subscriptions(other).create(
                    "default", hook.url, events=FINISHED, allow_private=True
                )
                await h.advance(f"{delivery.settings.recheck_s}s")
                assert delivery.presence.admits("default")
                await run_work(h, 2)
                await h.advance("1h")
                (got,) = hook.accepted()
        finally:
            await other.close()
        assert got.payload["data"]["output"] == {"n": 2}


def test_a_read_overlapping_a_change_is_not_kept() -> None:
    clock = [0]
    gate = SubscriptionPresence(lambda: clock[0], fresh_ms=1000)
    assert gate.admits("ws")  # unknown: dispatch
    reading = gate.reading("ws")
    gate.changed("ws")  # a subscription saved while the read was on its way
    gate.record("ws", False, reading)
    assert gate.admits("ws")
    gate.record("ws", False, gate.reading("ws"))
    assert not gate.admits("ws")
    clock[0] = 1000
    assert gate.admits("ws")  # stale: looked at again


async def test_disabling_cancels_queued_deliveries_and_enabling_does_not_resend() -> None:
    app = build(None, private=True, backoff_s=60.0)
    async with Harness(app) as h:
        delivery = delivery_of(app)
        subs = delivery.subscriptions(h.engine.store)
        with receiver([500]) as hook:
            sub, _ = await subs.create("default", hook.url, events=FINISHED, allow_private=True)
            await run_work(h, 1)  # attempt 0 answered 500; attempt 1 is due in 60 s
            assert len(hook.all()) == 1
            await subs.update("default", sub.id, enabled=False, allow_private=True)
            (queued,) = await list_deliveries(h.engine.store, sub.id)
            assert (queued.status, queued.reason) == ("cancelled", "subscription disabled")
            await subs.update("default", sub.id, enabled=True, allow_private=True)
            await h.advance("1h")
            assert len(hook.all()) == 1  # not resurrected
            (ended,) = await list_deliveries(h.engine.store, sub.id)
            assert ended.status == "cancelled" and len(ended.attempts) == 1
            await delivery.redeliver(h.engine, ended.id)
            await h.advance("1h")
            assert [r.answered for r in hook.all()] == [500, 200]
        (again,) = await list_deliveries(h.engine.store, sub.id)
        assert again.status == "succeeded"


async def test_a_disabled_subscriptions_sleeping_delivery_does_not_go_out() -> None:
    """Disabled in another process (the row is cancelled there): the worker here stops."""
    app = build(None, private=True, backoff_s=60.0)
    async with Harness(app) as h:
        plain = webhook_subscriptions(h.engine.store)  # no presence hook: as another process
        with receiver([500]) as hook:
            sub, _ = await plain.create("default", hook.url, events=FINISHED, allow_private=True)
            await run_work(h, 1)
            await plain.update("default", sub.id, enabled=False, allow_private=True)
            await h.advance("1h")
            assert len(hook.all()) == 1
        (ended,) = await list_deliveries(h.engine.store, sub.id)
        assert ended.status == "cancelled" and len(ended.attempts) == 1
