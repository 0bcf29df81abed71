"""Properties of replay: replaying a run's journal reproduces its outcome without executing
any step; and for random programs of steps, a crash at any point followed by a replay gives the
outcome (status, output, error, journal) of the same program run without a crash."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferpipe as ip
from inferpipe.core.errors import LeaseLost
from inferpipe.core.ids import new_id
from inferpipe.testing import Harness
from tests.store.conftest import PostgresServer
from tests.store.pg_harness import PostgresHarness

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
        # A re-run that keeps every completed step (the store's copy of the journal; the
        # app refuses it, a completed run having no failed step) replays the whole journal.
        replay = await h.engine.store.rerun(
            first.id, new_id(), from_failed_step=True, now_ms=h.now_ms
        )
        second = await h.settle(replay.id)
        assert second is not None and second.status is ip.RunStatus.COMPLETED
        assert second.output == first.output
        assert len(executed) == ran_first, "a replay executed a recorded step again"
        first_steps = [(s.key, s.output) for s in await h.steps(first.id)]
        assert [(s.key, s.output) for s in await h.steps(second.id)] == first_steps


# --- Property: a crash at any point, then a replay, gives the outcome of no crash ----------

crash_op = st.one_of(
    st.tuples(st.just("run"), st.integers(-1000, 1000)),
    st.tuples(st.just("sleep"), st.integers(1, 10_000)),
    st.tuples(st.just("sleep_until"), st.integers(0, 10_000)),
    st.tuples(st.just("wait"), st.booleans()),  # True: the awaited event is sent first
    st.tuples(st.just("invoke"), st.booleans()),  # True: the child fails
    st.tuples(st.just("gather"), st.lists(st.integers(0, 100), min_size=1, max_size=3)),
    st.tuples(st.just("flaky"), st.integers(0, 2)),
    st.tuples(st.just("caught"), st.none()),
    st.tuples(st.just("uncaught"), st.none()),
    st.tuples(st.just("cancel"), st.none()),
)
crash_programs = st.lists(crash_op, min_size=1, max_size=7)


class Crashes:
    """Counts the callables the steps run (child runs included) and crashes the execution
    running the `at`-th one, once: its lease is fenced so nothing more of it is written, and
    the run is replayed by the next execution once the lease expires."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.calls = 0

    def point(self, ctx: ip.Context) -> None:
        self.calls += 1
        if self.calls - 1 == self.at:
            ctx._journal.lease_lost = True  # as when another worker has taken the run over
            raise LeaseLost(ctx.run_id)


def crash_app(program: list[tuple[str, Any]], crashes: Crashes, clock: list[Harness]) -> ip.App:
    app = ip.App("prop-crash")
    failures: dict[int, int] = {}  # an external system's state: survives crashes and replays

    @app.function(id="child", retries=0)
    async def child(ctx: ip.Context) -> int:
        def work() -> int:
            crashes.point(ctx)
            if ctx.event.data["fail"]:
                raise ip.NonRetriableError("child refused")
            return int(ctx.event.data["x"]) * 3

        return int(await ctx.step.run("work", work))

    @app.function(id="prog", retries=3, backoff=ip.Backoff(base_s=0.5))
    async def prog(ctx: ip.Context) -> list[Any]:
        def step_fn(value: Any) -> Any:
            crashes.point(ctx)
            return value

        out: list[Any] = []
        for i, (kind, arg) in enumerate(program):
            if kind == "run":
                out.append(await ctx.step.run("run", step_fn, arg * 2))
            elif kind == "sleep":
                out.append(await ctx.step.sleep("sleep", arg))
            elif kind == "sleep_until":  # a target computed from the current time
                out.append(await ctx.step.sleep_until("until", clock[0].now_ms + arg * 1000))
            elif kind == "wait":
                if arg:
                    signal = ip.Event("prop/signal", {"k": i, "run": ctx.run_id})
                    await ctx.step.send_event("signal", signal)
                found = await ctx.step.wait_for_event(
                    "wait",
                    event="prop/signal",
                    timeout="1d",
                    if_exp=f"async.data.k == {i} && async.data.run == '{ctx.run_id}'",
                    lookback="7d",
                )
                out.append(found.data["k"] if found else None)
            elif kind == "invoke":
                try:
                    out.append(await ctx.step.invoke("child", "child", {"x": i, "fail": arg}))
                except ip.StepError:
                    out.append("child-failed")
            elif kind == "gather":
                branches = [ctx.step.run("par", step_fn, v) for v in arg]
                out.append(list(await asyncio.gather(*branches, ctx.step.sleep("nap", 1))))
            elif kind == "flaky":

                def flaky(i: int = i, limit: int = arg) -> int:
                    crashes.point(ctx)
                    failures[i] = failures.get(i, 0) + 1
                    if failures[i] <= limit:
                        raise RuntimeError("transient")
                    return limit

                out.append(await ctx.step.run("flaky", flaky))
            elif kind == "caught":

                def refuse() -> None:
                    crashes.point(ctx)
                    raise ip.NonRetriableError("refused")

                try:
                    await ctx.step.run("caught", refuse)
                except ip.StepError as exc:
                    out.append(exc.error_code)
            elif kind == "uncaught":

                def explode() -> None:
                    crashes.point(ctx)
                    raise ip.NonRetriableError("exploded")

                await ctx.step.run("uncaught", explode)
            else:  # "cancel": someone cancels the run while this step runs

                async def cancel() -> None:
                    crashes.point(ctx)
                    await app.cancel(ctx.run_id, "cancelled mid-run")

                await ctx.step.run("cancel", cancel)  # nothing after it may start
        return out

    return app


