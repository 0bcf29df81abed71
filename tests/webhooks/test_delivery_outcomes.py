"""How a delivery ends, in process under `inferpipe.testing.Harness` (a virtual clock) with a
real receiver on loopback: only a 2xx succeeds, a redirect is a final failure, a long answer
is read only as far as its head, and the retry window is on the engine's clock."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import inferpipe as ip
from inferpipe.core.events import Event
from inferpipe.engine.functions import Backoff
from inferpipe.testing import Harness
from inferpipe.webhooks.delivery import (
    RESPONSE_HEAD_CHARS,
    Delivery,
    WebhookDelivery,
    _SharedTransport,
    delivery_of,
    list_deliveries,
    retry_delay_ms,
)
from inferpipe.webhooks.errors import WebhooksNotEnabledError
from inferpipe.webhooks.subscriptions import EventType, Subscription, webhook_subscriptions
from tests.webhooks.delivery_app import build
from tests.webhooks.receiver import ELSEWHERE, receiver


@asynccontextmanager
async def harness(backoff_s: float = 1.0) -> AsyncIterator[Harness]:
    async with Harness(build(None, private=True, backoff_s=backoff_s)) as h:
        yield h


async def subscribe(h: Harness, url: str, *, window_s: int = 3600) -> Subscription:
    sub, _ = await webhook_subscriptions(h.engine.store).create(
        "default", url, events=[EventType.RUN_FINISHED], retry_window_s=window_s, allow_private=True
    )
    return sub


async def delivered(h: Harness, sub: Subscription) -> Delivery:
    (found,) = await list_deliveries(h.engine.store, sub.id)
    return found


async def test_a_redirect_is_a_final_failure_recorded_with_its_location() -> None:
    async with harness() as h:
        with receiver([302]) as hook:
            sub = await subscribe(h, hook.url)
            await h.send(Event("test/work", {"n": 1}))
            await h.advance("1h")
            found = await delivered(h, sub)
        assert found.status == "failed"
        (attempt,) = found.attempts
        assert attempt["status_code"] == 302 and not attempt["ok"]
        assert attempt["location"] == ELSEWHERE and ELSEWHERE in attempt["error"]
        assert len(hook.all()) == 1  # not retried, not followed


async def test_a_2xx_with_a_long_body_succeeds_and_keeps_its_head() -> None:
    async with harness() as h:
        with receiver(reply=b"x" * (3 * 1024 * 1024)) as hook:
            sub = await subscribe(h, hook.url)
            await h.send(Event("test/work", {"n": 2}))
            await h.advance("1h")
            found = await delivered(h, sub)
        assert found.status == "succeeded"
        (attempt,) = found.attempts
        assert attempt["status_code"] == 200 and attempt["ok"]
        assert attempt["response"] == "x" * RESPONSE_HEAD_CHARS
        assert len(hook.all()) == 1


def test_a_deliverys_backoff_is_the_same_on_every_replay() -> None:
    backoff = Backoff(base_s=5.0, max_s=3600.0, jitter=0.5)
    drawn = []
    for seed in (1, 2):
        random.seed(seed)  # what else the process draws does not move a delivery's delays
        drawn.append([retry_delay_ms(backoff, "dl-1", 0, attempt) for attempt in range(6)])
    assert drawn[0] == drawn[1]
    assert drawn[0] != [retry_delay_ms(backoff, "dl-2", 0, a) for a in range(6)]  # still jittered
    assert all(2_500 <= d <= 5_000 * 2**a for a, d in enumerate(drawn[0]))


async def test_the_retry_window_is_measured_on_the_engines_clock() -> None:
    async with harness() as h:  # a virtual clock: the backoff sleeps take no real time
        with receiver([500] * 200) as hook:
            sub = await subscribe(h, hook.url, window_s=60)
            await h.send(Event("test/work", {"n": 3}))
            await h.advance("1h")
            found = await delivered(h, sub)
        assert found.status == "failed"
        assert 2 <= len(hook.all()) < 20  # retried within 60 s of backoff, then given up


async def test_a_filter_that_fails_on_the_event_records_a_failed_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a silent drop: the filter's error is logged and kept on a failed delivery, and no
    request goes out."""
    async with harness() as h:
        with receiver() as hook:
            sub, _ = await webhook_subscriptions(h.engine.store).create(
                "default",
                hook.url,
                events=[EventType.RUN_FINISHED],
                filter_="event.data.output.missing == 1",
                allow_private=True,
            )
            with caplog.at_level(logging.WARNING, logger="inferpipe.webhooks"):
                await h.send(Event("test/work", {"n": 4}))
                await h.advance("1h")
            found = await delivered(h, sub)
            assert hook.all() == []
        assert found.status == "failed" and found.attempts == []
        assert found.reason is not None and found.reason.startswith("filter: ")
        assert "missing" in found.reason
        assert any(sub.id in r.getMessage() for r in caplog.records)


async def test_the_pooled_connections_close_with_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[object] = []
    real = _SharedTransport.aclose

    async def aclose(self: _SharedTransport) -> None:
        closed.append(self)
        await real(self)

    monkeypatch.setattr(_SharedTransport, "aclose", aclose)
    app = build(None, private=True, backoff_s=1.0)
    async with Harness(app) as h:
        with receiver() as hook:
            await subscribe(h, hook.url)
            await h.send(Event("test/work", {"n": 5}))
            await h.advance("1h")
            assert len(hook.accepted()) == 1
        assert closed == []
    assert len(closed) == 1


def test_delivery_is_found_on_its_app_only() -> None:
    app = build(None, private=True, backoff_s=1.0)
    assert isinstance(delivery_of(app), WebhookDelivery)
    with pytest.raises(WebhooksNotEnabledError):
        delivery_of(ip.App("no-webhooks"))
