"""Graph versions: save (validated), list, get, diff, roll back; in memory, SQLite, PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inferpipe.core.errors import ConfigurationError
from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.postgres.graphs import PostgresGraphs
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.store.sqlite.graphs import SQLiteGraphs
from inferpipe.workflows.errors import GraphInvalidError, GraphNotFoundError, ProblemCode
from inferpipe.workflows.graphstore import GraphStore, MemoryGraphStore
from tests.store.conftest import PostgresServer, unique_workspace
from tests.workflows import wf_build as b

V1 = b.document([b.llm("ask"), b.transform("t", "nodes.ask.output")])
V2 = b.document([b.llm("ask", "Bonjour {{ input.q }}"), b.transform("t", "nodes.ask.output")])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def graphs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GraphStore]:
    if request.param == "memory":
        yield MemoryGraphStore()
        return
    store: Store
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "graphs.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = PostgresStore(server.url, unique_workspace())  # one database, own workspace
    await store.open()
    try:
        yield GraphStore(store.graphs)
    finally:
        await store.close()


async def test_save_numbers_versions_and_keeps_the_newest_current(graphs: GraphStore) -> None:
    first = await graphs.save(V1)
    again = await graphs.save(V1)
    second = await graphs.save(V2)
    assert (first.created, again.created, second.created) == (True, False, True)
    assert first.version.info.version == again.version.info.version == 1
    assert second.version.info.version == 2
    assert second.version.graph.version == 2 and second.version.plan.graph_version == 2
    listed = await graphs.versions("g")
    assert [(v.version, v.current) for v in listed] == [(1, False), (2, True)]
    assert (await graphs.get("g")).info.version == 2
    assert [info.graph_id for info in await graphs.graphs()] == ["g"]


async def test_get_by_version_or_content_hash(graphs: GraphStore) -> None:
    one = (await graphs.save(V1)).version
    await graphs.save(V2)
    assert (await graphs.get("g", 1)).graph.nodes == one.graph.nodes
    by_hash = await graphs.get("g", content_hash=one.info.content_hash)
    assert by_hash.info.version == 1
    assert by_hash.plan.content_hash == one.plan.content_hash
    with pytest.raises(GraphNotFoundError, match="graph 'g' version 9"):
        await graphs.get("g", 9)
    with pytest.raises(GraphNotFoundError, match="graph 'nope'"):
        await graphs.versions("nope")


async def test_invalid_graph_is_refused_with_every_problem(graphs: GraphStore) -> None:
    document = b.document(
        [b.llm("a", "{{ nodes.b.output }}"), b.llm("b", "{{ nodes.a.output }}", model="x/y")]
    )
    with pytest.raises(GraphInvalidError) as info:
        await graphs.save(document)
    codes = {problem.code for problem in info.value.problems}
    assert {ProblemCode.CYCLE, ProblemCode.UNKNOWN_MODEL} <= codes
    assert await graphs.graphs() == []


async def test_diff_and_rollback(graphs: GraphStore) -> None:
    await graphs.save(V1)
    await graphs.save(V2)
    diff = await graphs.diff("g", 1, 2)
    assert [change.path for node in diff.changed_nodes for change in node.fields] == ["prompt"]
    rolled = await graphs.rollback("g", 1)
    assert rolled.version == 1 and rolled.current
    assert (await graphs.get("g")).info.version == 1
    # Saving again continues the numbering; saving the current content changes nothing.
    assert (await graphs.save(V1)).created is False
    assert (await graphs.save(V2)).version.info.version == 3
    with pytest.raises(GraphNotFoundError):
        await graphs.rollback("g", 7)


async def test_sqlite_versions_persist_and_are_scoped_by_workspace(tmp_path: Path) -> None:
    path = tmp_path / "graphs.db"
    store = SQLiteStore(path)
    await store.open()
    await GraphStore(store.graphs).save(V1)
    other = GraphStore(store.for_workspace("other").graphs)
    assert await other.graphs() == []
    await store.close()
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        saved = await GraphStore(reopened.graphs).get("g")
        assert saved.info.version == 1 and saved.plan.nodes.keys() == {"ask", "t"}
    finally:
        await reopened.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_each_backend_is_picked_for_its_store_and_scoped_by_workspace(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    store: Store
    if backend == "sqlite":
        store = SQLiteStore(tmp_path / "graphs.db", unique_workspace())
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = PostgresStore(await server.new_database(), unique_workspace())
    await store.open()
    try:
        mine = GraphStore(store.graphs)
        expected = SQLiteGraphs if backend == "sqlite" else PostgresGraphs
        assert type(mine.table) is expected
        await mine.save(V1)
        theirs = mine.for_workspace("other")
        assert await theirs.graphs() == []
        with pytest.raises(GraphNotFoundError):
            await theirs.get("g")
        await theirs.save(V2)
        await theirs.save(V1)
        assert [v.version for v in await theirs.versions("g")] == [1, 2]
        assert [v.version for v in await mine.versions("g")] == [1]
        view = GraphStore(store.for_workspace("other").graphs)
        assert isinstance(view.table, SQLiteGraphs | PostgresGraphs)
        assert view.workspace == "other"
        assert [v.version for v in await view.versions("g")] == [1, 2]
    finally:
        await store.close()


def test_a_memory_graph_store_serves_one_workspace_only() -> None:
    with pytest.raises(ConfigurationError, match="one workspace only"):
        MemoryGraphStore().for_workspace("other")
