"""Run totals over the API (`tokens` and `cost_usd` summed over a run's model-call steps, in a
run and in lists) and the filter of runs by workflow graph and version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import inferpipe as ip
from inferpipe.client import Client
from inferpipe.llm import FakeProvider, Message, ProviderRegistry, ScriptedReply, Usage
from inferpipe.llm import step as llm_step
from inferpipe.server.api import create_api
from inferpipe.testing import Harness
from tests.server.conftest import LiveServer, assert_error, wait_status

# gpt-4o-mini in genai-prices: $0.15 per million input tokens, $0.60 per million output tokens.
FIRST = Usage(input_tokens=1000, output_tokens=100)
SECOND = Usage(input_tokens=2000, output_tokens=500)
HAND_COST_USD = (1000 + 2000) * 0.15e-6 + (100 + 500) * 0.60e-6  # 0.00081


def totals_app(database: str) -> ip.App:
    app = ip.App("totals-tests", database=database)
    priced = ProviderRegistry(
        [
            FakeProvider(
                [ScriptedReply("one", usage=FIRST), ScriptedReply("two", usage=SECOND)],
                priced_as="openai/gpt-4o-mini",
            )
        ]
    )
    unpriced = ProviderRegistry(
        [FakeProvider([ScriptedReply("x", usage=FIRST)], priced_as="openai/self-hosted-llama")]
    )
    ask = [Message.user("hi")]

    @app.function(id="two-calls", retries=0)
    async def two_calls(ctx: ip.Context) -> str:
        await llm_step.chat(ctx, "first", model="fake/m", messages=ask, registry=priced)
        await ctx.step.run("between", lambda: "plain steps add nothing")
        await llm_step.chat(ctx, "second", model="fake/m", messages=ask, registry=priced)
        return "done"

    @app.function(id="unpriced", retries=0)
    async def unpriced_call(ctx: ip.Context) -> str:
        await llm_step.chat(ctx, "ask", model="fake/m", messages=ask, registry=unpriced)
        return "done"

    @app.function(id="no-model", retries=0)
    async def no_model(ctx: ip.Context) -> int:
        return int(await ctx.step.run("count", lambda: 3))

    return app


async def _run_all(app: ip.App, path: Path) -> dict[str, str]:
    async with Harness(app, path=path) as h:
        ids = {fn: await h.invoke(fn) for fn in ("two-calls", "unpriced", "no-model")}
        for run_id in ids.values():
            run = await h.settle(run_id)
            assert run is not None and run.status is ip.RunStatus.COMPLETED
        return ids


async def test_a_run_sums_its_model_calls_tokens_and_cost(tmp_path: Path) -> None:
    path = tmp_path / "totals.db"
    app = totals_app(f"sqlite:///{path}")
    ids = await _run_all(app, path)
    with TestClient(create_api(app, require_keys=False), base_url="http://127.0.0.1") as client:
        runs = {fn: client.get(f"/v1/runs/{run_id}").json() for fn, run_id in ids.items()}
        listed = {r["id"]: r for r in client.get("/v1/runs").json()["items"]}

    two = runs["two-calls"]
    assert two["tokens"] == {"input": 3000, "output": 600, "total": 3600}
    assert two["cost_usd"] == pytest.approx(HAND_COST_USD, rel=1e-9)
    unpriced = runs["unpriced"]
    assert unpriced["tokens"] == {"input": 1000, "output": 100, "total": 1100}
    assert unpriced["cost_usd"] is None  # unknown, never a silent zero
    assert runs["no-model"]["tokens"] == {"input": 0, "output": 0, "total": 0}
    assert runs["no-model"]["cost_usd"] == 0.0
    for run in runs.values():
        assert {k: listed[run["id"]][k] for k in ("tokens", "cost_usd")} == {
            k: run[k] for k in ("tokens", "cost_usd")
        }


def _graph(graph_id: str, prompt: str) -> dict[str, Any]:
    return {
        "id": graph_id,
        "name": "totals",
        "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "nodes": [{"id": "greet", "type": "llm", "model": "fake/echo", "prompt": prompt}],
        "output": {"text": "nodes.greet.output"},
    }


def _start(http: httpx.Client, graph_id: str, **body: Any) -> str:
    started = http.post(f"/v1/workflows/{graph_id}/runs", json={"input": {"name": "Ada"}, **body})
    assert started.status_code == 202, started.text
    run_id = str(started.json()["run_id"])
    assert wait_status(http, run_id, {"completed", "failed"})["status"] == "completed"
    return run_id


def _all_pages(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    query = {**params, "limit": 1}
    while True:
        page = http.get("/v1/runs", params=query).json()
        assert "items" in page, page
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        query["cursor"] = page["next_cursor"]


def check_workflow_filter(http: httpx.Client) -> dict[str, Any]:
    """Runs of two graphs (one with two versions) listed by graph and version, page by page;
    answers the one run of version 2."""
    assert http.post("/v1/workflows", json=_graph("totals-g", "Hi {{ input.name }}")).is_success
    assert http.post("/v1/workflows", json=_graph("totals-other", "Yo")).is_success
    v1 = [_start(http, "totals-g") for _ in range(2)]
    other = _start(http, "totals-other")
    saved = http.post("/v1/workflows", json=_graph("totals-g", "Hello {{ input.name }}"))
    assert saved.json()["version"] == 2
    v2 = _start(http, "totals-g")
    pinned = _start(http, "totals-g", version=1)

    def ids(**params: Any) -> list[str]:
        return [r["id"] for r in _all_pages(http, **params)]

    assert ids(workflow="totals-g") == sorted([*v1, v2, pinned], reverse=True)
    assert ids(workflow="totals-g", version=1) == sorted([*v1, pinned], reverse=True)
    assert ids(workflow="totals-g", version=2) == [v2]
    assert ids(workflow="totals-other") == [other]
    assert ids(workflow="totals-g", version=3) == []
    assert ids(workflow="totals-g", function="greet") == []
    assert ids(workflow="totals-g", status="failed") == []
    (run,) = http.get("/v1/runs", params={"workflow": "totals-g", "version": 2}).json()["items"]
    assert run["id"] == v2
    assert run["tokens"]["total"] > 0 and run["cost_usd"] == 0.0  # the fake provider is free

    alone = http.get("/v1/runs", params={"version": 1})
    assert_error(alone, 422, "invalid_request")
    assert_error(http.get("/v1/runs", params={"workflow": "no spaces"}), 422, "invalid_request")
    return dict(run)


def test_runs_filter_by_workflow_and_version(live: LiveServer, http_a: httpx.Client) -> None:
    run = check_workflow_filter(http_a)
    with Client(live.base_url, api_key=live.keys["a"]) as client:
        (typed,) = client.list_runs(workflow="totals-g", version=2).items
        assert typed.id == run["id"] and typed.tokens.total == run["tokens"]["total"]
