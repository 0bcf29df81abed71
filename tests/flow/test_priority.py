"""Priority is "seconds ahead": a run is queued as if it had been enqueued that many seconds
earlier (or later, when negative), also behind a backlog; with concurrency keys, keys take
turns and priority orders the runs within a key. On SQLite and PostgreSQL."""

from __future__ import annotations

import inferpipe as ip
from inferpipe.engine.flow import Concurrency
from tests.flow.conftest import HarnessFactory


def ordered_app(order: list[str], **flow: object) -> ip.App:
    app = ip.App("t")

    @app.function(id="f", trigger=ip.on_event("job"), priority="event.data.p", **flow)  # type: ignore[arg-type]
    async def f(ctx: ip.Context) -> None:
        order.append(ctx.event.data["name"])

    return app


def job(name: str, p: int = 0, key: str = "a") -> ip.Event:
    return ip.Event("job", {"name": name, "p": p, "k": key})


async def test_a_run_behind_by_60_s_runs_before_runs_enqueued_10_minutes_later(
    harness: HarnessFactory,
) -> None:
    order: list[str] = []
    async with harness(ordered_app(order, concurrency=1)) as h:
        await h.send([job("first"), job("behind", -60)])  # a backlog from the start
        h.clock.advance_to(h.now_ms + 600_000)  # ten minutes, no worker running
        await h.send([job(f"later{i}") for i in range(3)])
        await h.settle()
    assert order == ["first", "behind", "later0", "later1", "later2"]


async def test_priority_moves_a_run_by_its_seconds_within_a_backlog(
    harness: HarnessFactory,
) -> None:
    order: list[str] = []
    async with harness(ordered_app(order, concurrency=1)) as h:
        await h.send([job("a1"), job("a2")])
        h.clock.advance_to(h.now_ms + 20_000)
        await h.send([job("b1"), job("b2")])
        h.clock.advance_to(h.now_ms + 5_000)
        # enqueued 25 s after a1 and 10 s ahead: after the runs of second 0, before those of 20
        await h.send(job("ten-ahead", 10))
        h.clock.advance_to(h.now_ms + 1_000)
        await h.send(job("behind", -5))  # as if enqueued at second 31: last
        await h.settle()
    assert order == ["a1", "a2", "ten-ahead", "b1", "b2", "behind"]


async def test_under_sustained_load_a_low_priority_run_is_not_starved(
    harness: HarnessFactory,
) -> None:
    order: list[str] = []
    async with harness(ordered_app(order, concurrency=1)) as h:
        await h.send([job("first"), job("low", -60)])
        # a new run every second, one run served every second: the backlog never drains
        for second in range(120):
            await h.send(job(f"plain{second}"))
            h.clock.advance_to(h.now_ms + 1_000)
            (one,) = await h.engine.store.claim("w", ["f"], 1, h.now_ms, 60_000)
            await h.engine.executor.execute(one)
            if "low" in order:
                break
    # served once the runs enqueued in its first 60 s were (not after every later run)
    assert "low" in order and 55 <= order.index("low") <= 65, order.index("low")


async def test_with_keys_priority_orders_runs_within_a_key_and_keys_take_turns(
    harness: HarnessFactory,
) -> None:
    order: list[str] = []
    concurrency = [Concurrency(1), Concurrency(1, key="event.data.k")]
    async with harness(ordered_app(order, concurrency=concurrency)) as h:
        await h.send([job("b1", key="b"), job("b2", key="b"), job("a1", key="a")])
        h.clock.advance_to(h.now_ms + 1_000)
        await h.send(job("a-urgent", 60, key="a"))
        await h.settle()
    # a-urgent takes key a's first turn (before a1), not key b's
    assert order == ["b1", "a-urgent", "b2", "a1"]
