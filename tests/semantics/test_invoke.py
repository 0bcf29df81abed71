"""An `invoke` step records its child's return value (what the API, CLI and dashboard show), or
fails with the child's error. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

import inferpipe as ip
from inferpipe.core.events import FUNCTION_FINISHED, Event, read_invoke_step
from inferpipe.core.records import StepKind, StepRecord, StepStatus
from inferpipe.testing import Harness
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


def old_envelope(child_run_id: str, status: str, output: object, error: object) -> bytes:
    """What an invoke step recorded before it kept the child's return value: the child's
    whole `function.finished` event."""
    data = {"run_id": child_run_id, "function_id": "double", "status": status}
    event = Event(FUNCTION_FINISHED, {**data, "output": output, "error": error}, id="f", ts_ms=1)
    return orjson.dumps(event.as_dict())


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_an_invoke_step_recorded_as_the_child_event_replays_as_its_value(
    tmp_path: Path, status: str
) -> None:
    app = ip.App("t")

    @app.function(id="double")
    async def double(ctx: ip.Context) -> int:
        return int(ctx.input["x"]) * 2

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> object:
        try:
            value = await ctx.step.invoke("child", "double", {"x": 21})
        except ip.StepError as err:
            value = f"error: {err}"
        await ctx.step.sleep("pause", "1h")
        return value

    async with Harness(app, path=tmp_path / "t.db") as h:
        run_id = await h.invoke("parent")
        await h.run_ready()
        steps = {s.key: s for s in await h.steps(run_id)}
        child = steps["child"]
        assert child.output == 42 and steps["pause"].status is ip.StepStatus.SLEEPING
        error = {"code": "boom", "type": "ValueError", "message": "boom"}
        envelope = (
            old_envelope(child.input["run_id"], "completed", 42, None)
            if status == "completed"
            else old_envelope(child.input["run_id"], "failed", None, error)
        )
        with sqlite3.connect(h.path) as conn:  # the record as the old code wrote it
            conn.execute(
                "UPDATE steps SET status = 'completed', output = ?, error = NULL"
                " WHERE run_id = ? AND key = 'child'",
                (envelope, run_id),
            )
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run
        child = {s.key: s for s in await h.steps(run_id)}["child"]
        if status == "completed":
            assert run.output == 42
            assert child.status is ip.StepStatus.COMPLETED and child.output == 42
        else:
            assert (
                run.output == "error: step 'child' failed: ValueError: invoked double failed: boom"
            )
            assert child.status is ip.StepStatus.FAILED and child.output is None
            assert child.error is not None and child.error["type"] == "ValueError"


def test_an_invoke_step_recorded_completed_at_its_timeout_reads_as_timed_out() -> None:
    old = StepRecord(
        "r",
        "k",
        "k",
        StepKind.INVOKE,
        StepStatus.COMPLETED,
        input={"function_id": "double"},
        output=None,
        finished_at_ms=2_000,
        wake_at_ms=2_000,
    )
    read = read_invoke_step(old)
    assert read.status is StepStatus.FAILED and read.error is not None
    assert read.error["code"] == "invoke_timeout"
    assert "double did not finish in time" in read.error["message"]
    # a child that returned None before the timeout, as recorded now, is left alone
    new = StepRecord(
        "r",
        "k",
        "k",
        StepKind.INVOKE,
        StepStatus.COMPLETED,
        output=None,
        finished_at_ms=1_000,
        wake_at_ms=2_000,
    )
    assert read_invoke_step(new) is new
