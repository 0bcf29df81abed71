"""Cancellation: a cancel accepted before the run's finish is committed wins, and a run that no
worker executes is finalized at once. On SQLite and PostgreSQL."""

from __future__ import annotations

import inferpipe as ip
from tests.flow.conftest import HarnessFactory


async def test_a_cancel_accepted_while_the_last_step_runs_wins(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="one-step")
    async def one_step(ctx: ip.Context) -> str:
        async def last() -> str:
            await h.app.cancel(ctx.run_id, "stop now")  # accepted while this step runs
            return "done"

        return str(await ctx.step.run("last", last))

    async with harness(app) as h:
        run = await h.settle(await h.invoke("one-step"))
        assert run is not None and run.status is ip.RunStatus.CANCELLED
        assert run.status_reason == "stop now" and run.output is None
        assert [s.key for s in await h.steps(run.id)] == ["last"]  # the step in flight finished


async def test_a_cancel_of_a_run_without_steps_wins(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="no-steps")
    async def no_steps(ctx: ip.Context) -> str:
        await h.app.cancel(ctx.run_id, "not needed")
        return "finished anyway"

    async with harness(app) as h:
        run = await h.settle(await h.invoke("no-steps"))
        assert run is not None and run.status is ip.RunStatus.CANCELLED
        assert run.status_reason == "not needed" and run.output is None


async def test_a_cancel_wins_over_a_failure(harness: HarnessFactory) -> None:
    app = ip.App("t")
    failures: list[str] = []

    async def note_failure(ctx: ip.Context) -> None:
        failures.append(ctx.run_id)

    @app.function(id="fails", on_failure=note_failure)
    async def fails(ctx: ip.Context) -> None:
        await h.app.cancel(ctx.run_id, "cancelled first")
        raise ip.NonRetriableError("then it failed")

    async with harness(app) as h:
        run = await h.settle(await h.invoke("fails"))
        assert run is not None and run.status is ip.RunStatus.CANCELLED and run.error is None
        assert failures == []  # a cancelled run is not a failed one: no on_failure


async def test_a_cancel_on_event_during_the_last_step_wins(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(
        id="order",
        trigger=ip.on_event("order/placed"),
        cancel_on=ip.CancelOn("order/withdrawn", if_exp="async.data.id == event.data.id"),
    )
    async def order(ctx: ip.Context) -> str:
        async def ship() -> str:
            await h.send(ip.Event("order/withdrawn", {"id": ctx.event.data["id"]}))
            return "shipped"

        return str(await ctx.step.run("ship", ship))

    async with harness(app) as h:
        await h.send(ip.Event("order/placed", {"id": 7}))
        await h.settle()
        (run,) = await h.runs_of("order")
        assert run.status is ip.RunStatus.CANCELLED
        assert run.status_reason is not None and "order/withdrawn" in run.status_reason


async def test_cancelling_a_parked_run_shows_it_cancelled_at_once(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(id="sleepy")
    async def sleepy(ctx: ip.Context) -> None:
        await ctx.step.sleep("nap", "30d")

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> str:
        try:
            await ctx.step.invoke("child", "sleepy")
        except ip.StepError as err:
            return f"child failed: {err}"
        return "child completed"

    async with harness(app) as h:
        parent_id = await h.invoke("parent")
        await h.run_ready()  # the parent waits on its child, which sleeps; no worker runs now
        (child,) = await h.runs_of("sleepy")
        assert child.status is ip.RunStatus.SLEEPING
        answered = await h.app.cancel(child.id, "no longer needed")
        assert answered.status is ip.RunStatus.CANCELLED
        run = await h.run(child.id)
        assert run.status is ip.RunStatus.CANCELLED and run.status_reason == "no longer needed"
        assert run.finished_at_ms == h.now_ms
        # its end was announced as any finish is: the invoker resumes with the cancellation
        done = await h.settle(parent_id)
        assert done is not None and done.output is not None
        assert done.output.startswith("child failed") and "cancelled" in done.output


async def test_a_cancel_on_event_for_a_parked_run_shows_it_cancelled_at_once(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(
        id="reminder",
        trigger=ip.on_event("cart/abandoned"),
        cancel_on=ip.CancelOn("cart/purchased", if_exp="async.data.cart == event.data.cart"),
    )
    async def reminder(ctx: ip.Context) -> str:
        await ctx.step.sleep("wait", "1d")
        return "reminded"

    async with harness(app) as h:
        await h.send(ip.Event("cart/abandoned", {"cart": 1}))
        await h.run_ready()
        await h.send(ip.Event("cart/purchased", {"cart": 1}))
        (run,) = await h.runs_of("reminder")
        assert run.status is ip.RunStatus.CANCELLED
        assert run.status_reason is not None and "cart/purchased" in run.status_reason
