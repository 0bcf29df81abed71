"""Property: replaying a run's journal reproduces its outcome without executing any step."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferpipe as ip
from inferpipe.testing import Harness

op = st.one_of(
    st.tuples(st.just("run"), st.integers(-1000, 1000)),
    st.tuples(st.just("sleep"), st.integers(1, 10_000)),
    st.tuples(st.just("flaky"), st.integers(0, 2)),
    st.tuples(st.just("gather"), st.lists(st.integers(0, 100), min_size=1, max_size=4)),
    st.tuples(st.just("text"), st.text(max_size=20)),
)
programs = st.lists(op, min_size=1, max_size=8)


def build_app(program: list[tuple[str, Any]], executed: list[str]) -> ip.App:
    app = ip.App("prop")
    failures: dict[int, int] = {}  # survives replays, as an external system's state would

    @app.function(id="prog", retries=3, backoff=ip.Backoff(base_s=0.5))
    async def prog(ctx: ip.Context) -> list[Any]:
        out: list[Any] = []
        for i, (kind, arg) in enumerate(program):
            if kind == "run":
                out.append(await ctx.step.run("run", _record, executed, i, arg * 2))
            elif kind == "text":
                out.append(await ctx.step.run("text", _record, executed, i, arg[::-1]))
            elif kind == "sleep":
                await ctx.step.sleep("sleep", arg)
                out.append(None)
            elif kind == "flaky":

                def flaky(i: int = i, limit: int = arg) -> int:
                    executed.append(f"flaky-{i}")
                    failures[i] = failures.get(i, 0) + 1
                    if failures[i] <= limit:
                        raise RuntimeError("transient")
                    return limit

                out.append(await ctx.step.run("flaky", flaky))
            else:
                out.append(
                    list(
                        await asyncio.gather(
                            *(ctx.step.run("par", _record, executed, i, v) for v in arg)
                        )
                    )
                )
        return out

    return app


def _record(executed: list[str], i: int, value: Any) -> Any:
    executed.append(f"step-{i}")
    return value


def expected(program: list[tuple[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for kind, arg in program:
        out.append(
            {
                "run": lambda a: a * 2,
                "text": lambda a: a[::-1],
                "sleep": lambda a: None,
                "flaky": lambda a: a,
                "gather": list,
            }[kind](arg)
        )
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=programs)
def test_replay_of_journal_reproduces_the_outcome(program: list[tuple[str, Any]]) -> None:
    asyncio.run(_check(program))


async def _check(program: list[tuple[str, Any]]) -> None:
    executed: list[str] = []
    app = build_app(program, executed)
    async with Harness(app) as h:
        first = await h.settle(await h.invoke("prog"))
        assert first is not None and first.status is ip.RunStatus.COMPLETED
        assert first.output == expected(program)
        ran_first = len(executed)
        # A re-run that keeps every completed step replays the whole journal.
        replay = await h.app.rerun(first.id, from_failed_step=True)
        second = await h.settle(replay.id)
        assert second is not None and second.status is ip.RunStatus.COMPLETED
        assert second.output == first.output
        assert len(executed) == ran_first, "a replay executed a recorded step again"
        first_steps = [(s.key, s.output) for s in await h.steps(first.id)]
        assert [(s.key, s.output) for s in await h.steps(second.id)] == first_steps
