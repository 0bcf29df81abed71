"""An `invoke` step records its child's return value (what the API, CLI and dashboard show), or
fails with the child's error. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import inferpipe as ip
from tests.flow.conftest import HarnessFactory


def invoking_app() -> ip.App:
    app = ip.App("t")

    @app.function(id="double")
    async def double(ctx: ip.Context) -> dict[str, int]:
        if ctx.input["x"] < 0:
            raise ip.NonRetriableError("negative input")
        return {"doubled": ctx.input["x"] * 2}

    @app.function(id="sleepy")
    async def sleepy(ctx: ip.Context) -> None:
        await ctx.step.sleep("nap", "1d")

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> object:
        good = await ctx.step.invoke("good", "double", {"x": 21})
        try:
            await ctx.step.invoke("bad", "double", {"x": -1})
        except ip.StepError as err:
            bad = str(err)
        try:
            await ctx.step.invoke("slow", "sleepy", timeout="1h")
        except ip.StepError as err:
            slow = str(err)
        return {"good": good, "bad": bad, "slow": slow}

    return app


async def test_an_invoke_step_records_the_child_return_value(harness: HarnessFactory) -> None:
    async with harness(invoking_app()) as h:
        run = await h.settle(await h.invoke("parent"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run
        assert run.output is not None and run.output["good"] == {"doubled": 42}
        assert "negative input" in run.output["bad"] and "did not finish" in run.output["slow"]
        steps = {s.key: s for s in await h.steps(run.id)}
        good = steps["good"]
        assert good.status is ip.StepStatus.COMPLETED and good.output == {"doubled": 42}
        assert good.error is None
        bad = steps["bad"]
        assert bad.status is ip.StepStatus.FAILED and bad.output is None and bad.error is not None
        assert bad.error["message"] == "invoked double failed: negative input"
        assert bad.error["type"] == "NonRetriableError"
        assert bad.error["run_id"] == bad.input["run_id"]
        slow = steps["slow"]
        assert slow.status is ip.StepStatus.FAILED and slow.error is not None
        assert slow.error["code"] == "invoke_timeout"


async def test_a_gathered_invoke_of_a_child_returning_none(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="nothing")
    async def nothing(ctx: ip.Context) -> None:
        return None

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> object:
        return await asyncio.gather(
            ctx.step.invoke("a", "nothing", timeout="1h"), ctx.step.invoke("b", "nothing")
        )

    async with harness(app) as h:
        run = await h.settle(await h.invoke("parent"))
        assert (
            run is not None and run.status is ip.RunStatus.COMPLETED and run.output == [None, None]
        )
        assert [(s.status, s.output) for s in await h.steps(run.id)] == [
            (ip.StepStatus.COMPLETED, None),
            (ip.StepStatus.COMPLETED, None),
        ]
