"""Concurrency limits, per function and per key: runs over the limit wait in order, keys take
turns, and a sleeping run holds no slot. Priority moves runs in the queue."""

from __future__ import annotations

import asyncio
from collections import Counter

import inferpipe as ip
from inferpipe.engine.clock import VirtualClock
from inferpipe.engine.flow import Concurrency
from inferpipe.store.base import RunFilter
from inferpipe.testing import Harness
from tests.flow.conftest import HarnessFactory, StoreMaker
from tests.flow.kit import T0, eventually, starts


async def test_runs_over_the_limit_wait_in_order_and_say_why(stores: StoreMaker) -> None:
    app = ip.App("t")
    gate = asyncio.Event()
    running: Counter[str] = Counter()
    peak = [0]
    order: list[int] = []

    async def work(n: int) -> int:
        running["f"] += 1
        peak[0] = max(peak[0], running["f"])
        order.append(n)
        await gate.wait()
        running["f"] -= 1
        return n

    @app.function(id="f", trigger=ip.on_event("job"), concurrency=2)
    async def f(ctx: ip.Context) -> int:
        return int(await ctx.step.run("work", work, ctx.event.data["n"]))

    await app.start(store=stores.new(), clock=VirtualClock(T0))
    worker = app.worker()
    task = asyncio.create_task(worker.run())
    try:
        await app.send([ip.Event("job", {"n": n}) for n in range(6)])
        await eventually(lambda: _count(app, ip.RunStatus.RUNNING, 2))
        queued = (await app.list_runs(RunFilter(status=ip.RunStatus.QUEUED))).items
        assert len(queued) == 4
        assert all(
            r.status_reason == "waiting for a concurrency slot: fn:f has 2 running" for r in queued
        )
        gate.set()
        await eventually(lambda: _count(app, ip.RunStatus.COMPLETED, 6))
    finally:
        worker.notify_shutdown()
        await task
        await app.close()
    assert peak[0] == 2
    assert order == list(range(6))  # not dropped, in order


async def _count(app: ip.App, status: ip.RunStatus, n: int) -> bool:
    return len((await app.list_runs(RunFilter(status=status))).items) == n


async def test_keys_take_turns_under_a_global_limit(harness: HarnessFactory) -> None:
    """100 keys x 5 runs, sent key after key, per-key limit 1 and global limit 10: each key's
    first run starts before any key's second run, and no claim exceeds either limit."""
    app = ip.App("t")
    order: list[str] = []
    running: Counter[str] = Counter()
    peaks = {"total": 0, "key": 0}

    @app.function(
        id="fair",
        trigger=ip.on_event("job"),
        concurrency=[Concurrency(10), Concurrency(1, key="event.data.k")],
    )
    async def fair(ctx: ip.Context) -> None:
        key = ctx.event.data["k"]
        order.append(key)
        running[key] += 1
        peaks["total"] = max(peaks["total"], sum(running.values()))
        peaks["key"] = max(peaks["key"], running[key])
        for _ in range(3):  # let every run of the claim be in flight at once
            await asyncio.sleep(0)
        running[key] -= 1

    async with harness(app) as h:
        await h.send([ip.Event("job", {"k": f"k{k:02d}"}) for k in range(100) for _ in range(5)])
        await h.settle()
        assert len(order) == 500
    assert peaks == {"total": 10, "key": 1}
    for round_ in range(5):
        assert sorted(order[round_ * 100 : (round_ + 1) * 100]) == [f"k{k:02d}" for k in range(100)]
    assert order[:10] == [f"k{k:02d}" for k in range(10)]


async def test_a_sleeping_run_holds_no_slot(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="f", trigger=ip.on_event("job"), concurrency=1)
    async def f(ctx: ip.Context) -> str:
        await ctx.step.sleep("nap", "1h")
        return "ok"

    async with harness(app) as h:
        await h.send([ip.Event("job"), ip.Event("job")])
        await h.run_ready()
        runs = await h.runs_of("f")
        assert [r.status for r in runs] == [ip.RunStatus.SLEEPING] * 2
        await h.advance("1h")
        assert await starts(h, "f") == [0, 0]
        assert {r.status for r in await h.runs_of("f")} == {ip.RunStatus.COMPLETED}


