"""Bad flow control input: a clear error at registration naming the function and the option,
or, for a single event, a run recorded as skipped with the reason (never a crashed worker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import inferpipe as ip
from inferpipe.engine.clock import VirtualClock
from inferpipe.engine.flow import (
    Batch,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
)
from inferpipe.store.base import RunFilter
from tests.flow.conftest import StoreMaker
from tests.flow.kit import T0, eventually

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"concurrency": 0}, "concurrency limit must be a positive integer, got 0"),
    ({"concurrency": Concurrency(-3)}, "concurrency limit must be a positive integer, got -3"),
    ({"concurrency": "5"}, "concurrency must be a Concurrency, got str"),
    (
        {"concurrency": [Concurrency(1), Concurrency(2, key="event.data.a"), Concurrency(3)]},
        "concurrency: at most 2 constraints",
    ),
    ({"concurrency": [Concurrency(1), Concurrency(2)]}, "two constraints on the same key"),
    ({"concurrency": Concurrency(1, key="event.data.")}, "concurrency key"),
    ({"concurrency": Concurrency(1, key="async.data.a")}, "unknown variable 'async'"),
    ({"concurrency": Concurrency(1, scope="env")}, "scope 'env' needs a key"),
    ({"concurrency": Concurrency(1, scope="global")}, "scope must be 'fn' or 'env'"),  # type: ignore[arg-type]
    ({"throttle": Throttle(0, "1s")}, "throttle limit must be a positive integer, got 0"),
    ({"throttle": Throttle(10**7, "1s")}, "throttle limit must be at most 1000000 per period"),
    ({"throttle": Throttle(1, "0s")}, "throttle period must be positive, got '0s'"),
    ({"throttle": Throttle(1, "-1s")}, "throttle period: invalid duration '-1s'"),
    ({"throttle": Throttle(1, "1m", burst=-1)}, "throttle burst must be an integer >= 0"),
    ({"rate_limit": RateLimit(1, 0)}, "rate_limit period must be positive, got 0"),
    ({"rate_limit": RateLimit(-1, "1h")}, "rate_limit limit must be a positive integer"),
    ({"rate_limit": RateLimit(1, "1h", key="event.data.a ==")}, "rate_limit key"),
    ({"debounce": Debounce("0ms")}, "debounce period must be positive"),
    ({"debounce": Debounce("10s", timeout="5s")}, "debounce timeout ('5s') must not be shorter"),
    ({"batch": Batch(0, "1s")}, "batch max_size must be a positive integer, got 0"),
    ({"batch": Batch(5000, "1s")}, "batch max_size must be at most 1000, got 5000"),
    ({"batch": Batch(10, "1x")}, "batch timeout: invalid duration '1x'"),
    ({"priority": "event.data.p +"}, "priority run"),
    ({"priority": Priority("other.p")}, "unknown variable 'other'"),
    ({"idempotency": "event.data.id)"}, "idempotency"),
    ({"singleton": Singleton(mode="replace")}, "singleton: mode must be 'skip' or 'cancel'"),  # type: ignore[arg-type]
    (
        {"batch": Batch(10, "1s"), "debounce": Debounce("1s")},
        "batch and debounce cannot be combined: both gather events into one run",
    ),
    (
        {"debounce": Debounce("1s"), "idempotency": "event.data.id"},
        "debounce and idempotency cannot be combined",
    ),
    ({"batch": Batch(10, "1s"), "singleton": Singleton()}, "batch and singleton cannot be"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_registration_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    app = ip.App("t")

    async def handler(ctx: ip.Context) -> None:
        return None

    with pytest.raises(ip.ConfigurationError) as info:
        app.function(id="summarize", trigger=ip.on_event("doc"), **options)(handler)
    assert "function 'summarize'" in str(info.value)
    assert message in str(info.value)
    assert "summarize" not in app.registry


async def test_a_key_missing_from_one_event_skips_that_run_and_the_worker_goes_on(
    stores: StoreMaker,
) -> None:
    app = ip.App("t")
    done: list[str] = []

    @app.function(
        id="f",
        trigger=ip.on_event("job"),
        concurrency=Concurrency(1, key="event.data.customer.id"),
        throttle=Throttle(100, "1s", key="event.data.customer.tier"),
    )
    async def f(ctx: ip.Context) -> None:
        done.append(ctx.event.data["customer"]["id"])

    await app.start(store=stores.new(), clock=VirtualClock(T0))
    worker = app.worker()
    task = asyncio.create_task(worker.run())
    try:
        await app.send(
            [
                ip.Event("job", {"customer": {"id": "c1", "tier": "pro"}}),
                ip.Event("job", {"customer": "c2"}),  # no .id: a type mismatch
                ip.Event("job", {}),  # no customer at all
                ip.Event("job", {"customer": {"id": "c3"}}),  # throttle key missing
                ip.Event("job", {"customer": {"id": "c4", "tier": "free"}}),
            ]
        )
        await eventually(lambda: _finished(app, 5))
    finally:
        worker.notify_shutdown()
        await task
    page = await app.list_runs(RunFilter(status=ip.RunStatus.SKIPPED))
    await app.close()
    assert sorted(done) == ["c1", "c4"]
    reasons = sorted(r.status_reason or "" for r in page.items)
    assert len(reasons) == 3
    assert all(r.startswith("flow control key failed on the event: expression") for r in reasons)
    assert any("'event.data.customer.tier'" in r for r in reasons)


async def _finished(app: ip.App, n: int) -> bool:
    page = await app.list_runs(RunFilter(function_id="f"))
    return sum(1 for r in page.items if r.status.finished) == n
