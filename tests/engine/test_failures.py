"""Retries, failures, on_failure, re-runs, cancellation and timeouts."""

from __future__ import annotations

import pytest

import inferpipe as ip
from inferpipe.core.events import FUNCTION_FAILED
from inferpipe.testing import Harness


async def test_step_retries_with_backoff_then_succeeds() -> None:
    app = ip.App("t")
    attempts: list[int] = []

    @app.function(id="flaky", retries=4, backoff=ip.Backoff(base_s=2, jitter=0))
    async def flaky(ctx: ip.Context) -> str:
        def call() -> str:
            attempts.append(ctx.attempt)
            if len(attempts) < 3:
                raise ConnectionError("upstream down")
            return "ok"

        return str(await ctx.step.run("call", call))

    async with Harness(app) as h:
        start = h.now_ms
        run_id = await h.invoke("flaky")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED and run.output == "ok"
        assert attempts == [0, 1, 2]
        step = (await h.steps(run_id))[0]
        assert step.attempt == 2
        assert [a["message"] for a in step.meta["attempts"]] == ["upstream down"] * 2
        # backoff 2 s then 4 s, no jitter
        assert run.finished_at_ms == start + 6000


async def test_default_is_five_attempts_then_step_error_reaches_user_code() -> None:
    app = ip.App("t")
    tries: list[int] = []

    @app.function(id="always-fails")
    async def always_fails(ctx: ip.Context) -> str:
        def call() -> None:
            tries.append(1)
            raise RuntimeError("nope")

        try:
            await ctx.step.run("call", call)
        except ip.StepError as exc:
            return f"handled: {exc.error_type}: {exc.error_message}"
        return "unreachable"

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("always-fails"))
        assert run is not None and run.output == "handled: RuntimeError: nope"
        assert len(tries) == 5


async def test_non_retriable_and_retry_after() -> None:
    app = ip.App("t")
    counts = {"nr": 0, "ra": 0}

    @app.function(id="nr")
    async def nr(ctx: ip.Context) -> None:
        def call() -> None:
            counts["nr"] += 1
            raise ip.NonRetriableError("bad request")

        await ctx.step.run("call", call)

    @app.function(id="ra")
    async def ra(ctx: ip.Context) -> str:
        def call() -> str:
            counts["ra"] += 1
            if counts["ra"] == 1:
                raise ip.RetryAfterError("rate limited", 90)
            return "ok"

        return str(await ctx.step.run("call", call))

    async with Harness(app) as h:
        nr_run = await h.settle(await h.invoke("nr"))
        assert nr_run is not None and nr_run.status is ip.RunStatus.FAILED and counts["nr"] == 1
        start = h.now_ms
        ra_id = await h.invoke("ra")
        ra_run = await h.settle(ra_id)
        assert ra_run is not None and ra_run.output == "ok"
        assert ra_run.finished_at_ms == start + 90_000


async def test_uncaught_failure_sends_failed_event_and_runs_on_failure() -> None:
    app = ip.App("t")
    handled: list[dict[str, object]] = []

    async def on_failure(ctx: ip.Context) -> None:
        handled.append(ctx.event.data)

    @app.function(id="doomed", retries=1, on_failure=on_failure, trigger=ip.on_event("job/start"))
    async def doomed(ctx: ip.Context) -> None:
        await ctx.step.run("explode", lambda: 1 / 0)

    async with Harness(app) as h:
        await h.send(ip.Event("job/start", {"job": 7}))
        await h.settle()
        (run,) = await h.runs_of("doomed")
        assert run.status is ip.RunStatus.FAILED
        assert run.error is not None and "ZeroDivisionError" in run.error["message"]
        assert len(handled) == 1
        assert handled[0]["run_id"] == run.id and handled[0]["event"]["data"] == {"job": 7}  # type: ignore[index]
        failed = await h.engine.store.list_events(name=FUNCTION_FAILED)
        assert [e["data"]["run_id"] for e in failed.items] == [run.id]


