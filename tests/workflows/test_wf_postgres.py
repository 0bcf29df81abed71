"""Workflow graphs on PostgreSQL: the runtime keeps versions in the app's PostgreSQL database,
runs read their own workspace's graphs, saved triggers load from a postgresql:// URL,
concurrent saves from separate pools (as from separate processes) number versions apart, and
the CLI works on a postgresql:// database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.cli import main
from inferpipe.core.errors import StoreError
from inferpipe.engine.engine import Engine
from inferpipe.engine.worker import Worker
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.postgres.graphs import PostgresGraphs
from inferpipe.workflows.errors import GraphNotFoundError
from inferpipe.workflows.graphstore import GraphStore
from inferpipe.workflows.runtime import WorkflowRuntime
from tests.store.conftest import PostgresServer
from tests.workflows import wf_build as b

DOCUMENT = b.document([b.transform("shout", "input.q + '!'"), b.llm("ask", "Say {{ input.q }}")])


def _app(url: str, workspace: str = "default") -> tuple[ip.App, WorkflowRuntime]:
    app = ip.App("wf-pg", database=url, workspace=workspace)
    return app, WorkflowRuntime(app, retries=0)


async def test_a_graph_saved_and_run_on_postgres(postgres: PostgresServer) -> None:
    app, rt = _app(await postgres.new_database())
    async with app:
        assert isinstance(rt.graphs.table, PostgresGraphs)
        saved = await rt.save(DOCUMENT)
        assert saved.created and saved.version.info.version == 1
        run_id = await rt.run("g", {"q": "hi"})
        await app.worker().run_until_idle()
        run = await app.get_run(run_id)
        steps = [step.key for step in await app.steps(run_id)]
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {"result": "Say hi"}
    assert set(steps) == {"resolve-graph", "node-shout-transform", "node-ask-llm"}


async def test_runs_read_the_graphs_of_their_own_workspace(postgres: PostgresServer) -> None:
    app, rt = _app(await postgres.new_database())
    async with app:
        await rt.save(b.document([b.transform("t", "'default'")]))
        await rt.save(b.document([b.transform("t", "'other'")]), workspace="other")
        with pytest.raises(GraphNotFoundError):
            await rt.graphs_for("third").get("g")
        # Another workspace's engine, as the API server builds one per workspace.
        base = app.engine
        other = Engine(base.store.for_workspace("other"), base.registry, clock=base.clock)
        default_run = await rt.run("g", {"q": "x"})
        other_run = await rt.run("g", {"q": "x"}, engine=other)
        await app.worker().run_until_idle()
        await Worker(other).run_until_idle()
        default_output = (await app.get_run(default_run)).output
        found = await other.store.get_run(other_run)
    assert default_output == {"result": "default"}
    assert found is not None and found.output == {"result": "other"}


async def test_saved_triggers_load_from_a_postgres_url(postgres: PostgresServer) -> None:
    url = await postgres.new_database()
    triggered = b.document([b.transform("t", "input.q")], trigger={"event": "text/in"})
    saving_app, saving_rt = _app(url)
    async with saving_app:
        await saving_rt.save(triggered)
        await saving_rt.save({**triggered, "id": "elsewhere"}, workspace="other")
    app, rt = _app(url)
    assert rt.load_saved_triggers() == ["workflow:g"]  # the app's database and workspace
    assert _app(url)[1].load_saved_triggers(url, workspace="other") == ["workflow:elsewhere"]
    async with app:
        await app.send(ip.Event("text/in", {"q": "hello"}))
        await app.worker().run_until_idle()
        runs = (await app.list_runs()).items
    assert [(r.function_id, r.output) for r in runs] == [("workflow:g", {"result": "hello"})]


async def test_no_tables_means_no_triggers_and_a_dead_server_is_an_error(
    postgres: PostgresServer,
) -> None:
    empty = await postgres.new_database()
    assert _app(empty)[1].load_saved_triggers() == []
    unreachable = empty.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StoreError, match="saved workflow graphs"):
        _app(unreachable)[1].load_saved_triggers()


async def test_concurrent_saves_from_two_pools_get_distinct_versions(
    postgres: PostgresServer,
) -> None:
    url = await postgres.new_database()
    stores = [PostgresStore(url), PostgresStore(url)]
    for store in stores:
        await store.open()
    try:
        first, second = (GraphStore(store.graphs) for store in stores)
        documents = [
            b.document([b.transform("t", f"'v{i}'")], name=f"variant {i}") for i in range(6)
        ]
        saves = [
            (first if i % 2 else second).save(document) for i, document in enumerate(documents)
        ]
        results = await asyncio.gather(*saves)
        # The same document saved twice at once makes one version.
        again = await asyncio.gather(first.save(documents[0]), second.save(documents[0]))
        listed = await first.versions("g")
    finally:
        for store in stores:
            await store.close()
    assert sorted(r.version.info.version for r in results) == [1, 2, 3, 4, 5, 6]
    created_again = [r.created for r in again].count(True)
    assert created_again <= 1
    assert [v.version for v in listed] == list(range(1, 7 + created_again))
    assert sum(v.current for v in listed) == 1


def test_the_cli_saves_and_runs_on_postgres(
    postgres: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database", asyncio.run(postgres.new_database())]
    path = tmp_path / "g.json"
    path.write_text(json.dumps(DOCUMENT), encoding="utf-8")
    assert main(["workflows", "save", str(path), *database]) == 0
    assert main(["workflows", "versions", "g", *database]) == 0
    assert main(["workflows", "run", "g", "--input", '{"q": "pg"}', *database]) == 0
    out = capsys.readouterr().out
    assert "g: saved as version 1" in out and ": completed" in out
    assert "node-ask-llm" in out and '"result": "Say pg"' in out
