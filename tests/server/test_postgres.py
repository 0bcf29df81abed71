"""The API keys and the API server on PostgreSQL (a real cluster on loopback)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import httpx
import pytest
from rich.console import Console

from inferpipe.server import keys, keys_cli
from inferpipe.server.errors import UnauthorizedError
from inferpipe.store.postgres import PostgresStore
from tests.server.conftest import assert_error, build_app, start_server, wait_status
from tests.server.test_run_totals import check_workflow_filter
from tests.store.conftest import PostgresServer, launch_postgres


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    server, stop = launch_postgres()
    try:
        yield server
    finally:
        stop()


async def test_key_store_on_postgres(postgres_server: PostgresServer) -> None:
    store = PostgresStore(await postgres_server.new_database())
    await store.open()
    try:
        ks = store.keys
        record, secret = await keys.create_key(ks, workspace="acme", name="ci", role="read")
        assert (await keys.verify_key(ks, secret)).id == record.id
        assert [k.name for k in await keys.list_keys(ks, "acme")] == ["ci"]
        assert await ks.workspaces() == ["acme"]
        await keys.revoke_key(ks, record.id)
        with pytest.raises(UnauthorizedError, match="revoked"):
            await keys.verify_key(ks, secret)
    finally:
        await store.close()


def test_api_server_on_postgres(postgres_server: PostgresServer) -> None:
    url = asyncio.run(postgres_server.new_database())

    async def make_keys() -> tuple[str, str]:
        store = PostgresStore(url)
        await store.open()
        quiet = Console(file=io.StringIO())
        try:
            a = await keys_cli.create_key(store, workspace="pg-a", name="a", console=quiet)
            b = await keys_cli.create_key(store, workspace="pg-b", name="b", console=quiet)
            return a, b
        finally:
            await store.close()

    key_a, key_b = asyncio.run(make_keys())
    server, stop = start_server(build_app(url), require_keys=True)
    base = f"http://127.0.0.1:{server.port}"
    try:
        with (
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key_a}"}) as a,
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key_b}"}) as b,
        ):
            sent = a.post("/v1/events", json={"name": "test/greet", "data": {"name": "pg"}})
            (run_id,) = sent.json()["runs_created"]
            assert wait_status(a, run_id, {"completed"})["output"] == {"text": "hello pg"}
            assert_error(b.get(f"/v1/runs/{run_id}"), 404, "run_not_found")
            assert_error(b.get(f"/v1/events/{sent.json()['ids'][0]}"), 404, "event_not_found")
            metrics = httpx.get(f"{base}/metrics").text
            assert 'inferpipe_runs{status="completed"}' in metrics
    finally:
        stop()


def test_workflow_graphs_over_the_api_on_postgres(postgres_server: PostgresServer) -> None:
    url = asyncio.run(postgres_server.new_database())

    async def make_keys() -> tuple[str, str]:
        store = PostgresStore(url)
        await store.open()
        quiet = Console(file=io.StringIO())
        try:
            a = await keys_cli.create_key(store, workspace="wf-a", name="a", console=quiet)
            b = await keys_cli.create_key(store, workspace="wf-b", name="b", console=quiet)
            return a, b
        finally:
            await store.close()

    key_a, key_b = asyncio.run(make_keys())
    graph = {
        "id": "pg-graph",
        "name": "on postgres",
        "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "nodes": [{"id": "twice", "type": "task", "task": "double", "args": {"n": "input.n"}}],
        "output": {"result": "nodes.twice.output"},
    }
    server, stop = start_server(build_app(url), require_keys=True)
    base = f"http://127.0.0.1:{server.port}"
    try:
        with (
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key_a}"}) as a,
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key_b}"}) as b,
        ):
            assert a.post("/v1/workflows", json=graph).json()["version"] == 1
            started = a.post("/v1/workflows/pg-graph/runs", json={"input": {"n": 4}})
            run_id = started.json()["run_id"]
            assert wait_status(a, run_id, {"completed"})["output"] == {"result": 8}
            steps = [s["name"] for s in a.get(f"/v1/runs/{run_id}/steps").json()["items"]]
            assert steps == ["resolve-graph", "node-twice-task"]
            assert_error(b.get("/v1/workflows/pg-graph/versions"), 404, "graph_not_found")
    finally:
        stop()


def test_runs_filter_by_workflow_and_version_on_postgres(postgres_server: PostgresServer) -> None:
    url = asyncio.run(postgres_server.new_database())
    server, stop = start_server(build_app(url), require_keys=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10.0) as http:
            check_workflow_filter(http)
    finally:
        stop()
