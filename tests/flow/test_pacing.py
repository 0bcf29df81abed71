"""Throttle (starts over the pace are delayed) and rate limit (runs over the limit are
skipped), on the virtual clock."""

from __future__ import annotations

import pytest

import inferpipe as ip
from inferpipe.engine.flow import RateLimit, Throttle
from tests.flow.conftest import HarnessFactory
from tests.flow.kit import by_status, starts


async def test_throttle_starts_exactly_limit_per_period(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="f", trigger=ip.on_event("job"), throttle=Throttle(3, "1s"))
    async def f(ctx: ip.Context) -> None:
        return None

    async with harness(app) as h:
        await h.send([ip.Event("job") for _ in range(7)])
        await h.run_ready()
        delayed = (await by_status(h, "f"))[ip.RunStatus.QUEUED]
        assert len(delayed) == 6
        assert all((r.status_reason or "").startswith("throttled: starts at") for r in delayed)
        assert "3 per 1s on throttle:f" in (delayed[0].status_reason or "")
        await h.settle()
        times = await starts(h, "f")
    # one start every period/limit: exactly 3 within [0, 1000), the 4th at exactly 1000 ms
    assert times == [0, 334, 667, 1000, 1334, 1667, 2000]
    assert sum(1 for t in times if t < 1000) == 3


async def test_throttle_burst_starts_more_at_once_after_a_quiet_spell(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(id="f", trigger=ip.on_event("job"), throttle=Throttle(1, "1m", burst=2))
    async def f(ctx: ip.Context) -> None:
        return None

    async with harness(app) as h:
        await h.send([ip.Event("job") for _ in range(5)])
        await h.settle()
        assert await starts(h, "f") == [0, 0, 0, 60_000, 120_000]
        await h.advance("10m")  # quiet: the burst is available again
        await h.send([ip.Event("job") for _ in range(4)])
        await h.settle()
        later = (await starts(h, "f"))[5:]
    assert later == [720_000, 720_000, 720_000, 780_000]


async def test_throttle_keys_are_independent(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(
        id="f", trigger=ip.on_event("job"), throttle=Throttle(1, "1m", key="event.data.k")
    )
    async def f(ctx: ip.Context) -> str:
        return str(ctx.event.data["k"])

    async with harness(app) as h:
        await h.send([ip.Event("job", {"k": k}) for k in ("a", "b", "a", "b")])
        await h.settle()
        runs = await h.runs_of("f")
    got = sorted((r.output, r.started_at_ms - runs[0].created_at_ms) for r in runs)  # type: ignore[operator]
    assert got == [("a", 0), ("a", 60_000), ("b", 0), ("b", 60_000)]


async def test_rate_limit_skips_the_rest_with_the_reason(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(
        id="f", trigger=ip.on_event("job"), rate_limit=RateLimit(2, "1m", key="event.data.user")
    )
    async def f(ctx: ip.Context) -> str:
        return str(ctx.event.data["user"])

    async with harness(app) as h:
        await h.send([ip.Event("job", {"user": u}) for u in ("u1", "u1", "u1", "u2")])
        await h.settle()
        found = await by_status(h, "f")
        assert sorted(r.output for r in found[ip.RunStatus.COMPLETED]) == ["u1", "u1", "u2"]
        (skipped,) = found[ip.RunStatus.SKIPPED]
        assert skipped.status_reason == 'rate limited: 2 runs per 1m on rate:f:"u1"'
        assert skipped.finished_at_ms == skipped.created_at_ms and skipped.started_at_ms is None

        await h.advance("59999ms")  # the window still holds both runs
        await h.send(ip.Event("job", {"user": "u1"}))
        assert len((await by_status(h, "f"))[ip.RunStatus.SKIPPED]) == 2
        await h.advance("1ms")  # exactly one period after them: both have left the window
        await h.send([ip.Event("job", {"user": "u1"}) for _ in range(3)])
        await h.settle()
        found = await by_status(h, "f")
    assert len(found[ip.RunStatus.COMPLETED]) == 5
    assert len(found[ip.RunStatus.SKIPPED]) == 3


async def test_a_rate_limited_invocation_resumes_its_invoker_with_the_reason(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(id="child", rate_limit=RateLimit(1, "1h"))
    async def child(ctx: ip.Context) -> str:
        return "done"

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> list[str]:
        first = await ctx.step.invoke("first", "child")
        try:
            await ctx.step.invoke("second", "child")
        except ip.StepError as exc:
            return [first, str(exc)]
        return [first, "ran twice"]

    async with harness(app) as h:
        run = await h.settle(await h.invoke("parent"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        assert run.output[0] == "done"
        assert "invoked child skipped: rate limited: 1 runs per 1h on rate:child" in run.output[1]


@pytest.mark.parametrize("limit", [1, 4])
async def test_rate_limit_state_is_per_function(limit: int, harness: HarnessFactory) -> None:
    app = ip.App("t")
    for fn_id in ("a", "b"):

        async def body(ctx: ip.Context) -> None:
            return None

        app.function(id=fn_id, trigger=ip.on_event("job"), rate_limit=RateLimit(limit, "1h"))(body)
    async with harness(app) as h:
        await h.send([ip.Event("job") for _ in range(limit + 1)])
        await h.settle()
        for fn_id in ("a", "b"):
            found = await by_status(h, fn_id)
            assert len(found[ip.RunStatus.COMPLETED]) == limit
            assert len(found[ip.RunStatus.SKIPPED]) == 1
