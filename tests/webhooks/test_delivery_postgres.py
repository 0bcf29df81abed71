"""Outgoing webhooks on PostgreSQL: a receiver on loopback that fails twice gets the delivery
on the third attempt, logged with every answer; secrets sealed with the operator's key."""

from __future__ import annotations

import asyncio
import time

import pytest
import standardwebhooks
from cryptography.fernet import Fernet

import inferpipe as ip
from inferpipe.store.postgres import PostgresStore
from inferpipe.webhooks.delivery import get_delivery
from inferpipe.webhooks.subscriptions import EventType, webhook_subscriptions
from tests.store.conftest import session_postgres, unique_workspace
from tests.webhooks.delivery_app import build
from tests.webhooks.receiver import receiver


async def test_a_delivery_retried_on_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPIPE_SECRETS_KEY", Fernet.generate_key().decode())
    server = session_postgres()
    workspace = unique_workspace()
    app = build(None, private=True, backoff_s=0.2)
    await app.start(store=PostgresStore(server.url, workspace))
    worker = app.worker(concurrency=10)
    loop = asyncio.create_task(worker.run())
    try:
        with receiver([500, 502]) as hook:
            sub, secret = await webhook_subscriptions(app.engine.store).create(
                workspace, hook.url, events=[EventType.RUN_FINISHED], allow_private=True
            )
            await app.send(ip.Event("test/work", {"n": 1}))
            deadline = time.monotonic() + 30
            while not hook.accepted():
                assert time.monotonic() < deadline, "no delivery arrived"
                await asyncio.sleep(0.05)
            calls = hook.all()
            assert [c.answered for c in calls] == [500, 502, 200]
            for call in calls:
                standardwebhooks.Webhook(secret).verify(call.body, call.headers)
            delivery_id = calls[0].headers["webhook-id"]
            while (await get_delivery(app.engine.store, delivery_id)).status != "succeeded":
                assert time.monotonic() < deadline, "the delivery was not logged"
                await asyncio.sleep(0.05)
            logged = await get_delivery(app.engine.store, delivery_id)
            assert logged.subscription_id == sub.id
            assert [a["status_code"] for a in logged.attempts] == [500, 502, 200]
    finally:
        worker.notify_shutdown()
        await loop
        await app.close()
