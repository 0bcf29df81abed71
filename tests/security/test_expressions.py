"""Expressions a tenant writes are bounded: statically when compiled, and by a time budget in
worker processes when evaluated, so no filter or graph can stop the server's process."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from bench.hostile_expressions import capped_filter, issue_filter

from inferpipe.core import expr
from inferpipe.core.errors import ExpressionBudgetError
from inferpipe.engine import sandbox
from tests.security.conftest import SecureServer, graph
from tests.server.conftest import assert_error, wait_status


def test_the_issues_nested_filter_is_refused_before_it_runs(secure: SecureServer) -> None:
    with secure.client() as http:
        answer = http.get("/v1/dashboard/runs", params={"where": issue_filter()})
    error = assert_error(answer, 422, "invalid_expression")
    assert "nested 4 deep; the limit is 2" in error["message"]


def test_a_filter_at_the_length_cap_runs_over_its_budget_while_healthz_answers(
    secure: SecureServer,
) -> None:
    with secure.client() as http:
        http.post("/v1/events", json={"name": "sec/echo", "data": {}}).raise_for_status()
        result: dict[str, httpx.Response] = {}
        slow = threading.Thread(
            target=lambda: result.update(
                answer=http.get("/v1/dashboard/runs", params={"where": capped_filter()})
            )
        )
        slow.start()
        health = [httpx.get(f"{secure.base_url}/healthz", timeout=30.0) for _ in range(3)]
        slow.join()
    assert [h.status_code for h in health] == [200, 200, 200]
    error = assert_error(result["answer"], 422, "expression_over_budget")
    assert "time budget" in error["message"]


def test_graph_expressions_nested_too_deep_are_refused_at_save_naming_the_node(
    secure: SecureServer,
) -> None:
    deep = "[1].map(a, [2].map(b, [3].map(c, a + b + c)))"
    with secure.client() as http:
        answer = http.post("/v1/workflows", json=graph([transform("deep", deep)]))
    error = assert_error(answer, 422, "graph_invalid")
    assert "'deep'" in error["details"][0]["message"]
    assert "nested 3 deep" in error["details"][0]["message"]


def test_a_transform_over_budget_fails_its_step_with_a_clear_error(
    secure: SecureServer,
) -> None:
    heavy = capped_filter(3900).replace(".size() > 0", "")
    with secure.client() as http:
        saved = http.post("/v1/workflows", json=graph([transform("heavy", heavy)]))
        assert saved.status_code == 201, saved.text
        run_id = http.post("/v1/workflows/attack/runs", json={"input": {}}).json()["run_id"]
        run = wait_status(http, run_id, {"failed"}, timeout_s=30)
        steps = http.get(f"/v1/runs/{run_id}/steps").json()["items"]
    assert "time budget" in run["error"]["message"]
    node = next(s for s in steps if s["name"] == "node-heavy-transform")
    assert node["error"]["code"] == "expression_failed"


def test_wait_and_trigger_matches_may_not_use_comprehensions(secure: SecureServer) -> None:
    wait = {
        "id": "hold",
        "type": "wait",
        "event": "x/y",
        "timeout": "1h",
        "match": "async.data.items.exists(i, i == 'x')",
    }
    trigger = {"event": "x/z", "match": "event.data.tags.all(t, t != 'spam')"}
    with secure.client() as http:
        answer = http.post("/v1/workflows", json=graph([wait], trigger=trigger))
    error = assert_error(answer, 422, "graph_invalid")
    messages = [d["message"] for d in error["details"]]
    assert any("'hold'" in m and "comprehensions" in m for m in messages), messages
    assert any("trigger match" in m and "comprehensions" in m for m in messages), messages


def test_every_expression_is_checked_statically_when_compiled() -> None:
    too_long = " + ".join(["1"] * 1400)
    for source, reason in ((too_long, "characters long"), (issue_filter(), "nested 4 deep")):
        try:
            expr.compile_expr(source)
        except expr.InvalidExpressionError as exc:
            assert reason in str(exc)
        else:
            raise AssertionError(f"compiled: {source[:40]}")


def transform(node_id: str, expression: str) -> dict[str, object]:
    return {"id": node_id, "type": "transform", "expression": expression}


async def test_the_sandbox_recovers_after_a_budget_error_and_reports_eval_errors() -> None:
    box = sandbox.ExpressionSandbox(sandbox.Budget(time_s=0.5), workers=1)
    heavy = capped_filter(3900)
    try:
        with pytest.raises(ExpressionBudgetError, match=r"time budget of 0\.5 s"):
            await box.evaluate(heavy, {})
        assert await box.evaluate("input.n * 2", {"input": {"n": 21}}) == 42  # a new worker
        with pytest.raises(expr.ExpressionEvalError) as failed:
            await box.evaluate("input.missing", {"input": {}})
        assert str(failed.value) == str(in_process_error("input.missing", {"input": {}}))
        assert await box.matches_many("x > 1", [{"x": 1}, {"x": 2}, {}]) == [False, True, False]
        outcomes = await asyncio.gather(
            *(box.evaluate(heavy, {}) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, ExpressionBudgetError) for o in outcomes)
    finally:
        box.close()


def in_process_error(source: str, variables: dict[str, object]) -> Exception:
    try:
        expr.evaluate(source, variables)
    except expr.ExpressionEvalError as exc:
        return exc
    raise AssertionError("no error")
