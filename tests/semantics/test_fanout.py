"""Fan-out: a parent waiting on many children is not replayed once per child finishing; it
batches its wake-ups and resumes at once when its last wait resolves. On SQLite and
PostgreSQL (`python -m bench.fanout` measures the time)."""

from __future__ import annotations

import asyncio

import inferpipe as ip
from inferpipe.engine.executor import WAKE_BATCH_MAX_MS
from tests.flow.conftest import HarnessFactory

CHILDREN = 250


async def test_a_parent_gathering_children_is_replayed_a_bounded_number_of_times(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")
    executions: list[int] = []

    @app.function(id="child")
    async def child(ctx: ip.Context) -> int:
        return int(ctx.input["i"])

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> int:
        executions.append(1)
        results = await asyncio.gather(
            *(ctx.step.invoke(f"c{i}", "child", {"i": i}) for i in range(CHILDREN))
        )
        return sum(results)

    async with harness(app) as h:
        # The burst worker takes 100 ready runs at a time: before, the parent was replayed
        # with every wave of children (CHILDREN / 99 times), each replay visiting every invoke.
        run = await h.settle(await h.invoke("parent"))
        assert run is not None and run.output == CHILDREN * (CHILDREN - 1) // 2
        # started; resumed once by the first wave, which it could not continue from; then
        # resumed when the last child finished
        assert len(executions) == 3


async def test_a_run_batching_its_wakes_still_resumes_on_each_event(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")
    executions: list[int] = []

    @app.function(id="three")
    async def three(ctx: ip.Context) -> list[str]:
        executions.append(1)
        found = await asyncio.gather(
            *(ctx.step.wait_for_event(k, event=f"go/{k}", timeout="1d") for k in "abc")
        )
        return [e.name for e in found if e is not None]

    async with harness(app) as h:
        run_id = await h.invoke("three")
        await h.run_ready()
        await h.send(ip.Event("go/a", {}))
        await h.run_ready()  # resumed at once; it still waits on b and c
        assert len(executions) == 2
        await h.send(ip.Event("go/b", {}))
        await h.run_ready()  # c is still open: this wake is batched
        assert len(executions) == 2
        await h.advance(f"{WAKE_BATCH_MAX_MS}ms")  # at the latest after the batch time
        assert len(executions) == 3
        await h.send(ip.Event("go/c", {}))  # its last open wait: resumed at once
        await h.run_ready()
        run = await h.run(run_id)
        assert run.status is ip.RunStatus.COMPLETED and run.output == ["go/a", "go/b", "go/c"]
        assert len(executions) == 4


async def test_a_run_woken_by_the_first_of_many_events_resumes_at_once(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(id="first")
    async def first(ctx: ip.Context) -> str:
        waits = [
            asyncio.ensure_future(ctx.step.wait_for_event(k, event=f"go/{k}", timeout="1d"))
            for k in "abc"
        ]
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        event = done.pop().result()
        return await ctx.step.run("handle", lambda: f"handled {event.name}")

    async with harness(app) as h:
        run_id = await h.invoke("first")
        await h.run_ready()
        await h.send(ip.Event("go/b", {}))
        await h.run_ready()
        run = await h.run(run_id)
        assert run.status is ip.RunStatus.COMPLETED and run.output == "handled go/b"
