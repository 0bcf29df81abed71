"""Step semantics that must survive replay, on both stores: sleep_until targets, nested steps,
retry-after delays, scores of a run in several experiments, stored tracebacks, and how
executions and attempts are counted."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.cli import main
from inferpipe.core.tracebacks import MAX_TRACEBACK_CHARS
from inferpipe.testing import Harness
from tests.engine.conftest import HarnessFactory


async def test_sleep_until_a_target_computed_from_now_wakes(harness: HarnessFactory) -> None:
    app = ip.App("t")
    clock: list[Harness] = []

    @app.function(id="nap")
    async def nap(ctx: ip.Context) -> str:
        # The target moves with every execution; only the recorded one can be reached.
        now = datetime.fromtimestamp(clock[0].now_ms / 1000, UTC)
        await ctx.step.sleep_until("nap", now + timedelta(seconds=2))
        return "awake"

    async with harness(app) as h:
        clock.append(h)
        start = h.now_ms
        run_id = await h.invoke("nap")
        await h.run_ready()
        assert (await h.run(run_id)).status is ip.RunStatus.SLEEPING
        await h.advance("2s")
        run = await h.run(run_id)
        assert run.status is ip.RunStatus.COMPLETED and run.output == "awake"
        assert run.finished_at_ms == start + 2_000


async def test_sleep_until_refuses_a_naive_datetime() -> None:
    app = ip.App("t")

    @app.function(id="naive", retries=0)
    async def naive(ctx: ip.Context) -> None:
        await ctx.step.sleep_until("later", datetime(2030, 1, 1))

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("naive"))
        assert run is not None and run.status is ip.RunStatus.FAILED and run.error is not None
        assert "has no timezone" in run.error["message"]


@pytest.mark.parametrize("catch", [Exception, BaseException])
async def test_a_nested_step_fails_the_run_even_when_user_code_catches_it(
    harness: HarnessFactory, catch: type[BaseException]
) -> None:
    app = ip.App("t")
    after: list[str] = []

    @app.function(id="nest", retries=2)
    async def nest(ctx: ip.Context) -> str:
        async def outer() -> int:
            try:
                return int(await ctx.step.run("inner", lambda: 1))
            except catch:
                return -1

        await ctx.step.run("outer", outer)
        await ctx.step.run("after", lambda: after.append("ran"))
        return "swallowed"

    async with harness(app) as h:
        run = await h.settle(await h.invoke("nest"))
        assert run is not None and run.status is ip.RunStatus.FAILED and run.error is not None
        assert run.error["code"] == "step_nesting"
        assert "'inner' was called inside step 'outer'" in run.error["message"]
        assert after == [], "a step ran after the nesting error"


@pytest.mark.parametrize(
    ("retry_after", "delay_ms"),
    [
        (90, 90_000),
        (1.5, 1_500),
        (timedelta(minutes=2), 120_000),
        ("1h30m", 5_400_000),
        ("offset:45", 45_000),  # a datetime 45 s after the failure
        ("offset:-10", 0),  # a datetime in the past: retry at once
    ],
)
async def test_retry_after_takes_seconds_timedelta_string_or_datetime(
    harness: HarnessFactory, retry_after: object, delay_ms: int
) -> None:
    app = ip.App("t")
    calls: list[int] = []
    clock: list[Harness] = []

    @app.function(id="limited", retries=1)
    async def limited(ctx: ip.Context) -> str:
        def call() -> str:
            calls.append(clock[0].now_ms)
            if len(calls) == 1:
                after = retry_after
                if isinstance(after, str) and after.startswith("offset:"):
                    now = datetime.fromtimestamp(clock[0].now_ms / 1000, UTC)
                    after = now + timedelta(seconds=int(after.removeprefix("offset:")))
                raise ip.RetryAfterError("rate limited", after)  # type: ignore[arg-type]
            return "ok"

        return str(await ctx.step.run("call", call))

    async with harness(app) as h:
        clock.append(h)
        run = await h.settle(await h.invoke("limited"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED and run.output == "ok"
        assert calls[1] - calls[0] == delay_ms


@pytest.mark.parametrize("bad", ["soon", None, -5, datetime(2030, 1, 1)])
def test_retry_after_refuses_what_is_not_a_delay_or_an_aware_datetime(bad: object) -> None:
    with pytest.raises(ValueError, match=r"invalid duration|must not be negative|no timezone"):
        ip.RetryAfterError("x", bad)  # type: ignore[arg-type]


async def test_scores_of_a_run_in_two_experiments_count_in_both(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> list[str]:
        prompt = await ctx.step.experiment("prompt", variants={"short": "s", "long": "l"})
        model = await ctx.step.experiment("model", variants={"small": "a", "big": "b"})
        await ctx.step.score("quality", 0.75)
        return [prompt, model]

    async with harness(app) as h:
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        steps = {s.key: s.output for s in await h.steps(run.id)}
        await h.app.score(run.id, "helpful", 1.0)  # feedback, after the run
        for experiment in ("prompt", "model"):
            variant = steps[f"experiment:{experiment}"]["variant"]
            scores = await h.app.scores(experiment=experiment)
            assert sorted((s.name, s.experiment, s.variant) for s in scores) == [
                ("helpful", experiment, variant),
                ("quality", experiment, variant),
            ]
            results = await h.app.experiment_results(experiment)
            assert {(r.variant, r.score, r.count) for r in results} == {
                (variant, "helpful", 1),
                (variant, "quality", 1),
            }
        assert await h.app.scores(experiment="other") == []


def _parse(text: str) -> object:
    return json.loads(text)


def _deep(n: int) -> None:
    if n == 0:
        raise RuntimeError("at the bottom")
    _deep(n - 1)


async def test_failed_step_and_run_carry_the_users_traceback(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="parse", retries=1)
    async def parse_input(ctx: ip.Context) -> object:
        return await ctx.step.run("parse", _parse, "{not json")

    @app.function(id="deep", retries=0)
    async def deep(ctx: ip.Context) -> None:
        _deep(500)

    async with harness(app) as h:
        run = await h.settle(await h.invoke("parse"))
        assert run is not None and run.status is ip.RunStatus.FAILED and run.error is not None
        (step,) = await h.steps(run.id)
        assert step.error is not None
        step_trace = step.error["traceback"]
        here = f'File "{__file__}"'
        assert step_trace.startswith("Traceback (most recent call last):\n")
        assert f"{here}, line" in step_trace and "in _parse" in step_trace
        assert "json.decoder.JSONDecodeError: Expecting property name" in step_trace
        assert "/inferpipe/" not in step_trace and "asyncio" not in step_trace
        assert "library frames" in step_trace  # json's own frames, collapsed
        # each attempt's error stays in the history; the traceback only once, on the step
        assert all("traceback" not in a for a in step.meta["attempts"])
        run_trace = run.error["traceback"]
        assert run_trace.startswith(step_trace)
        assert "in parse_input" in run_trace.removeprefix(step_trace)
        assert run_trace.rstrip().endswith("StepError: " + run.error["message"])

        run = await h.settle(await h.invoke("deep"))
        assert run is not None and run.error is not None
        trace = run.error["traceback"]
        assert len(trace) <= MAX_TRACEBACK_CHARS and "characters cut" in trace
        assert "in deep" in trace and trace.rstrip().endswith("RuntimeError: at the bottom")


async def test_executions_count_runs_and_attempts_count_retries(harness: HarnessFactory) -> None:
    app = ip.App("t")
    tries: list[int] = []

    @app.function(id="flaky", retries=2)
    async def flaky(ctx: ip.Context) -> int:
        def call() -> int:
            tries.append(ctx.attempt)
            if len(tries) == 1:
                raise ConnectionError("down")
            return len(tries)

        return int(await ctx.step.run("call", call))

    async with harness(app) as h:
        run = await h.settle(await h.invoke("flaky"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED and run.output == 2
        (step,) = await h.steps(run.id)
        assert tries == [0, 1] and step.attempt == 1  # the first retry is attempt 1
        assert run.executions == 2  # the first execution, and the one that retried the step


def test_cli_runs_show_prints_the_traceback_and_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = ip.App("t")

    @app.function(id="parse", retries=1)
    async def parse_input(ctx: ip.Context) -> object:
        return await ctx.step.run("parse", _parse, "{not json")

    async def failed_run() -> str:
        async with Harness(app, path=tmp_path / "cli.db") as h:
            run = await h.settle(await h.invoke("parse"))
            assert run is not None and run.status is ip.RunStatus.FAILED
            return run.id

    run_id = asyncio.run(failed_run())
    assert main(["runs", "show", run_id, "--database", f"sqlite:///{tmp_path / 'cli.db'}"]) == 0
    out = capsys.readouterr().out
    assert "executions 2" in out
    assert "Traceback (most recent call last):" in out
    assert "in _parse" in out and "in parse_input" in out
