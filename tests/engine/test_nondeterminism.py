"""Replays are checked against the journal: a replay that reaches a step the journal does not
have while recorded steps are still unreached fails the run with `NondeterminismError`; parallel
branches replaying in their own order are not mistaken for that; `ctx.patched` lets old runs
finish on the old code path. On both stores."""

from __future__ import annotations

import asyncio

import inferpipe as ip
from inferpipe.core.errors import LeaseLost
from inferpipe.engine.context import Context
from tests.engine.conftest import HarnessFactory


def crash(ctx: Context) -> None:
    """Stop this execution as a crash would: nothing more of it is written (its lease is
    fenced), and another execution replays the run once the lease expires."""
    ctx._journal.lease_lost = True
    raise LeaseLost(ctx.run_id)


async def test_a_step_added_before_recorded_ones_fails_the_parked_run(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")
    version = {"code": 1}
    executed: list[str] = []

    @app.function(id="f", retries=3)
    async def f(ctx: ip.Context) -> str:
        if version["code"] == 2:  # deployed while the run sleeps
            await ctx.step.run("validate", lambda: executed.append("validate"))
        await ctx.step.run("charge", lambda: executed.append("charge"))
        await ctx.step.sleep("cool-off", "1h")
        await ctx.step.run("ship", lambda: executed.append("ship"))
        return "shipped"

    async with harness(app) as h:
        run_id = await h.invoke("f")
        await h.run_ready()
        version["code"] = 2
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.FAILED and run.error is not None
        assert run.error["code"] == "nondeterminism"
        assert "step 'validate'" in run.error["message"]
        assert "recorded step 'charge'" in run.error["message"]
        assert executed == ["charge"], "a step ran on a diverged replay"
        assert run.executions == 2, "a diverged replay was retried"
        # a new run takes the new code from the start
        fresh = await h.settle(await h.invoke("f"))
        assert fresh is not None and fresh.status is ip.RunStatus.COMPLETED


async def test_a_choice_outside_steps_is_caught_on_replay(harness: HarnessFactory) -> None:
    app = ip.App("t")
    coin = ["heads", "tails"]  # what `random.choice` would give on each execution

    @app.function(id="flip")
    async def flip(ctx: ip.Context) -> str:
        side = coin.pop(0)
        await ctx.step.run(side, lambda: side)
        await ctx.step.sleep("wait", "1m")
        return side

    async with harness(app) as h:
        run = await h.settle(await h.invoke("flip"))
        assert run is not None and run.status is ip.RunStatus.FAILED and run.error is not None
        assert run.error["type"] == ip.NondeterminismError.__name__
        assert "step 'tails'" in run.error["message"] and "step 'heads'" in run.error["message"]


async def test_parallel_branches_replaying_in_their_own_order_are_not_a_divergence(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")
    calls: list[str] = []
    b_done = asyncio.Event()

    @app.function(id="par")
    async def par(ctx: ip.Context) -> list[object]:
        async def first() -> str:
            async def slow() -> str:
                calls.append("a")
                if calls.count("a") == 1:
                    await b_done.wait()
                    await ctx._journal.flush()  # b1 and b2 are durable (pipelined otherwise)
                    crash(ctx)  # in flight at the crash: not recorded, b1 and b2 are
                return "a"

            # On replay this branch runs first and reaches "a", which the journal lacks,
            # while "b1" and "b2" of the other branch are still unvisited.
            return str(await ctx.step.run("a", slow))

        async def second() -> list[str]:
            one = await ctx.step.run("b1", lambda: calls.append("b1") or "b1")
            two = await ctx.step.run("b2", lambda: calls.append("b2") or "b2")
            b_done.set()
            return [one, two]

        both = list(await asyncio.gather(first(), second()))
        await ctx.step.sleep("rest", "1m")
        return [*both, await ctx.step.run("after", lambda: "after")]

    async with harness(app) as h:
        run = await h.settle(await h.invoke("par"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        assert run.output == ["a", ["b1", "b2"], "after"]
        assert calls == ["a", "b1", "b2", "a"]  # the step in flight ran again, nothing else
        assert run.executions == 3  # crashed, replayed to the sleep, resumed after it


async def test_a_divergence_inside_one_parallel_branch_is_caught(harness: HarnessFactory) -> None:
    app = ip.App("t")
    version = {"code": 1}

    @app.function(id="par")
    async def par(ctx: ip.Context) -> object:
        async def left() -> object:
            if version["code"] == 2:
                await ctx.step.run("left-new", lambda: "new")
            await ctx.step.run("left", lambda: "l")
            await ctx.step.sleep("left-wait", "1h")
            return "left"

        async def right() -> object:
            await ctx.step.run("right", lambda: "r")
            await ctx.step.sleep("right-wait", "2h")
            return "right"

        return list(await asyncio.gather(left(), right()))

    async with harness(app) as h:
        run_id = await h.invoke("par")
        await h.run_ready()
        version["code"] = 2
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.FAILED and run.error is not None
        assert run.error["code"] == "nondeterminism"
        assert "'left-new'" in run.error["message"] and "'left'" in run.error["message"]


async def test_patched_keeps_old_runs_on_the_old_path(harness: HarnessFactory) -> None:
    app = ip.App("t")
    version = {"code": 1}
    executed: list[str] = []

    @app.function(id="order")
    async def order(ctx: ip.Context) -> list[str]:
        await ctx.step.run("charge", lambda: executed.append(f"charge-{ctx.run_id}"))
        await ctx.step.sleep("cool-off", "1h")
        path = "old"
        if version["code"] == 2 and ctx.patched("notify-before-ship"):
            path = "new"
            await ctx.step.run("notify", lambda: executed.append(f"notify-{ctx.run_id}"))
        await ctx.step.run("ship", lambda: executed.append(f"ship-{ctx.run_id}"))
        await ctx.step.sleep("settle", "1h")
        return [path, "patched" if ctx.patched("notify-before-ship") else "not patched"]

    @app.function(id="late-start")
    async def late_start(ctx: ip.Context) -> str:
        await ctx.step.sleep("before", "3h")  # parked before the change, not past the patch
        if version["code"] == 2 and ctx.patched("audit"):
            await ctx.step.run("audit", lambda: "audited")
            return "new"
        return "old"

    async with harness(app) as h:
        past = await h.invoke("order")  # will be past the change when it resumes
        early = await h.invoke("late-start")
        await h.run_ready()
        await h.advance("1h")  # `past` resumes and ships under the old code, then sleeps
        assert (await h.run(past)).status is ip.RunStatus.SLEEPING
        version["code"] = 2
        fresh = await h.invoke("order")
        await h.settle()
        old_run, new_run = await h.run(past), await h.run(fresh)
        assert old_run.status is ip.RunStatus.COMPLETED, old_run.error
        assert old_run.output == ["old", "not patched"]  # decided once, recorded
        assert new_run.output == ["new", "patched"]
        assert f"notify-{past}" not in executed and f"notify-{fresh}" in executed
        assert (await h.run(early)).output == "new"  # had not got this far: takes the change
        markers = [s for s in await h.steps(past) if s.kind is ip.StepKind.PATCH]
        assert [(m.key, m.output) for m in markers] == [("patch:notify-before-ship", False)]


async def test_patched_refuses_an_empty_id() -> None:
    app = ip.App("t")

    @app.function(id="bad", retries=0)
    async def bad(ctx: ip.Context) -> bool:
        return ctx.patched("")

    from inferpipe.testing import Harness  # noqa: PLC0415

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("bad"))
        assert run is not None and run.status is ip.RunStatus.FAILED and run.error is not None
        assert "patch id must be a non-empty string" in run.error["message"]
