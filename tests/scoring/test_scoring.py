"""Inline scores, scorers, defer(), attached scorers, feedback and experiments."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel

import inferpipe as ip
from inferpipe.scoring.experiments import compare
from inferpipe.testing import Harness


class FeedbackInput(BaseModel):
    ticket_id: str


def feedback_app() -> ip.App:
    app = ip.App("support")

    @app.scorer(id="feedback-scorer", input=FeedbackInput)
    async def feedback_scorer(ctx: ip.Context) -> ip.Score:
        fb = await ctx.step.wait_for_event(
            "wait-for-feedback",
            event="support/feedback.received",
            timeout="7d",
            if_exp=f"async.data.ticket_id == '{ctx.input.ticket_id}'",
        )
        if fb is None:
            return ip.Score("user-feedback", 0.5, reason="no feedback in 7 days")
        return ip.Score("user-feedback", 1.0 if fb.data["helpful"] else 0.0)

    @app.function(id="handle-ticket", trigger=ip.on_event("support/ticket.created"))
    async def handle_ticket(ctx: ip.Context) -> dict[str, str]:
        reply = await ctx.step.run("reply", lambda: "try turning it off and on")
        await ctx.step.score("reply-nonempty", bool(reply))
        ctx.defer("score-feedback", feedback_scorer, {"ticket_id": ctx.event.data["ticket_id"]})
        return {"reply": reply}

    return app


async def _scores(h: Harness, run_id: str) -> dict[str, float]:
    return {s.name: s.value for s in await h.app.scores(run_id=run_id)}


async def test_feedback_flow_helpful_not_helpful_and_timeout() -> None:
    async with Harness(feedback_app()) as h:
        await h.send(
            [ip.Event("support/ticket.created", {"ticket_id": t}) for t in ("a", "b", "c")]
        )
        await h.run_ready()
        runs = {r.input[0]["data"]["ticket_id"]: r for r in await h.runs_of("handle-ticket")}
        # the parents completed while their scorers wait
        assert all(r.status is ip.RunStatus.COMPLETED for r in runs.values())
        scorers = await h.runs_of("feedback-scorer")
        assert len(scorers) == 3 and all(s.status is ip.RunStatus.WAITING for s in scorers)
        assert {s.parent_run_id for s in scorers} == {r.id for r in runs.values()}
        await h.send(ip.Event("support/feedback.received", {"ticket_id": "b", "helpful": False}))
        await h.send(ip.Event("support/feedback.received", {"ticket_id": "a", "helpful": True}))
        await h.run_ready()
        assert (await _scores(h, runs["a"].id)) == {"reply-nonempty": 1.0, "user-feedback": 1.0}
        assert (await _scores(h, runs["b"].id))["user-feedback"] == 0.0
        assert "user-feedback" not in await _scores(h, runs["c"].id)
        await h.advance("7d")
        c_scores = await h.app.scores(run_id=runs["c"].id, name="user-feedback")
        assert [(s.value, s.reason) for s in c_scores] == [(0.5, "no feedback in 7 days")]
        assert c_scores[0].source is ip.ScoreSource.SCORER
        assert c_scores[0].scorer_id == "feedback-scorer"
        # parents' status and finish time did not move
        for before in runs.values():
            after = await h.run(before.id)
            assert (after.status, after.finished_at_ms) == (before.status, before.finished_at_ms)


async def test_inline_score_is_written_once_across_replays() -> None:
    app = ip.App("t")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> None:
        await ctx.step.score("quality", 0.75, reason="looks fine", metadata={"token": "x"})
        await ctx.step.sleep("s1", "1m")
        await ctx.step.sleep("s2", "1m")

    async with Harness(app) as h:
        run_id = await h.invoke("f")
        await h.settle()
        scores = await h.app.scores(run_id=run_id)
        assert [(s.name, s.value, s.reason, s.source) for s in scores] == [
            ("quality", 0.75, "looks fine", ip.ScoreSource.INLINE)
        ]
        assert scores[0].metadata == {"token": "[REDACTED]"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ok", math.nan, "must be finite"),
        ("ok", math.inf, "must be finite"),
        ("ok", "high", "finite number or a bool, got str"),
        ("", 1, "non-empty"),
        ("bad\nname", 1, "control characters"),
        ("x" * 129, 1, "over 128 bytes"),
    ],
)
async def test_invalid_scores_are_clear_errors(name: str, value: object, message: str) -> None:
    app = ip.App("t")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> str:
        try:
            await ctx.step.score(name, value)  # type: ignore[arg-type]
        except ip.InvalidScoreError as exc:
            return str(exc)
        return "accepted"

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("f"))
        assert run is not None and message in run.output
        with pytest.raises(ip.InvalidScoreError, match=message.split(",", maxsplit=1)[0]):
            await h.app.score(run.id, name, value)  # type: ignore[arg-type]


async def test_defer_errors_and_limits() -> None:
    app = ip.App("t")

    @app.scorer(id="s", input=FeedbackInput)
    async def s(ctx: ip.Context) -> None:
        return None

    @app.function(id="f")
    async def f(ctx: ip.Context) -> list[str]:
        errors = []
        for attempt in (
            lambda: ctx.defer("bad", s, {"ticket": 1}),
            lambda: ctx.defer("one", s, {"ticket_id": "1"}),
            lambda: ctx.defer("one", s, {"ticket_id": "1"}),
            lambda: ctx.defer("unknown", "nope", {}),
        ):
            try:
                attempt()
            except (ip.InvalidDeferError, ip.UnknownFunctionError) as exc:
                errors.append(type(exc).__name__ + ": " + str(exc).splitlines()[0])
        for i in range(19):
            ctx.defer(f"more-{i}", s, {"ticket_id": str(i)})
        try:
            ctx.defer("21st", s, {"ticket_id": "x"})
        except ip.InvalidDeferError as exc:
            errors.append(str(exc))
        return errors

    async with Harness(app) as h:
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        errors = run.output
        assert "data for 's' (defer 'bad')" in errors[0]
        assert "defer id 'one' is already used" in errors[1]
        assert "UnknownFunctionError" in errors[2]
        assert "at most 20" in errors[3]
        assert len(await h.runs_of("s")) == 20


async def test_failing_parent_still_gets_deferred_scorer_and_failing_scorer_is_visible() -> None:
    app = ip.App("t")
    attempts = {"n": 0}

    @app.scorer(id="flaky-scorer", retries=3)
    async def flaky_scorer(ctx: ip.Context) -> ip.Score:
        def judge() -> float:
            attempts["n"] += 1
            if attempts["n"] <= 2:
                raise RuntimeError("judge model overloaded")
            return 0.25

        assert ctx.parent is not None and ctx.parent["status"] == "failed"
        return ip.Score("judged", await ctx.step.run("judge", judge))

    @app.scorer(id="broken-scorer", retries=0)
    async def broken_scorer(ctx: ip.Context) -> ip.Score:
        raise ValueError("scorer bug")

    @app.function(id="doomed", retries=0)
    async def doomed(ctx: ip.Context) -> None:
        ctx.defer("judge", flaky_scorer, {})
        ctx.defer("broken", broken_scorer, {})
        await ctx.step.run("fail", lambda: 1 / 0)

    async with Harness(app) as h:
        parent = await h.settle(await h.invoke("doomed"))
        assert parent is not None and parent.status is ip.RunStatus.FAILED
        assert [(s.name, s.value) for s in await h.app.scores(run_id=parent.id)] == [
            ("judged", 0.25)
        ]
        assert attempts["n"] == 3
        (broken,) = await h.runs_of("broken-scorer")
        assert broken.status is ip.RunStatus.FAILED and "scorer bug" in broken.error["message"]
        assert (await h.run(parent.id)).status is ip.RunStatus.FAILED


async def test_attached_scorers_sample_deterministically_by_run_id() -> None:
    app = ip.App("t")

    @app.scorer(id="length")
    async def length(ctx: ip.Context) -> ip.Score:
        return ip.Score("length", len(ctx.input["output"]))

    @app.function(id="f", scorers=[ip.sample(length, rate=0.5)])
    async def f(ctx: ip.Context) -> str:
        return "x" * int(ctx.event.data["n"])

    async with Harness(app) as h:
        ids = [await h.invoke("f", {"n": n}) for n in range(40)]
        await h.settle()
        scored = {s.run_id: s.value for s in await h.app.scores(name="length")}
        attached = ip.AttachedScorer("length", 0.5)
        assert set(scored) == {i for i in ids if attached.samples(i)}
        assert 5 < len(scored) < 35
        for run_id, value in scored.items():
            assert value == len((await h.run(run_id)).output)
        # re-running a run decides the same way for the same id; the decision is a pure function
        assert all(attached.samples(i) == attached.samples(i) for i in ids)


async def test_feedback_later_is_idempotent_by_score_id_and_unknown_run_is_refused() -> None:
    app = ip.App("t")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> None:
        await ctx.step.sleep("s", "1h")

    async with Harness(app) as h:
        run_id = await h.invoke("f")
        await h.run_ready()
        await h.app.score(run_id, "thumbs", False, score_id="fb-1")  # before completion
        await h.settle()
        await h.app.score(run_id, "thumbs", True, score_id="fb-1", reason="changed mind")
        scores = await h.app.scores(run_id=run_id)
        assert [(s.id, s.value, s.reason) for s in scores] == [("fb-1", 1.0, "changed mind")]
        with pytest.raises(ip.RunNotFoundError):
            await h.app.score("01NOPE", "thumbs", True)


async def test_experiment_assignment_is_stable_and_stats_match_hand_computation() -> None:
    app = ip.App("t")
    calls: list[str] = []

    @app.function(id="exp")
    async def exp(ctx: ip.Context) -> str:
        def variant(name: str) -> str:
            calls.append(name)
            return name

        chosen = await ctx.step.experiment(
            "prompt",
            variants={"a": lambda: variant("a"), "b": lambda: variant("b")},
            select=ip.weighted({"a": 1, "b": 1}),
        )
        await ctx.step.sleep("replay-me", "1m")
        await ctx.step.score("quality", {"a": 0.5, "b": 0.8}[chosen] + ctx.event.data["j"])
        return str(chosen)

    async with Harness(app) as h:
        jitter = [0.0, 0.1, -0.1, 0.05, -0.05, 0.2, -0.2, 0.0]
        ids = [await h.invoke("exp", {"j": j}) for j in jitter * 3]
        await h.settle()
        runs = [await h.run(i) for i in ids]
        assert len(calls) == len(ids)  # each variant callable ran once despite replays
        for run in runs:
            steps = {s.key: s for s in await h.steps(run.id)}
            assert steps["experiment:prompt"].output["variant"] == run.output
        results = await h.app.experiment_results("prompt", baseline="a")
        by_variant = {r.variant: r for r in results}
        assert set(by_variant) == {"a", "b"}
        values = {
            v: [s.value for s in await h.app.scores(experiment="prompt") if s.variant == v]
            for v in ("a", "b")
        }
        for v, stats in by_variant.items():
            n = len(values[v])
            mean = sum(values[v]) / n
            sd = (sum((x - mean) ** 2 for x in values[v]) / (n - 1)) ** 0.5
            assert stats.count == n and stats.mean == pytest.approx(mean)
            assert stats.stdev == pytest.approx(sd)
        assert by_variant["a"].p_value is None and by_variant["b"].significant


def test_stats_against_a_hand_computed_example() -> None:
    def rec(variant: str, value: float, i: int) -> ip.ScoreRecord:
        return ip.ScoreRecord(
            f"{variant}{i}",
            "r",
            "q",
            value,
            ip.ScoreSource.INLINE,
            0,
            experiment="e",
            variant=variant,
        )

    scores = [rec("a", v, i) for i, v in enumerate([1, 2, 3, 4, 5])]
    scores += [rec("b", v, i) for i, v in enumerate([2, 4, 6, 8, 10])]
    a, b = compare("e", scores, "a")
    # a: mean 3, sd sqrt(2.5); CI = 3 ± t(0.975, 4) * sd / sqrt(5) = 3 ± 2.7764 * 0.7071
    assert a.mean == 3 and a.stdev == pytest.approx(1.5811, abs=1e-4)
    assert (a.ci_low, a.ci_high) == (
        pytest.approx(1.0367, abs=1e-3),
        pytest.approx(4.9633, abs=1e-3),
    )
    # Welch: t = -1.8974, df = 5.882 -> p = 0.1075 (not significant)
    assert b.p_value == pytest.approx(0.1075, abs=1e-3) and not b.significant
