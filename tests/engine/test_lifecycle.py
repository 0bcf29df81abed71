"""Run lifecycle listeners: what they are told, once per execution, and that they cannot fail
a run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.core.records import Lease, Run, RunStatus, StepRecord
from inferpipe.engine.lifecycle import RunListener, StepStart
from inferpipe.engine.worker import Worker
from inferpipe.store.base import Outcome, PlannedEvent
from inferpipe.store.sqlite import SQLiteStore
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


class AnsweredAfterTheLeaseLooksLost(SQLiteStore):
    """A store whose park and finish commit, then answer only once the worker has taken the
    lease for lost: a lease renewal made after the commit found the lease gone (the park or
    finish released it) and its answer came first (on PostgreSQL renewals have a connection
    of their own; on SQLite a renewal can queue behind the commit)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.worker: Worker | None = None
        self.committed = asyncio.Event()

    async def park(
        self,
        lease: Lease,
        status: RunStatus,
        ready_at_ms: int | None,
        now_ms: int,
        *,
        batch_wakes_ms: int | None = None,
    ) -> None:
        await super().park(lease, status, ready_at_ms, now_ms, batch_wakes_ms=batch_wakes_ms)
        await self._answer_late(lease)

    async def finish(
        self, lease: Lease, outcome: Outcome, events: list[PlannedEvent], now_ms: int
    ) -> str | None:
        cancel = await super().finish(lease, outcome, events, now_ms)
        await self._answer_late(lease)
        return cancel

    async def _answer_late(self, lease: Lease) -> None:
        self.committed.set()
        assert self.worker is not None
        # The worker marks a lost lease as ended and cancels its execution in one go, and
        # tells nobody: polled.
        while self.worker._lease_ends.get(lease.run_id) != 0.0:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class ExecutionsEnded(RunListener):
    def __init__(self, store: AnsweredAfterTheLeaseLooksLost) -> None:
        self.store = store
        self.after_commit = asyncio.Event()  #: an execution ended after the park or finish

    def execution_ended(self, run: Run) -> None:
        if self.store.committed.is_set():
            self.after_commit.set()


def ending_app() -> ip.App:
    app = ip.App("endings")

    @app.function(id="naps")
    async def naps(ctx: ip.Context) -> str:
        await ctx.step.sleep("nap", "1h")
        return "done"

    @app.function(id="quick")
    async def quick(ctx: ip.Context) -> str:
        return "done"

    return app


@pytest.mark.parametrize(
    ("function_id", "status", "told"),
    [
        ("naps", RunStatus.SLEEPING, ("parked", "sleeping")),
        ("quick", RunStatus.COMPLETED, ("finished", "completed", [])),
    ],
)
async def test_a_park_or_finish_committed_as_the_lease_looks_lost_is_reported(
    tmp_path: Path, function_id: str, status: RunStatus, told: tuple[object, ...]
) -> None:
    """The heartbeat's renewal runs after the park (or finish) released the lease, and its
    answer comes first: the worker takes the lease for ended while the park's answer is on its
    way. The run did park (finish): its listeners are told so, before the execution's end."""
    store = AnsweredAfterTheLeaseLooksLost(tmp_path / "app.db")
    app = ending_app()
    recorder, ended = Recorder(), ExecutionsEnded(store)
    await app.start(store=store)
    app.engine.add_listener(recorder)
    app.engine.add_listener(ended)
    worker = store.worker = app.worker(lease_ms=1500)
    working = asyncio.create_task(worker.run())
    try:
        run_id = await app.invoke(function_id)
        await ended.after_commit.wait()
        run = await store.get_run(run_id)
    finally:
        worker.notify_shutdown()
        await working
        await app.close()
    assert run is not None and run.status is status
    assert recorder.calls[-2:] == [told, ("ended",)], recorder.calls


@pytest.mark.parametrize("function_id", ["naps", "quick"])
async def test_a_lease_released_by_a_park_or_finish_is_not_reported_lost(
    tmp_path: Path, function_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that finds the lease gone because the run's own park (finish) released it
    is no loss: the worker neither warns of one nor stops the execution for it."""
    store = AnsweredAfterTheLeaseLooksLost(tmp_path / "app.db")
    app = ending_app()
    ended = ExecutionsEnded(store)
    await app.start(store=store)
    app.engine.add_listener(ended)
    worker = store.worker = app.worker(lease_ms=1500)
    working = asyncio.create_task(worker.run())
    try:
        with caplog.at_level(logging.WARNING, logger="inferpipe"):
            await app.invoke(function_id)
            await ended.after_commit.wait()
    finally:
        worker.notify_shutdown()
        await working
        await app.close()
    assert [r.getMessage() for r in caplog.records if "lease" in r.getMessage()] == []
