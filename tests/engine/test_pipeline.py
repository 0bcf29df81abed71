"""Pipelined step records: a step's result is recorded while the function runs on, and the run
waits for its records before anything that leaves it (`Limits.pipeline_steps`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import inferpipe as ip
from inferpipe.core.errors import StoreError
from inferpipe.core.records import Lease
from inferpipe.store.base import Progress, ProgressResult
from tests.engine.conftest import HarnessFactory


class Gate:
    """Holds the run's store commits until opened, and tells what happened in which order."""

    def __init__(self, store: Any, *, fail_first: bool = False) -> None:
        self.opened = asyncio.Event()
        self.committing = asyncio.Event()  #: a commit has reached the store
        self.events: list[str] = []
        self.fail_first = fail_first
        commit = store.commit

        async def gated(lease: Lease, progress: Progress, now_ms: int) -> ProgressResult:
            keys = ",".join(s.key for s in progress.steps)
            self.events.append(f"commit {keys}")
            self.committing.set()
            if self.fail_first:
                self.fail_first = False
                raise StoreError("disk I/O error (injected)")
            await self.opened.wait()
            result = await commit(lease, progress, now_ms)
            self.events.append(f"durable {keys}")
            return result  # type: ignore[no-any-return]

        store.commit = gated


def note(events: list[str], what: str) -> str:
    events.append(what)
    return what


@pytest.mark.parametrize("lag", [0, 16])
async def test_the_next_step_runs_while_the_record_before_it_commits(
    harness: HarnessFactory, lag: int
) -> None:
    app = ip.App("t", limits=ip.Limits(pipeline_steps=lag))
    gates: list[Gate] = []

    @app.function(id="f")
    async def f(ctx: ip.Context) -> list[str]:
        async def step(name: str) -> str:
            await asyncio.sleep(0)  # as a step doing I/O would
            return note(gates[0].events, f"ran {name}")

        return [await ctx.step.run(n, step, n) for n in ("a", "b")]

    async def open_later(gate: Gate) -> None:
        await gate.committing.wait()
        for _ in range(20):  # turns of the loop in which a pipelined step goes on
            await asyncio.sleep(0)
        gate.opened.set()

    async with harness(app) as h:
        gates.append(Gate(h.engine.store))
        opener = asyncio.create_task(open_later(gates[0]))
        run = await h.settle(await h.invoke("f"))
        await opener
        assert run is not None and run.output == ["ran a", "ran b"]
        events = gates[0].events
        if lag == 0:  # each record is durable before its step returns
            assert events[:4] == ["ran a", "commit a", "durable a", "ran b"]
        else:  # b ran while a's record was held at the store
            assert events[:4] == ["ran a", "commit a", "ran b", "durable a"]
        assert [s.key for s in await h.steps(run.id)] == ["a", "b"]


async def test_what_leaves_the_run_waits_for_the_records_before_it(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")
    seen: list[str] = []

    @app.function(id="f")
    async def f(ctx: ip.Context) -> str:
        await ctx.step.run("a", lambda: "a")
        await ctx.stream.publish({"after": "a"})
        await ctx.step.send_event("tell", ip.Event("t/told", {}))
        return "done"

    @app.function(id="listener", trigger=ip.on_event("t/told"))
    async def listener(ctx: ip.Context) -> None:
        seen.append("told")

    async with harness(app) as h:
        gate = Gate(h.engine.store)
        gate.opened.set()
        pubsub = h.engine.pubsub
        assert pubsub is not None
        publish = pubsub.publish

        async def noted(topic: str, data: Any, **kw: Any) -> Any:
            if data.get("type") == "user":
                gate.events.append("published")
            return await publish(topic, data, **kw)

        pubsub.publish = noted  # type: ignore[method-assign]
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.output == "done" and seen == ["told"]
        # The stream event and the send go out only once a's record is durable.
        events = gate.events
        assert events.index("durable a") < events.index("published") < events.index("commit tell")


async def test_a_failed_pipelined_write_stops_the_run_and_its_steps_run_again(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")
    ran: list[str] = []

    @app.function(id="f")
    async def f(ctx: ip.Context) -> list[str]:
        async def step(name: str) -> str:
            ran.append(name)
            await asyncio.sleep(0.05)  # the failure of a's write arrives while b runs
            return name

        return [await ctx.step.run(n, step, n) for n in ("a", "b", "c")]

    async with harness(app) as h:
        gate = Gate(h.engine.store, fail_first=True)
        gate.opened.set()
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        assert run.output == ["a", "b", "c"]
        # a's record was lost with its write: a runs again; c never started in the first
        # execution, which stopped at its next step once the write had failed.
        assert ran == ["a", "b", "a", "b", "c"]
        assert run.executions == 2