async def test_rerun_from_start_and_from_failed_step() -> None:
    app = ip.App("t")
    calls = {"prepare": 0, "finish": 0}
    broken = {"on": True}

    @app.function(id="two-steps", retries=0)
    async def two_steps(ctx: ip.Context) -> str:
        def prepare() -> str:
            calls["prepare"] += 1
            return "prepared"

        def finish() -> str:
            calls["finish"] += 1
            if broken["on"]:
                raise RuntimeError("still broken")
            return "finished"

        a = await ctx.step.run("prepare", prepare)
        b = await ctx.step.run("finish", finish)
        return f"{a}+{b}"

    async with Harness(app) as h:
        first = await h.settle(await h.invoke("two-steps"))
        assert first is not None and first.status is ip.RunStatus.FAILED
        broken["on"] = False
        resumed = await h.app.rerun(first.id, from_failed_step=True)
        assert resumed.rerun_of == first.id
        done = await h.settle(resumed.id)
        assert done is not None and done.output == "prepared+finished"
        assert calls == {"prepare": 1, "finish": 2}
        again = await h.app.rerun(first.id)
        await h.settle()
        assert (await h.run(again.id)).status is ip.RunStatus.COMPLETED
        assert calls == {"prepare": 2, "finish": 3}
        # a run that did not fail has no failed step to resume at; one unfinished, no end
        with pytest.raises(ip.RunStateError, match="is completed, not failed"):
            await h.app.rerun(again.id, from_failed_step=True)
        waiting = await h.invoke("two-steps")
        with pytest.raises(ip.RunStateError, match="is still queued"):
            await h.app.rerun(waiting)
        with pytest.raises(ip.RunStateError, match="has already finished"):
            await h.app.cancel(first.id)


async def test_cancel_by_call_lets_the_step_in_flight_finish_and_nothing_after() -> None:
    app = ip.App("t")
    ran: list[str] = []

    @app.function(id="long")
    async def long(ctx: ip.Context) -> None:
        async def first() -> None:
            ran.append("first")
            await h.app.cancel(ctx.run_id)  # cancelled while this step is in flight

        await ctx.step.run("first", first)
        await ctx.step.run("second", lambda: ran.append("second"))

    async with Harness(app) as h:
        run_id = await h.invoke("long")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.CANCELLED
        assert ran == ["first"]
        assert [s.key for s in await h.steps(run_id)] == ["first"]


async def test_cancel_a_sleeping_run() -> None:
    app = ip.App("t")

    @app.function(id="sleepy")
    async def sleepy(ctx: ip.Context) -> None:
        await ctx.step.sleep("nap", "30d")

    async with Harness(app) as h:
        run_id = await h.invoke("sleepy")
        await h.run_ready()
        await h.app.cancel(run_id, "no longer needed")
        await h.run_ready()
        run = await h.run(run_id)
        assert run.status is ip.RunStatus.CANCELLED and run.status_reason == "no longer needed"


async def test_cancel_on_event_matching_the_trigger() -> None:
    app = ip.App("t")

    @app.function(
        id="reminder",
        trigger=ip.on_event("cart/abandoned"),
        cancel_on=ip.CancelOn("cart/purchased", if_exp="async.data.cart == event.data.cart"),
    )
    async def reminder(ctx: ip.Context) -> str:
        await ctx.step.sleep("wait", "1d")
        return "reminded"

    async with Harness(app) as h:
        await h.send(
            [ip.Event("cart/abandoned", {"cart": 1}), ip.Event("cart/abandoned", {"cart": 2})]
        )
        await h.run_ready()
        await h.send(ip.Event("cart/purchased", {"cart": 2}))
        await h.settle()
        by_cart = {r.input[0]["data"]["cart"]: r for r in await h.runs_of("reminder")}
        assert by_cart[1].status is ip.RunStatus.COMPLETED
        assert by_cart[2].status is ip.RunStatus.CANCELLED
        assert by_cart[2].status_reason is not None and "cart/purchased" in by_cart[2].status_reason


async def test_finish_timeout_cancels_a_run_that_sleeps_too_long() -> None:
    app = ip.App("t")

    @app.function(id="slow", timeouts=ip.Timeouts(finish="1h"))
    async def slow(ctx: ip.Context) -> None:
        await ctx.step.sleep("long", "1d")
        await ctx.step.run("after", lambda: None)

    async with Harness(app) as h:
        start = h.now_ms
        run = await h.settle(await h.invoke("slow"))
        assert run is not None and run.status is ip.RunStatus.CANCELLED
        assert run.status_reason == "finish timeout reached"
        assert run.finished_at_ms == start + 3_600_000


async def test_start_timeout_cancels_a_run_never_started() -> None:
    app = ip.App("t")

    @app.function(id="stale", timeouts=ip.Timeouts(start="10s"))
    async def stale(ctx: ip.Context) -> str:
        return "ran"

    async with Harness(app) as h:
        run_id = await h.invoke("stale")
        h.clock.advance(60_000)
        await h.run_ready()
        run = await h.run(run_id)
        assert run.status is ip.RunStatus.CANCELLED
        assert run.status_reason is not None and "start timeout" in run.status_reason


async def test_cron_trigger_fires_each_tick_once() -> None:
    app = ip.App("t")

    @app.function(id="every-5m", trigger=ip.on_cron("*/5 * * * *"))
    async def every(ctx: ip.Context) -> int:
        return int(ctx.event.data["tick_ms"])

    async with Harness(app) as h:
        await h.advance("30m")
        runs = await h.runs_of("every-5m")
        assert len(runs) == 6
        ticks = [r.input[0]["data"]["tick_ms"] for r in runs]
        assert all(t % 300_000 == 0 for t in ticks) and len(set(ticks)) == 6


