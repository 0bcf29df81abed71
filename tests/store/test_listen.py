"""`Store.listen` on both backends: a listener hears of what another process's store commits
(ready runs, and the finish of the run it waits for)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inferpipe.core.records import NewRun, RunStatus
from inferpipe.store.base import Outcome, Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from tests.store.conftest import PostgresServer, unique_workspace

NOW = 1_700_000_000_000
WAIT_S = 10.0


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Two stores on one database and workspace, as two processes would hold them."""
    workspace = unique_workspace()
    made: list[Store]
    if request.param == "sqlite":
        made = [SQLiteStore(tmp_path / "listen.db", workspace) for _ in range(2)]
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        made = [PostgresStore(server.url, workspace) for _ in range(2)]
    for store in made:
        await store.open()
    try:
        yield made
    finally:
        for store in made:
            await store.close()


async def test_a_listener_hears_of_runs_made_ready_by_another_store(stores: list[Store]) -> None:
    mine, theirs = stores
    woken = asyncio.Event()
    unlisten = await mine.listen(woken.set)
    try:
        await theirs.create_runs([NewRun("run-ready", "fn", [], [], NOW)], NOW)
        await asyncio.wait_for(woken.wait(), WAIT_S)
    finally:
        await unlisten()


async def test_a_listener_hears_of_the_finish_of_its_run_in_another_store(
    stores: list[Store],
) -> None:
    mine, theirs = stores
    await theirs.create_runs([NewRun("run-done", "fn", [], [], NOW)], NOW)
    (claimed,) = await theirs.claim("w", ["fn"], 1, NOW, 10_000)
    finished = asyncio.Event()
    unlisten = await mine.listen(finished.set, run_id="run-done")
    try:
        await theirs.finish(claimed.lease, Outcome(RunStatus.COMPLETED, output=1), [], NOW)
        await asyncio.wait_for(finished.wait(), WAIT_S)
        run = await mine.get_run("run-done")
        assert run is not None and run.status is RunStatus.COMPLETED
    finally:
        await unlisten()


async def test_listeners_arriving_together_share_one_watcher(stores: list[Store]) -> None:
    mine, theirs = stores
    before = set(asyncio.all_tasks())
    heard = [asyncio.Event() for _ in range(5)]
    unlistens = await asyncio.gather(*(mine.listen(e.set) for e in heard))
    try:
        started = set(asyncio.all_tasks()) - before
        if isinstance(mine, SQLiteStore):
            assert len(started) == 1  # one PRAGMA watcher, however many arrived at once
        await theirs.create_runs([NewRun("run-shared", "fn", [], [], NOW)], NOW)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in heard)), WAIT_S)
    finally:
        for unlisten in unlistens:
            await unlisten()
    left = {t.get_name() for t in set(asyncio.all_tasks()) - before if not t.done()}
    # PostgreSQL keeps its LISTEN connection (and its supervisor) until the store closes.
    assert left <= ({"inferpipe-pg-listener"} if isinstance(mine, PostgresStore) else set())
