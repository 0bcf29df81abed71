"""Workflow graphs over the HTTP API: save (every problem listed), versions, diff, roll back,
runs whose steps are `node-<id>-<type>`, workspace isolation and read-only keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

import inferpipe as ip
from tests.server.conftest import LiveServer, assert_error, start_server, wait_status


def _graph(graph_id: str, prompt: str = "Hello {{ input.name }}") -> dict[str, Any]:
    return {
        "id": graph_id,
        "name": "greeting",
        "input_schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["name", "n"],
        },
        "nodes": [
            {"id": "greet", "type": "llm", "model": "fake/echo", "prompt": prompt},
            {"id": "twice", "type": "task", "task": "double", "args": {"n": "input.n"}},
            {
                "id": "both",
                "type": "transform",
                "expression": "[nodes.greet.output, nodes.twice.output]",
            },
        ],
        "output": {"result": "nodes.both.output"},
    }


def test_an_invalid_graph_answers_422_listing_every_problem(http_a: httpx.Client) -> None:
    document = {
        "id": "broken",
        "name": "broken",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "nodes": [
            {"id": "a", "type": "transform", "expression": "nodes.b.output"},
            {"id": "b", "type": "transform", "expression": "nodes.a.output"},
            {"id": "ask", "type": "llm", "model": "nowhere/model", "prompt": "{{ input.missing }}"},
            {"id": "calc", "type": "transform", "expression": "1 +"},
        ],
        "output": {"result": "nodes.ghost.output"},
    }
    error = assert_error(http_a.post("/v1/workflows", json=document), 422, "graph_invalid")
    found = [(d["field"], d["message"]) for d in error["details"]]
    assert "8 problems" in error["message"]
    expected = [
        ("body.nodes[0]", "[cycle] node 'a' at /nodes/0: cycle: a -> b -> a"),
        ("body.nodes[2].model", "[unknown_model] node 'ask' at /nodes/2/model"),
        ("body.nodes[2].prompt", "[missing_input] node 'ask' at /nodes/2/prompt"),
        ("body.nodes[3].expression", "[invalid_expression] node 'calc' at /nodes/3/expression"),
        ("body.output.result", "[output_mapping] graph at /output/result"),
        ("body.nodes[1]", "[unreachable] node 'b'"),
    ]
    for field, start in expected:
        assert any(f == field and m.startswith(start) for f, m in found), (field, found)
    # Schema problems are listed the same way, all at once.
    schema = {"id": "x", "name": "x", "nodes": [{"id": "n", "type": "llm"}, {"type": "nope"}]}
    error = assert_error(http_a.post("/v1/workflows", json=schema), 422, "graph_invalid")
    fields = {d["field"] for d in error["details"]}
    assert {"body.nodes[0].model", "body.nodes[0].prompt"} <= fields, fields
    assert any(f.startswith("body.nodes[1]") for f in fields), fields
    assert_error(http_a.get("/v1/workflows/broken/versions"), 404, "graph_not_found")
    huge = {**_graph("huge"), "input_schema": {"type": "object", "maxProperties": 10**30}}
    assert_error(http_a.post("/v1/workflows", json=huge), 422, "output_not_serializable")


def test_a_problem_under_a_key_of_unicode_digits_is_a_422_naming_it(
    http_a: httpx.Client,
) -> None:
    # A key such as "¹" passes str.isdigit() but is no index (found by the API fuzz test).
    document = {**_graph("odd-key"), "output": {"¹": "nodes.ghost.output"}}
    error = assert_error(http_a.post("/v1/workflows", json=document), 422, "graph_invalid")
    assert "body.output.¹" in [d["field"] for d in error["details"]]


def test_save_run_and_the_steps_are_named_after_the_nodes(
    live: LiveServer, http_a: httpx.Client
) -> None:
    saved = http_a.post("/v1/workflows", json=_graph("http-greeting"))
    assert saved.status_code == 201, saved.text
    assert saved.json()["version"] == 1 and saved.json()["created"] is True
    again = http_a.post("/v1/workflows", json=_graph("http-greeting"))
    assert again.status_code == 200 and again.json()["created"] is False

    started = http_a.post(
        "/v1/workflows/http-greeting/runs", json={"input": {"name": "Ada", "n": 21}}
    )
    assert started.status_code == 202, started.text
    body = started.json()
    assert (body["graph_id"], body["version"]) == ("http-greeting", 1)
    run = live.wait_status(http_a, body["run_id"], {"completed", "failed"})
    assert run["status"] == "completed", run
    assert run["function_id"] == "workflow-run"
    assert run["output"] == {"result": ["Hello Ada", 42]}
    steps = http_a.get(f"/v1/runs/{body['run_id']}/steps").json()["items"]
    names = [s["name"] for s in steps]
    assert set(names) == {
        "resolve-graph",
        "node-greet-llm",
        "node-twice-task",
        "node-both-transform",
    }
    llm = next(s for s in steps if s["name"] == "node-greet-llm")
    assert llm["kind"] == "llm" and llm["meta"]["usage"]["output_tokens"] > 0

    bad_input = http_a.post("/v1/workflows/http-greeting/runs", json={"input": {"name": 1}})
    error = assert_error(bad_input, 422, "workflow_input_invalid")
    assert {d["field"] for d in error["details"]} == {"body.input"}
    assert len(error["details"]) == 2  # `name` has the wrong type, `n` is missing


def test_versions_diff_and_rollback(http_a: httpx.Client) -> None:
    assert http_a.post("/v1/workflows", json=_graph("versioned")).status_code == 201
    second = http_a.post("/v1/workflows", json=_graph("versioned", "Bonjour {{ input.name }}"))
    assert second.json()["version"] == 2

    listed = http_a.get("/v1/workflows/versioned/versions").json()["items"]
    assert [(v["version"], v["current"]) for v in listed] == [(1, False), (2, True)]
    heads = {g["graph_id"]: g["version"] for g in http_a.get("/v1/workflows").json()["items"]}
    assert heads["versioned"] == 2

    one = http_a.get("/v1/workflows/versioned/versions/1").json()
    assert one["graph"]["nodes"][0]["prompt"] == "Hello {{ input.name }}"
    assert [n["step_name"] for n in one["nodes"]] == [
        "node-greet-llm",
        "node-twice-task",
        "node-both-transform",
    ]
    assert_error(http_a.get("/v1/workflows/versioned/versions/9"), 404, "graph_not_found")

    diff = http_a.get("/v1/workflows/versioned/diff", params={"from": 1, "to": 2}).json()
    (changed,) = diff["changed_nodes"]
    assert changed["node_id"] == "greet" and changed["fields"][0]["path"] == "prompt"
    assert "~ node greet" in diff["text"]

    rolled = http_a.post("/v1/workflows/versioned/rollback", json={"version": 1})
    assert rolled.status_code == 200 and rolled.json()["current"] is True
    started = http_a.post("/v1/workflows/versioned/runs", json={"input": {"name": "x", "n": 1}})
    assert started.json()["version"] == 1
    missing = http_a.post("/v1/workflows/versioned/rollback", json={"version": 7})
    assert_error(missing, 404, "graph_not_found")


def test_another_workspace_cannot_see_or_run_the_graph(
    live: LiveServer, http_a: httpx.Client, http_b: httpx.Client
) -> None:
    assert http_a.post("/v1/workflows", json=_graph("private-to-a")).status_code == 201
    listed = http_b.get("/v1/workflows").json()["items"]
    assert "private-to-a" not in {g["graph_id"] for g in listed}
    for path in (
        "/v1/workflows/private-to-a/versions",
        "/v1/workflows/private-to-a/versions/1",
        "/v1/workflows/private-to-a/diff?from=1&to=1",
    ):
        assert_error(http_b.get(path), 404, "graph_not_found")
    run = http_b.post("/v1/workflows/private-to-a/runs", json={"input": {"name": "b", "n": 1}})
    assert_error(run, 404, "graph_not_found")
    rollback = http_b.post("/v1/workflows/private-to-a/rollback", json={"version": 1})
    assert_error(rollback, 404, "graph_not_found")

    # B saves a graph with the same id: its own version 1, run in its own workspace.
    assert (
        http_b.post("/v1/workflows", json=_graph("private-to-a", "Hi {{ input.name }}")).json()[
            "version"
        ]
        == 1
    )
    started = http_b.post("/v1/workflows/private-to-a/runs", json={"input": {"name": "B", "n": 2}})
    run_id = started.json()["run_id"]
    assert wait_status(http_b, run_id, {"completed"})["output"] == {"result": ["Hi B", 4]}
    assert_error(http_a.get(f"/v1/runs/{run_id}"), 404, "run_not_found")
    versions = http_a.get("/v1/workflows/private-to-a/versions").json()["items"]
    assert [v["version"] for v in versions] == [1]


def test_read_only_keys_cannot_change_workflows(live: LiveServer, http_a: httpx.Client) -> None:
    assert http_a.post("/v1/workflows", json=_graph("read-only-check")).status_code == 201
    with live.client("a_read") as reader:
        assert reader.get("/v1/workflows/read-only-check/versions").status_code == 200
        for path, body in (
            ("/v1/workflows", _graph("read-only-check")),
            ("/v1/workflows/read-only-check/rollback", {"version": 1}),
            ("/v1/workflows/read-only-check/runs", {"input": {"name": "r", "n": 1}}),
        ):
            assert_error(reader.post(path, json=body), 403, "forbidden")


def test_without_a_runtime_the_routes_answer_workflows_not_enabled(tmp_path: Path) -> None:
    server, stop = start_server(
        ip.App("plain", database=f"sqlite:///{tmp_path}/plain.db"), require_keys=False
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert_error(http.get("/v1/workflows"), 404, "workflows_not_enabled")
            saved = http.post("/v1/workflows", json=_graph("g"))
            assert_error(saved, 404, "workflows_not_enabled")
    finally:
        stop()