async def test_event_trigger_filter_and_producer_id_dedupe() -> None:
    app = ip.App("t")

    @app.function(id="vip", trigger=ip.on_event("user/signup", if_exp="event.data.plan == 'pro'"))
    async def vip(ctx: ip.Context) -> None:
        return None

    async with Harness(app) as h:
        ids = await h.send(
            [
                ip.Event("user/signup", {"plan": "pro"}, id="signup-1"),
                ip.Event("user/signup", {"plan": "free"}, id="signup-2"),
            ]
        )
        assert ids == ["signup-1", "signup-2"]
        assert await h.send(ip.Event("user/signup", {"plan": "pro"}, id="signup-1")) == []
        await h.settle()
        assert len(await h.runs_of("vip")) == 1
        h.clock.advance(25 * 3600 * 1000)
        assert await h.send(ip.Event("user/signup", {"plan": "pro"}, id="signup-1")) == ["signup-1"]


async def test_bad_input_is_refused_clearly_and_loses_nothing() -> None:
    app = ip.App("t", limits=ip.Limits(event_bytes=2000))

    @app.function(id="f", trigger=ip.on_event("ok"))
    async def f(ctx: ip.Context) -> None:
        return None

    async with Harness(app) as h:
        with pytest.raises(ip.InvalidEventError, match="event has no name"):
            await h.send(ip.Event(""))
        with pytest.raises(
            ip.PayloadTooLargeError, match=r"event .ok. is .* over the limit of 2000"
        ):
            await h.send(ip.Event("ok", {"blob": "x" * 5000}))
        with pytest.raises(ip.InvalidEventError, match="'data' must be a JSON object"):
            await h.send(ip.Event("ok", data=[1, 2]))  # type: ignore[arg-type]
        with pytest.raises(ip.UnknownFunctionError, match="'nope'"):
            await h.invoke("nope")
        # a batch with one bad event stores none of it
        with pytest.raises(ip.InvalidEventError):
            await h.send([ip.Event("ok", {"n": 1}), ip.Event("  ")])
        assert (await h.engine.store.list_events()).items == []
        assert await h.send(ip.Event("ok", {"n": 2})) != []


def test_registration_errors_name_the_culprit() -> None:
    app = ip.App("t")

    async def handler(ctx: ip.Context) -> None:
        return None

    app.function(id="dup")(handler)
    with pytest.raises(ip.DuplicateFunctionError, match="'dup'"):
        app.function(id="dup")(handler)
    with pytest.raises(ip.InvalidExpressionError, match="function 'bad-cel' trigger filter"):
        app.function(id="bad-cel", trigger=ip.on_event("x", if_exp="event.data.a =="))(handler)
    with pytest.raises(ip.InvalidExpressionError, match="unknown variable 'async'"):
        app.function(id="bad-var", trigger=ip.on_event("x", if_exp="async.data.a == 1"))(handler)
    with pytest.raises(ip.ConfigurationError, match="invalid cron schedule"):
        app.function(id="bad-cron", trigger=ip.on_cron("every minute"))(handler)
    with pytest.raises(ip.ConfigurationError, match="retries must be an integer"):
        app.function(id="bad-retries", retries=-1)(handler)
    with pytest.raises(ip.ConfigurationError, match="finish timeout"):
        app.function(id="bad-timeout", timeouts=ip.Timeouts(finish="soon"))(handler)

    def sync_handler(ctx: ip.Context) -> None:
        return None

    with pytest.raises(ip.ConfigurationError, match="async def"):
        app.function(id="sync")(sync_handler)  # type: ignore[arg-type]


async def test_errors_carrying_retry_hints_are_honoured() -> None:
    app = ip.App("t")
    count = {"n": 0}

    class Throttled(Exception):
        retry_after_s = 30.0

    class Rejected(Exception):
        retryable = False

    @app.function(id="hinted", backoff=ip.Backoff(base_s=1, jitter=0))
    async def hinted(ctx: ip.Context) -> str:
        def call() -> str:
            count["n"] += 1
            if count["n"] == 1:
                raise Throttled("429")
            return "ok"

        return str(await ctx.step.run("call", call))

    @app.function(id="rejected")
    async def rejected(ctx: ip.Context) -> None:
        def call() -> None:
            count["n"] += 100
            raise Rejected("400")

        await ctx.step.run("call", call)

    async with Harness(app) as h:
        start = h.now_ms
        run = await h.settle(await h.invoke("hinted"))
        assert run is not None and run.output == "ok" and run.finished_at_ms == start + 30_000
        failed = await h.settle(await h.invoke("rejected"))
        assert failed is not None and failed.status is ip.RunStatus.FAILED
        assert count["n"] == 102