async def test_env_scope_shares_a_limit_across_functions(harness: HarnessFactory) -> None:
    app = ip.App("t")
    running: Counter[str] = Counter()
    peak = [0]

    async def body(ctx: ip.Context) -> None:
        running["x"] += 1
        peak[0] = max(peak[0], running["x"])
        for _ in range(3):
            await asyncio.sleep(0)
        running["x"] -= 1

    shared = Concurrency(2, key="'provider-a'", scope="env")
    app.function(id="a", trigger=ip.on_event("job"), concurrency=shared)(body)
    app.function(id="b", trigger=ip.on_event("job"), concurrency=shared)(body)
    async with harness(app) as h:
        await h.send([ip.Event("job") for _ in range(4)])
        await h.settle()
        assert len(await h.runs_of("a")) == len(await h.runs_of("b")) == 4
    assert peak[0] == 2


async def test_priority_moves_runs_ahead_and_behind(harness: HarnessFactory) -> None:
    app = ip.App("t")
    order: list[str] = []

    @app.function(id="f", trigger=ip.on_event("job"), concurrency=1, priority="event.data.p")
    async def f(ctx: ip.Context) -> None:
        order.append(ctx.event.data["name"])

    async with harness(app) as h:
        await h.send(ip.Event("job", {"name": "behind", "p": -60}))
        await h.send([ip.Event("job", {"name": f"plain{i}", "p": 0}) for i in range(3)])
        await h.send(ip.Event("job", {"name": "ahead", "p": 60}))
        await h.settle()
    assert order == ["ahead", "plain0", "plain1", "plain2", "behind"]


async def test_a_failing_priority_expression_queues_at_zero_with_a_note(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(id="f", trigger=ip.on_event("job"), priority="event.data.p * 2")
    async def f(ctx: ip.Context) -> str:
        return "ran"

    async with harness(app) as h:
        await h.send(ip.Event("job", {}))
        (run,) = await h.runs_of("f")
        assert run.priority == 0 and run.status_reason is not None
        assert run.status_reason.startswith("priority 0: expression 'event.data.p * 2' failed")
        await h.settle()
        (run,) = await h.runs_of("f")
        assert run.status is ip.RunStatus.COMPLETED


async def test_a_resumed_run_waits_for_a_slot_too(harness: HarnessFactory) -> None:
    """Concurrency counts executing runs: a run waking from a sleep waits for a free slot."""
    app = ip.App("t")
    gate = asyncio.Event()

    @app.function(id="f", trigger=ip.on_event("job"), concurrency=1)
    async def f(ctx: ip.Context) -> str:
        if ctx.event.data.get("hold"):
            await ctx.step.run("hold", gate.wait)
        else:
            await ctx.step.sleep("nap", "1s")
        return "ok"

    async with harness(app) as h:
        await h.send(ip.Event("job", {}))
        await h.run_ready()  # the sleeper parks
        await h.send(ip.Event("job", {"hold": True}))
        holder = asyncio.create_task(h.run_ready())
        await eventually(lambda: _any_running(h))
        h.clock.advance(1000)
        sleeper = (await h.runs_of("f"))[0]
        claimed = await h.engine.store.claim("other", ["f"], 10, h.now_ms, 60_000)
        assert claimed == []  # due, but the slot is held
        waiting = await h.run(sleeper.id)
        assert waiting.status is ip.RunStatus.SLEEPING and waiting.ready_at_ms == h.now_ms
        gate.set()
        await holder
        await h.settle()
        assert {r.status for r in await h.runs_of("f")} == {ip.RunStatus.COMPLETED}


async def _any_running(h: Harness) -> bool:
    return any(r.status is ip.RunStatus.RUNNING for r in await h.runs_of("f"))
