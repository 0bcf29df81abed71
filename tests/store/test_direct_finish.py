"""A finish whose events wake nothing is one statement on PostgreSQL; one whose events may resolve
a wait still resolves it, including a wait committed while the finish waited for its locks."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

import inferpipe as ip
from inferpipe.core.errors import LeaseLost
from inferpipe.core.events import FUNCTION_FINISHED
from inferpipe.core.records import NewRun, RunStatus
from inferpipe.store.base import FinishResult, Outcome, PlannedEvent
from inferpipe.store.postgres import PostgresStore, direct_finish
from inferpipe.store.postgres.database import lock_key
from inferpipe.store.postgres.finishes import Finish
from tests.store.conftest import PostgresServer, unique_workspace
from tests.store.pg_harness import PostgresHarness

NOW = 1_700_000_000_000


@pytest.fixture
def direct_finishes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each batch that tried the one statement: whether it finished there."""
    taken: list[bool] = []
    real = direct_finish.finish

    async def spy(conn: Any, items: list[Finish]) -> list[FinishResult | LeaseLost] | None:
        done = await real(conn, items)
        taken.append(done is not None)
        return done

    monkeypatch.setattr(direct_finish, "finish", spy)
    return taken


async def test_a_run_no_one_waits_for_finishes_in_one_statement_with_its_event(
    postgres: PostgresServer, direct_finishes: list[bool]
) -> None:
    app = ip.App("direct")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> object:
        return {"n": ctx.event.data["n"] + 1}

    async with PostgresHarness(app, postgres.url) as h:
        run = await h.settle(await h.invoke("f", {"n": 1}))
        assert run is not None and run.status is RunStatus.COMPLETED and run.output == {"n": 2}
        assert direct_finishes == [True]
        events = await h.engine.store.list_events(name=FUNCTION_FINISHED)
        assert [e["data"]["run_id"] for e in events.items] == [run.id]
        assert events.items[0]["data"]["output"] == {"n": 2}


async def test_waits_on_the_finish_are_resolved_whatever_their_pin(
    postgres: PostgresServer, direct_finishes: list[bool]
) -> None:
    """A parent's invoke (pinned at data.run_id), a wait pinned deep in the output, and one on
    another field: each sends the batch to the transaction, which resolves it."""
    app = ip.App("direct")

    @app.function(id="child")
    async def child(ctx: ip.Context) -> object:
        return {"a": {"b": {"c": ctx.event.data["k"]}}}

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> object:
        return await ctx.step.invoke("call", "child", {"k": 7})

    @app.function(id="deep")
    async def deep(ctx: ip.Context) -> object:
        ev = await ctx.step.wait_for_event(
            "w", event=FUNCTION_FINISHED, timeout="1h", if_exp="async.data.output.a.b.c == 8"
        )
        return ev.data["run_id"] if ev else None

    @app.function(id="any")
    async def any_finish(ctx: ip.Context) -> object:
        ev = await ctx.step.wait_for_event(
            "w", event=FUNCTION_FINISHED, timeout="1h", if_exp="async.data.function_id == 'child'"
        )
        return ev.data["output"] if ev else None

    async with PostgresHarness(app, postgres.url) as h:
        parent_id = await h.invoke("parent")
        assert (await h.settle(parent_id)).output == {"a": {"b": {"c": 7}}}
        assert direct_finishes.count(False) >= 1  # the child's finish found its parent's wait
        deep_id = await h.invoke("deep")
        await h.run_ready()
        assert (await h.run(deep_id)).status is RunStatus.WAITING
        second = await h.invoke("child", {"k": 8})
        await h.settle(second)
        assert (await h.settle(deep_id)).output == second
        any_id = await h.invoke("any")
        await h.run_ready()
        await h.settle(await h.invoke("child", {"k": 9}))
        assert (await h.settle(any_id)).output == {"a": {"b": {"c": 9}}}


async def test_a_wait_committed_while_the_finish_waits_for_its_locks_is_resolved(
    postgres: PostgresServer,
) -> None:
    """The finish's statement began before the wait was committed, so its own snapshot cannot
    see it; the lookup after the locks must, or the wait would never be resolved."""
    url = await postgres.new_database()
    ws = unique_workspace()
    store = PostgresStore(url, workspace=ws)
    await store.open()
    other = await asyncpg.connect(url)
    try:
        claimed = await store.start_run(NewRun("r1", "f", [], {}, NOW), NOW, "w1", 60_000)
        assert claimed is not None
        registering = other.transaction()
        await registering.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", lock_key(ws, FUNCTION_FINISHED))
        await other.execute(
            "INSERT INTO waits (workspace, created_at_ms, run_id, kind, event_name, step_key)"
            " VALUES ($1, $2, 'waiter', 'step', $3, 'w')",
            ws,
            NOW,
            FUNCTION_FINISHED,
        )
        finished = ip.Event(FUNCTION_FINISHED, {"run_id": "r1"}, id="finished-r1", ts_ms=NOW)
        finishing = asyncio.create_task(
            store.finish(
                claimed.lease,
                Outcome(RunStatus.COMPLETED, output=1),
                [PlannedEvent(finished)],
                NOW,
            )
        )
        await asyncio.sleep(0.3)
        assert not finishing.done()  # waiting for the name's lock
        await registering.commit()
        await finishing
        left = await other.fetchval("SELECT count(*) FROM waits WHERE run_id = 'waiter'")
        assert left == 0  # consumed by the event
        assert (await store.get_run("r1")).status is RunStatus.COMPLETED  # type: ignore[union-attr]
    finally:
        await other.close()
        await store.close()
