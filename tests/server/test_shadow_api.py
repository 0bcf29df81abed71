"""Shadow policies over the HTTP API of a real server: create (bad ones refused with every
problem), shadow a run, the report and the side-by-side comparison, on/off, the cutover and
its rollback, and workspace isolation."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.server.conftest import assert_error, wait_status

REPORT_TIMEOUT_S = 30.0


def _graph(graph_id: str) -> dict[str, Any]:
    return {
        "id": graph_id,
        "name": "answer",
        "input_schema": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
        },
        "nodes": [{"id": "answer", "type": "llm", "model": "fake/echo", "prompt": "{{ input.q }}"}],
        "output": {"answer": "nodes.answer.output"},
    }


def _report_when_compared(http: httpx.Client, policy_id: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while True:
        report = http.get(f"/v1/shadow/policies/{policy_id}/report")
        assert report.status_code == 200, report.text
        if report.json()["counts"]["shadow_runs"] >= count:
            return dict(report.json())
        assert time.monotonic() < deadline, report.json()
        time.sleep(0.05)


def test_a_policy_shadows_runs_and_reports_over_the_api(
    http_a: httpx.Client, http_b: httpx.Client
) -> None:
    assert http_a.post("/v1/workflows", json=_graph("shadowed")).status_code == 201
    created = http_a.post(
        "/v1/shadow/policies",
        json={"graph_id": "shadowed", "overrides": {"answer.model": "fake/summarize"}},
    )
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["candidate"] == "the run's version + 1 override" and policy["enabled"]

    run_ids = []
    for q in ("Same", "First. Second."):
        started = http_a.post("/v1/workflows/shadowed/runs", json={"input": {"q": q}})
        run_ids.append(started.json()["run_id"])
    for run_id in run_ids:
        assert wait_status(http_a, run_id, {"completed"})["output"]["answer"] in (
            "Same",
            "First. Second.",
        )
    report = _report_when_compared(http_a, policy["id"], 2)
    assert report["counts"]["equal"] == 1 and report["counts"]["different"] == 1
    assert report["match_rate"] == 0.5 and len(report["match_rate_ci95"]) == 2
    (worst,) = report["worst"]
    side = http_a.get(worst["links"]["comparison"])
    assert side.status_code == 200, side.text
    comparison = side.json()
    assert comparison["primary"]["output"] == {"answer": "First. Second."}
    assert comparison["shadow"]["output"] == {"answer": "First."}
    assert comparison["output_diff"] == [
        {"path": "answer", "primary": "First. Second.", "shadow": "First."}
    ]
    shadow_run = http_a.get(worst["links"]["shadow_run"]).json()
    assert shadow_run["function_id"] == "workflow-shadow"

    # Workspace b sees none of it.
    assert_error(http_b.get(f"/v1/shadow/policies/{policy['id']}"), 404, "shadow_not_found")
    assert http_b.get("/v1/shadow/policies").json() == []

    # Off, then the cutover and its rollback.
    off = http_a.patch(f"/v1/shadow/policies/{policy['id']}", json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False
    promoted = http_a.post(f"/v1/shadow/policies/{policy['id']}/promote")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["promotion"]["previous_version"] == 1
    assert promoted.json()["promotion"]["version"] == 2
    versions = http_a.get("/v1/workflows/shadowed/versions").json()["items"]
    assert [v["current"] for v in versions] == [False, True]
    assert_error(http_a.post(f"/v1/shadow/policies/{policy['id']}/promote"), 409, "shadow_state")
    rolled = http_a.post(f"/v1/shadow/policies/{policy['id']}/rollback")
    assert rolled.status_code == 200 and rolled.json()["promotion"]["rolled_back_at_ms"]
    versions = http_a.get("/v1/workflows/shadowed/versions").json()["items"]
    assert [v["current"] for v in versions] == [True, False]
    assert_error(http_a.post(f"/v1/shadow/policies/{policy['id']}/rollback"), 409, "shadow_state")
    again = http_a.get(f"/v1/shadow/policies/{policy['id']}/report").json()
    assert again["counts"] == report["counts"]  # the record remains


def test_bad_policies_answer_clear_errors(http_a: httpx.Client) -> None:
    assert http_a.post("/v1/workflows", json=_graph("strict")).status_code in (200, 201)
    unknown = http_a.post("/v1/shadow/policies", json={"graph_id": "ghost", "candidate_version": 1})
    assert "'ghost'" in assert_error(unknown, 404, "graph_not_found")["message"]
    version = http_a.post(
        "/v1/shadow/policies", json={"graph_id": "strict", "candidate_version": 9}
    )
    assert "version 9" in assert_error(version, 404, "graph_not_found")["message"]
    cases = [
        ({"overrides": {"nobody.model": "fake/echo"}}, "no node 'nobody'"),
        ({"overrides": {"answer.model": "fake/nosuch"}}, "unknown_model"),
        ({"candidate_version": 1, "rate": 2}, "within [0, 1]"),
        ({"candidate_version": 1, "call_nodes": ["ghost"]}, "no node 'ghost'"),
    ]
    for fields, message in cases:
        response = http_a.post("/v1/shadow/policies", json={"graph_id": "strict", **fields})
        assert message in assert_error(response, 422, "shadow_policy_invalid")["message"]
    typed = http_a.post("/v1/shadow/policies", json={"graph_id": "strict", "rate": "all"})
    assert_error(typed, 422, "invalid_request")
    assert http_a.get("/v1/shadow/policies", params={"graph_id": "strict"}).json() == []
    assert_error(http_a.get("/v1/shadow/comparisons/nope"), 404, "shadow_not_found")
