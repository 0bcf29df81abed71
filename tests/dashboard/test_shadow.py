"""The dashboard's shadow runs in Chromium: the policies, a policy's parity report (match
rate, deltas, nodes, worst differences), one primary run beside its shadow, and the admin's
off switch, promotion and rollback (a reader sees no buttons)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Dashboard, open_app
from tests.dashboard.test_a11y import axe, violations

__all__ = ["axe"]  # the fixture, used by name

GRAPH = "shadowed-answer"
REPORT_TIMEOUT_S = 30.0


def _shadowed(dashboard: Dashboard) -> dict[str, Any]:
    document = {
        "id": GRAPH,
        "name": "Answer",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "nodes": [{"id": "answer", "type": "llm", "model": "fake/echo", "prompt": "{{ input.q }}"}],
        "output": {"answer": "nodes.answer.output"},
    }
    assert dashboard.http.post("/v1/workflows", json=document).status_code in (200, 201)
    body = {"graph_id": GRAPH, "overrides": {"answer.model": "fake/summarize"}}
    policy = dashboard.http.post("/v1/shadow/policies", json=body).json()
    for q in ("Same", "First. Second."):
        dashboard.http.post(f"/v1/workflows/{GRAPH}/runs", json={"input": {"q": q}})
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while True:
        report = dashboard.http.get(f"/v1/shadow/policies/{policy['id']}/report").json()
        if report["counts"]["shadow_runs"] == 2:
            return dict(report)
        assert time.monotonic() < deadline, report
        time.sleep(0.05)


def test_report_side_by_side_and_cutover(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    report = _shadowed(dashboard)
    policy_id = report["policy"]["id"]
    reader = new_page("reader", own_session=True)
    open_app(reader, dashboard.base_url, "/runs")
    reader.get_by_role("navigation", name="Main").get_by_role("link", name="Shadow runs").click()
    row = reader.locator(f'#policies-table tr[data-policy="{policy_id}"]')
    expect(row).to_contain_text("the run's version + 1 override")
    expect(row).to_contain_text("on")
    row.get_by_role("link", name=policy_id).click()
    expect(reader.locator("#match-rate")).to_contain_text("50.0 %")
    expect(reader.locator("#match-rate")).to_contain_text("95 % CI")
    expect(reader.locator('#deltas-table tr[data-figure="tokens"] td').nth(2)).to_contain_text(
        "\u2212"
    )  # fewer tokens
    expect(reader.locator("#nodes-table tbody tr")).to_have_count(1)
    expect(reader.locator("#policy-actions button")).to_have_count(0)  # read-only key
    worst = reader.locator("#worst-table tbody tr")
    expect(worst).to_have_count(1)
    worst.get_by_role("link", name="Side by side").click()
    expect(reader.locator("#verdict")).to_have_text("The outputs differ at 1 path.")
    expect(reader.locator('[data-side="primary"] pre')).to_contain_text("First. Second.")
    expect(reader.locator('[data-side="shadow"] pre')).to_contain_text('"First."')
    expect(reader.locator("#output-diff tbody tr")).to_have_count(1)
    expect(reader.locator("#compare-nodes tbody tr").first).to_contain_text("answer")
    assert reader.page_errors() == []

    admin = new_page("admin", own_session=True)
    open_app(admin, dashboard.base_url, f"/shadow/policy/{policy_id}")
    admin.get_by_role("button", name="Turn off").click()
    expect(admin.locator("#policy-state")).to_have_text("off")
    admin.get_by_role("button", name="Promote").click()
    admin.locator("dialog").get_by_role("button", name="Promote").click()
    expect(admin.locator("#policy-state")).to_have_text("promoted: v1 → v2")
    versions = dashboard.http.get(f"/v1/workflows/{GRAPH}/versions").json()["items"]
    assert [v["current"] for v in versions] == [False, True]
    admin.get_by_role("button", name="Roll back").click()
    admin.locator("dialog").get_by_role("button", name="Roll back").click()
    expect(admin.locator("#policy-state")).to_have_text("rolled back")
    versions = dashboard.http.get(f"/v1/workflows/{GRAPH}/versions").json()["items"]
    assert [v["current"] for v in versions] == [True, False]
    assert admin.page_errors() == []


def test_shadow_pages_have_no_serious_accessibility_violations(
    dashboard: Dashboard, new_page: Callable[..., Page], axe: str
) -> None:
    policies = dashboard.http.get("/v1/shadow/policies", params={"graph_id": GRAPH}).json()
    report = (
        dashboard.http.get(f"/v1/shadow/policies/{policies[0]['id']}/report").json()
        if policies
        else _shadowed(dashboard)
    )
    policy_id = report["policy"]["id"]
    comparison = report["worst"][0]["shadow_run_id"]
    page = new_page(bypass_csp=True, own_session=True)
    problems = {}
    for fragment in ("/shadow", f"/shadow/policy/{policy_id}", f"/shadow/run/{comparison}"):
        open_app(page, dashboard.base_url, fragment)
        page.locator("main h1").first.wait_for()
        if found := violations(page, axe):
            problems[fragment] = found
    assert problems == {}, json.dumps(problems, indent=1)
