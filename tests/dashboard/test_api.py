"""The dashboard's JSON endpoints: runs with totals and a CEL filter, why a run waits, re-run
previews, costs, scores and experiments, bulk actions, the session, and keyless dev."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from fastapi.testclient import TestClient

from inferpipe.core.records import RunStatus
from inferpipe.server.api import create_api
from inferpipe.server.dashboard.schemas import StatusName
from tests.dashboard.conftest import Dashboard, build_app
from tests.server.conftest import assert_error


def test_run_rows_add_up_steps_tokens_cost_and_scores(dashboard: Dashboard) -> None:
    run_id = dashboard.send("chat/asked", {"question": "what is durable execution?"})[0]
    dashboard.wait(run_id, "completed")
    rows = dashboard.http.get("/v1/dashboard/runs", params={"function": "chat"}).json()["items"]
    row = next(r for r in rows if r["id"] == run_id)
    assert row["trigger"] == "chat/asked"
    assert row["steps"] == 2 and row["failed_steps"] == 0
    assert row["tokens"] > 0 and row["cost_usd"] is not None
    assert row["scores"] == [{"name": "helpful", "value": 0.9, "count": 1}]


def test_cel_filter_over_run_and_event(dashboard: Dashboard) -> None:
    wanted = dashboard.send("chat/asked", {"question": "needle-7"})[0]
    dashboard.send("chat/asked", {"question": "hay"})
    dashboard.wait(wanted, "completed")
    page = dashboard.http.get(
        "/v1/dashboard/runs", params={"where": "event.data.question == 'needle-7'"}
    ).json()
    assert [r["id"] for r in page["items"]] == [wanted]
    assert page["scanned"] >= 2
    bad = dashboard.http.get("/v1/dashboard/runs", params={"where": "nope.x == 1"})
    assert_error(bad, 422, "invalid_expression")


def test_waiting_explains_each_recent_event(dashboard: Dashboard) -> None:
    run_id = dashboard.send("shop/order.placed", {"order": "o-17"})[0]
    dashboard.wait(run_id, "waiting")
    dashboard.send("shop/order.approved", {"order": "o-99", "approved": True})
    dashboard.send("shop/order.approved", {"order": "o-17", "approved": False})
    dashboard.send("shop/order.approved", {"approved": True})  # no `order`: the clause errors
    info = dashboard.http.get(f"/v1/runs/{run_id}/waiting").json()
    assert info["waiting"] is True and info["status"] == "waiting"
    (wait,) = info["waits"]
    assert wait["event"] == "shop/order.approved"
    assert wait["expression"] == 'async.data.order == "o-17" && async.data.approved == true'
    assert wait["timeout_ms"] == 2 * 86_400_000
    newest, second, third = wait["candidates"][:3]
    assert newest["matched"] is False and newest["error"] is not None
    assert second["failed_clause"] == "async.data.approved == true"
    assert third["failed_clause"] == 'async.data.order == "o-17"'
    assert [c["passed"] for c in third["clauses"]] == [False, True]


def test_rerun_preview_flags_side_effects(dashboard: Dashboard) -> None:
    failed = dashboard.send("shop/checkout", {})[0]
    dashboard.wait(failed, "failed")
    preview = dashboard.http.get(f"/v1/runs/{failed}/rerun-preview?from=failed_step").json()
    actions = {s["name"]: s["action"] for s in preview["steps"]}
    assert actions == {"load-cart": "reuse", "charge-card": "execute"}
    assert preview["allowed"] is True and preview["reused"] == 1
    chat = dashboard.send("chat/asked", {"question": "hi"})[0]
    dashboard.wait(chat, "completed")
    again = dashboard.http.get(f"/v1/runs/{chat}/rerun-preview").json()
    assert {s["name"]: s["side_effect"] for s in again["steps"]}["answer"] == "llm"
    waiting = dashboard.send("shop/order.placed", {"order": "o-1"})[0]
    dashboard.wait(waiting, "waiting")
    refused = dashboard.http.get(f"/v1/runs/{waiting}/rerun-preview").json()
    assert refused["allowed"] is False and "still waiting" in refused["reason"]


def test_costs_by_model_function_and_day(dashboard: Dashboard) -> None:
    run_id = dashboard.send("chat/asked", {"question": "one two three"})[0]
    dashboard.wait(run_id, "completed")
    for group in ("model", "function", "day"):
        report = dashboard.http.get("/v1/costs", params={"group": group}).json()
        assert report["total"]["calls"] >= 1
        assert sum(r["calls"] for r in report["rows"]) == report["total"]["calls"]
    keys = [r["key"] for r in dashboard.http.get("/v1/costs?group=function").json()["rows"]]
    assert keys == ["chat"]


def test_scores_and_experiment_comparison(dashboard: Dashboard) -> None:
    runs = [
        dashboard.send("chat/rated", {"variant": v, "rating": r})[0]
        for v, r in [("short", 0.9), ("short", 0.7), ("long", 0.4), ("long", 0.6)]
    ]
    for run_id in runs:
        dashboard.wait(run_id, "completed")
    report = dashboard.http.get("/v1/dashboard/scores").json()
    assert "prompt-style" in report["experiments"]
    rating = next(n for n in report["names"] if n["name"] == "rating")
    assert sum(rating["histogram"]) == rating["count"] >= 4
    experiment = dashboard.http.get("/v1/dashboard/experiments/prompt-style").json()
    by_variant = {v["variant"]: v for v in experiment["variants"]}
    assert (
        by_variant["short"]["ci_low"]
        <= by_variant["short"]["mean"]
        <= by_variant["short"]["ci_high"]
    )


def test_bulk_with_a_filter_needs_the_previewed_count(dashboard: Dashboard) -> None:
    body = {"action": "cancel", "filter": {"function": "approval", "status": "waiting"}}
    preview = dashboard.http.post("/v1/dashboard/bulk", json={**body, "dry_run": True}).json()
    stale = dashboard.http.post(
        "/v1/dashboard/bulk", json={**body, "expected_count": preview["matched"] + 1}
    )
    assert_error(stale, 409, "conflict")
    neither = dashboard.http.post("/v1/dashboard/bulk", json={"action": "cancel"})
    assert_error(neither, 422, "invalid_request")
    with dashboard.client("reader") as reader:
        assert_error(reader.post("/v1/dashboard/bulk", json=body), 403, "forbidden")


def test_session_info_for_a_key(dashboard: Dashboard) -> None:
    with dashboard.client("reader") as reader:
        info = reader.get("/v1/dashboard/session").json()
    assert info == {
        "workspace": "dash",
        "role": "read",
        "can_write": False,
        "auth": "key",
        "csrf_token": None,
        "require_keys": True,
    }


def test_keyless_dev_needs_no_login(tmp_path: Path) -> None:
    api = create_api(build_app(f"sqlite:///{tmp_path / 'dev.db'}"), require_keys=False)
    with TestClient(api, base_url="http://127.0.0.1") as client:
        info = client.get("/v1/dashboard/session").json()
        assert info["auth"] == "none" and info["can_write"] is True
        stale = client.get("/v1/dashboard/session", headers={"Cookie": "ip_session=x.1.y.z"})
        assert stale.json()["auth"] == "none"  # a stale cookie does not lock dev out
        shell = client.get("/")
        assert shell.status_code == 200 and "inferpipe" in shell.text
        assert "default-src 'self'" in shell.headers["content-security-policy"]
        assert client.get("/dashboard/static/js/app.js").status_code == 200


def test_bulk_filter_statuses_match_the_run_statuses() -> None:
    assert set(get_args(StatusName)) == {s.value for s in RunStatus}