def model(program: list[tuple[str, Any]]) -> tuple[ip.RunStatus, Any]:
    """The outcome the program must have, computed without the engine."""
    out: list[Any] = []
    for i, (kind, arg) in enumerate(program):
        if kind == "uncaught":
            return ip.RunStatus.FAILED, None
        if kind == "cancel":
            return ip.RunStatus.CANCELLED, None
        out.append(
            {
                "run": lambda a: a * 2,
                "sleep": lambda a: None,
                "sleep_until": lambda a: None,
                "wait": lambda a, i=i: i if a else None,
                "invoke": lambda a, i=i: "child-failed" if a else i * 3,
                "gather": lambda a: [*a, None],
                "flaky": lambda a: a,
                "caught": lambda a: "non_retriable",
            }[kind](arg)
        )
    return ip.RunStatus.COMPLETED, out


async def outcome(
    program: list[tuple[str, Any]], at: int | None, store: str, path: Path, url: str | None
) -> tuple[tuple[Any, ...], int]:
    """The program's run outcome (status, output, error) and its journal (unless cancelled),
    with a crash at the `at`-th step callable; and how many callables ran."""
    crashes = Crashes(at)
    clock: list[Harness] = []
    app = crash_app(program, crashes, clock)
    h = Harness(app, path=path) if store == "sqlite" else PostgresHarness(app, url or "")
    async with h:
        clock.append(h)
        run = await h.settle(await h.invoke("prog"))
        assert run is not None
        error = (run.error or {}).get("code"), (run.error or {}).get("message")
        steps = await h.steps(run.id)
        # by key: a step re-run after a crash gets a later position than in the plain run
        journal = sorted((s.key, s.status, repr(_comparable(s))) for s in steps)
        if run.status is ip.RunStatus.CANCELLED:
            journal = []  # a cancel seen before or after a crash records different last steps
        return (run.status, run.output, error, run.status_reason, journal), crashes.calls


def _comparable(step: ip.StepRecord) -> Any:
    """A step's output without what differs between two runs of a program (ids, times)."""
    output = step.output
    if step.kind is ip.StepKind.SEND_EVENT:
        return len(output)
    if isinstance(output, dict) and {"id", "name", "data", "ts"} <= output.keys():
        data = output["data"]  # an event: the awaited one, or a child's finished event
        return {k: v for k, v in data.items() if k not in ("run_id", "run")}
    return output


async def _check_crash(
    program: list[tuple[str, Any]], crash_at: int, store: str, folder: Path, url: str | None
) -> None:
    plain, calls = await outcome(program, None, store, folder / "plain.db", url)
    status, output = model(program)
    assert (plain[0], plain[1]) == (status, output)
    if calls == 0:
        return
    crashed, _ = await outcome(program, crash_at % calls, store, folder / "crash.db", url)
    assert crashed == plain


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=crash_programs, crash_at=st.integers(0, 1000))
def test_a_crash_at_any_point_then_replay_gives_the_same_outcome(
    program: list[tuple[str, Any]], crash_at: int
) -> None:
    with tempfile.TemporaryDirectory(prefix="inferpipe-prop-") as folder:
        asyncio.run(_check_crash(program, crash_at, "sqlite", Path(folder), None))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=crash_programs, crash_at=st.integers(0, 1000))
def test_a_crash_then_replay_gives_the_same_outcome_on_postgres(
    postgres: PostgresServer, program: list[tuple[str, Any]], crash_at: int
) -> None:
    asyncio.run(_check_crash(program, crash_at, "postgres", Path("unused"), postgres.url))
