"""Run lifecycle listeners: what they are told, once per execution, and that they cannot fail
a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import inferpipe as ip
from inferpipe.core.records import Run, RunStatus, StepRecord
from inferpipe.engine.lifecycle import RunListener, StepStart
from inferpipe.store.base import Outcome
from inferpipe.testing import Harness


class Recorder(RunListener):
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def run_started(self, run: Run) -> None:
        self.calls.append(("started", run.executions))

    def step_started(self, run: Run, step: StepStart) -> None:
        self.calls.append(("step", step.key, step.kind.value, step.attempt))

    def steps_recorded(self, run: Run, steps: Sequence[StepRecord]) -> None:
        for s in steps:
            self.calls.append(("recorded", s.key, s.status.value, s.attempt))

    def run_parked(self, run: Run, status: RunStatus, ready_at_ms: int | None) -> None:
        self.calls.append(("parked", status.value))

    def run_finished(self, run: Run, outcome: Outcome, journal: Mapping[str, StepRecord]) -> None:
        self.calls.append(("finished", outcome.status.value, sorted(journal)))

    def execution_ended(self, run: Run) -> None:
        self.calls.append(("ended",))


def flaky_app() -> ip.App:
    app = ip.App("lifecycle")
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    @app.function(id="f", retries=2, backoff=ip.Backoff(base_s=1, jitter=0))
    async def f(ctx: ip.Context) -> str:
        await ctx.step.run("a", lambda: 1)
        await ctx.step.run("b", flaky)
        await ctx.step.sleep("nap", "1m")
        return "done"

    return app


async def test_each_execution_reports_what_it_did_and_replays_report_nothing() -> None:
    app = flaky_app()
    recorder = Recorder()
    async with Harness(app) as h:
        h.engine.add_listener(recorder)
        run_id = await h.invoke("f")
        run = await h.settle(run_id)
    assert run is not None and run.status is RunStatus.COMPLETED
    assert recorder.calls == [
        ("started", 1),
        ("step", "a", "run", 0),
        ("recorded", "a", "completed", 0),
        ("step", "b", "run", 0),
        ("recorded", "b", "retrying", 0),
        ("parked", "sleeping"),
        ("ended",),
        # the retry: "a" is replayed from the journal and not reported again
        ("started", 2),
        ("step", "b", "run", 1),
        ("recorded", "b", "completed", 1),
        ("recorded", "nap", "sleeping", 0),
        ("parked", "sleeping"),
        ("ended",),
        ("started", 3),
        ("recorded", "nap", "completed", 0),
        ("finished", "completed", ["a", "b", "nap"]),
        ("ended",),
    ]


class Broken(RunListener):
    def run_started(self, run: Run) -> None:
        raise RuntimeError("listener bug")

    def steps_recorded(self, run: Run, steps: Sequence[StepRecord]) -> None:
        raise RuntimeError("listener bug")


async def test_a_failing_listener_does_not_fail_the_run_nor_stop_the_others() -> None:
    app = flaky_app()
    recorder = Recorder()
    async with Harness(app) as h:
        h.engine.add_listener(Broken())
        h.engine.add_listener(recorder)
        run = await h.settle(await h.invoke("f"))
    assert run is not None and run.status is RunStatus.COMPLETED
    assert ("finished", "completed", ["a", "b", "nap"]) in recorder.calls


async def test_a_removed_listener_is_told_nothing_more() -> None:
    app = flaky_app()
    recorder = Recorder()
    async with Harness(app) as h:
        remove = h.engine.add_listener(recorder)
        await h.run_ready()
        remove()
        run = await h.settle(await h.invoke("f"))
    assert run is not None and run.status is RunStatus.COMPLETED
    assert recorder.calls == []
