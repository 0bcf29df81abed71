"""Behaviour of each step kind, through the public API on a virtual clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

import inferpipe as ip
from inferpipe.testing import Harness


def make_app() -> ip.App:
    return ip.App("test")


async def test_run_step_records_once_and_replays() -> None:
    app = make_app()
    calls: list[str] = []

    def compute(x: int) -> dict[str, object]:
        calls.append("compute")
        return {"value": x * 2, "tuple": (1, 2)}

    @app.function(id="f")
    async def f(ctx: ip.Context) -> object:
        first = await ctx.step.run("compute", compute, 21)
        await ctx.step.sleep("pause", "1h")
        return first

    async with Harness(app) as h:
        run_id = await h.invoke("f")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        # the returned value is the stored one: a tuple comes back as a list on first run too
        assert run.output == {"value": 42, "tuple": [1, 2]}
        assert calls == ["compute"]
        steps = await h.steps(run_id)
        assert [s.key for s in steps] == ["compute", "pause"]
        assert steps[0].input == {"args": [21], "kwargs": {}}


async def test_sync_step_runs_off_the_event_loop() -> None:
    app = make_app()
    loops: list[bool] = []

    def blocking() -> str:
        try:
            asyncio.get_running_loop()
            loops.append(True)
        except RuntimeError:
            loops.append(False)
        return "done"

    @app.function(id="f")
    async def f(ctx: ip.Context) -> str:
        return str(await ctx.step.run("blocking", blocking))

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.output == "done"
        assert loops == [False]


async def test_repeated_step_ids_get_occurrence_suffixes() -> None:
    app = make_app()

    @app.function(id="loop")
    async def loop(ctx: ip.Context) -> list[int]:
        return [await ctx.step.run("item", lambda i=i: i * i) for i in range(3)]

    async with Harness(app) as h:
        run_id = await h.invoke("loop")
        run = await h.settle(run_id)
        assert run is not None and run.output == [0, 1, 4]
        assert [s.key for s in await h.steps(run_id)] == ["item", "item:1", "item:2"]


async def test_nested_step_is_a_clear_error() -> None:
    app = make_app()

    @app.function(id="nest", retries=0)
    async def nest(ctx: ip.Context) -> None:
        async def outer() -> int:
            return int(await ctx.step.run("inner", lambda: 1))

        await ctx.step.run("outer", outer)

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("nest"))
        assert run is not None and run.status is ip.RunStatus.FAILED
        assert run.error is not None
        assert "'inner' was called inside step 'outer'" in run.error["message"]


async def test_sleep_for_seven_days_completes_at_once_on_virtual_clock() -> None:
    app = make_app()

    @app.function(id="sleeper")
    async def sleeper(ctx: ip.Context) -> str:
        await ctx.step.sleep("week", "7d")
        return "awake"

    async with Harness(app) as h:
        start = h.now_ms
        run_id = await h.invoke("sleeper")
        await h.run_ready()
        assert (await h.run(run_id)).status is ip.RunStatus.SLEEPING
        await h.advance("6d")
        assert (await h.run(run_id)).status is ip.RunStatus.SLEEPING
        await h.advance("1d")
        run = await h.run(run_id)
        assert run.status is ip.RunStatus.COMPLETED and run.output == "awake"
        assert run.finished_at_ms is not None and run.finished_at_ms - start == 7 * 86_400_000


async def test_sleep_until_a_datetime() -> None:
    app = make_app()

    @app.function(id="until")
    async def until(ctx: ip.Context) -> int:
        await ctx.step.sleep_until("later", datetime(2030, 1, 1, tzinfo=UTC))
        return 1

    async with Harness(app) as h:
        run_id = await h.invoke("until")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        assert run.finished_at_ms == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)


async def test_wait_for_event_matches_on_cel_with_trigger_binding() -> None:
    app = make_app()

    @app.function(id="approval", trigger=ip.on_event("order/created"))
    async def approval(ctx: ip.Context) -> object:
        ev = await ctx.step.wait_for_event(
            "approved",
            event="order/approved",
            timeout="2d",
            if_exp="async.data.order_id == event.data.order_id",
        )
        return ev.data if ev else None

    async with Harness(app) as h:
        await h.send(
            [
                ip.Event("order/created", {"order_id": "A"}),
                ip.Event("order/created", {"order_id": "B"}),
            ]
        )
        await h.run_ready()
        await h.send(ip.Event("order/approved", {"order_id": "B", "by": "ann"}))
        await h.run_ready()
        runs = {r.input[0]["data"]["order_id"]: r for r in await h.runs_of("approval")}
        assert runs["B"].status is ip.RunStatus.COMPLETED
        assert (await h.run(runs["B"].id)).output == {"order_id": "B", "by": "ann"}
        assert (await h.run(runs["A"].id)).status is ip.RunStatus.WAITING
        await h.settle()
        timed_out = await h.run(runs["A"].id)
        assert timed_out.status is ip.RunStatus.COMPLETED and timed_out.output is None


async def test_wait_lookback_matches_an_event_sent_just_before() -> None:
    app = make_app()

    @app.function(id="late-waiter")
    async def late_waiter(ctx: ip.Context) -> object:
        ev = await ctx.step.wait_for_event(
            "w", event="sig/ready", timeout="1h", if_exp="async.data.k == 'x'", lookback="5m"
        )
        return ev.data if ev else None

    @app.function(id="no-lookback")
    async def no_lookback(ctx: ip.Context) -> object:
        ev = await ctx.step.wait_for_event("w", event="sig/ready", timeout="1h")
        return ev.data if ev else None

    async with Harness(app) as h:
        await h.send(ip.Event("sig/ready", {"k": "x"}))
        await h.advance("1m")
        with_lb = await h.invoke("late-waiter")
        without = await h.invoke("no-lookback")
        await h.settle()
        assert (await h.run(with_lb)).output == {"k": "x"}
        assert (await h.run(without)).output is None


async def test_send_event_step_triggers_once_across_replays() -> None:
    app = make_app()
    received: list[str] = []

    @app.function(id="sender")
    async def sender(ctx: ip.Context) -> list[str]:
        ids = await ctx.step.send_event("notify", ip.Event("note/sent", {"n": 1}))
        await ctx.step.sleep("s", "1m")  # forces a replay after the send
        return ids

    @app.function(id="receiver", trigger=ip.on_event("note/sent"))
    async def receiver(ctx: ip.Context) -> None:
        received.append(ctx.event.data["n"])

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("sender"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        assert received == [1]
        assert len(await h.runs_of("receiver")) == 1


async def test_invoke_returns_child_result_and_raises_its_failure() -> None:
    app = make_app()

    @app.function(id="double")
    async def double(ctx: ip.Context) -> int:
        return int(ctx.event.data["n"]) * 2

    @app.function(id="broken", retries=0)
    async def broken(ctx: ip.Context) -> None:
        raise ValueError("child exploded")

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> dict[str, object]:
        value = await ctx.step.invoke("double", "double", {"n": 21})
        try:
            await ctx.step.invoke("broken", "broken", {})
        except ip.StepError as exc:
            return {"value": value, "error": exc.error_message}
        return {"value": value}

    async with Harness(app) as h:
        run_id = await h.invoke("parent")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        assert run.output["value"] == 42
        assert "child exploded" in run.output["error"]
        children = await h.runs_of("double")
        assert children[0].parent_run_id == run_id


async def test_parallel_steps_with_gather_including_sleeps_and_waits() -> None:
    app = make_app()

    @app.function(id="fan")
    async def fan(ctx: ip.Context) -> list[object]:
        async def branch_a() -> object:
            await ctx.step.sleep("a-sleep", "1h")
            return await ctx.step.run("a-run", lambda: "a")

        async def branch_b() -> object:
            ev = await ctx.step.wait_for_event("b-wait", event="go", timeout="1d")
            return ev.data["v"] if ev else None

        return list(await asyncio.gather(branch_a(), branch_b(), ctx.step.run("c", lambda: "c")))

    async with Harness(app) as h:
        run_id = await h.invoke("fan")
        await h.run_ready()
        assert (await h.run(run_id)).status is ip.RunStatus.SLEEPING
        await h.send(ip.Event("go", {"v": "b"}))
        await h.run_ready()
        await h.advance("1h")
        run = await h.run(run_id)
        assert run.status is ip.RunStatus.COMPLETED
        assert run.output == ["a", "b", "c"]


async def test_logger_stores_each_line_once_despite_replays() -> None:
    app = make_app()

    @app.function(id="logs")
    async def logs(ctx: ip.Context) -> None:
        ctx.logger.info("start", user="u1")
        await ctx.step.sleep("s1", "1m")
        ctx.logger.info("middle")
        await ctx.step.sleep("s2", "1m")
        ctx.logger.warning("end")

    async with Harness(app) as h:
        run_id = await h.invoke("logs")
        await h.settle()
        lines = await h.logs(run_id)
        assert [(line.level, line.message) for line in lines] == [
            ("info", "start"),
            ("info", "middle"),
            ("warning", "end"),
        ]
        assert lines[0].meta == {"user": "u1"}


async def test_non_serializable_output_fails_the_step_clearly() -> None:
    app = make_app()

    @app.function(id="bad-output", retries=3)
    async def bad_output(ctx: ip.Context) -> None:
        await ctx.step.run("obj", object)

    async with Harness(app) as h:
        run_id = await h.invoke("bad-output")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.FAILED
        assert (
            run.error is not None
            and "output of step 'obj' is not JSON-serializable" in run.error["message"]
        )
        steps = await h.steps(run_id)
        assert steps[0].attempt == 0  # not retried: another attempt cannot fix it


async def test_oversized_step_output_is_refused() -> None:
    app = ip.App("small", limits=ip.Limits(step_output_bytes=1000))

    @app.function(id="big", retries=0)
    async def big(ctx: ip.Context) -> None:
        await ctx.step.run("blob", lambda: "x" * 5000)

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("big"))
        assert run is not None and run.status is ip.RunStatus.FAILED
        assert run.error is not None and "over the limit of 1000 bytes" in run.error["message"]


@pytest.mark.parametrize("bad", ["async.data.x ==", "", "unknown_var == 1"])
async def test_invalid_wait_expression_fails_the_run_with_its_text(bad: str) -> None:
    app = make_app()

    @app.function(id="w", retries=0)
    async def w(ctx: ip.Context) -> None:
        await ctx.step.wait_for_event("w", event="e", timeout="1h", if_exp=bad or " ")

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("w"))
        assert run is not None and run.status is ip.RunStatus.FAILED
        assert run.error is not None and run.error["code"] == "invalid_expression"


async def test_feature_steps_record_kind_input_and_meta() -> None:
    app = make_app()

    @app.function(id="model")
    async def model(ctx: ip.Context) -> object:
        return await ctx.step.run(
            "call-model",
            lambda prompt: {"text": prompt.upper(), "tokens": 7},
            "hi",
            _kind=ip.StepKind.LLM,
            _input={"prompt": "hi", "api_key": "sk-secret"},
            _meta=lambda out: {"usage": {"output_tokens": out["tokens"]}},
        )

    async with Harness(app) as h:
        run_id = await h.invoke("model")
        run = await h.settle(run_id)
        assert run is not None and run.output == {"text": "HI", "tokens": 7}
        (step,) = await h.steps(run_id)
        assert step.kind is ip.StepKind.LLM
        assert step.meta == {"usage": {"output_tokens": 7}}
        assert step.input["prompt"] == "hi" and "sk-secret" not in str(step.input)
