"""Accessibility: an axe-core scan of every page finds no serious or critical violation; status
is a word as well as a colour; everything is reachable and operable by keyboard; live updates
are announced politely and can be paused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import TRIGGERED_GRAPH, Dashboard, Triage, axe_source, open_app

AXE_CACHE = Path.home() / ".cache" / "inferpipe" / "axe-core"
BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="module")
def axe() -> str:
    return axe_source(AXE_CACHE)


def violations(page: Page, axe: str) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe)
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        targets: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))"""
    )
    return [v for v in found if v["impact"] in BLOCKING]


@pytest.fixture(scope="module")
def sample_runs(dashboard: Dashboard) -> dict[str, str]:
    failed = dashboard.send("shop/checkout", {"customer": "a11y"})[0]
    waiting = dashboard.send("shop/order.placed", {"order": "a11y"})[0]
    chat = dashboard.send("chat/asked", {"question": "is this accessible?"})[0]
    rated = dashboard.send("chat/rated", {"variant": "short", "rating": 0.8})[0]
    dashboard.wait(failed, "failed")
    dashboard.wait(waiting, "waiting")
    dashboard.wait(chat, "completed")
    dashboard.wait(rated, "completed")
    dashboard.send("shop/order.approved", {"order": "a11y", "approved": False})
    event_id = dashboard.http.get(f"/v1/runs/{chat}").json()["event_ids"][0]
    return {"failed": failed, "waiting": waiting, "chat": chat, "event": event_id}


def test_no_serious_violations_on_any_page(
    dashboard: Dashboard,
    new_page: Callable[..., Page],
    axe: str,
    sample_runs: dict[str, str],
    triage: Triage,
) -> None:
    page = new_page(bypass_csp=True)
    fragments = [
        "/runs",
        f"/run/{sample_runs['failed']}",
        f"/run/{sample_runs['failed']}?step=charge-card&tab=retries",
        f"/run/{sample_runs['waiting']}",
        f"/run/{sample_runs['chat']}?step=answer&tab=model",
        "/events",
        f"/event/{sample_runs['event']}",
        "/functions",
        "/scores",
        "/costs",
        "/workflows",
        f"/workflow/{TRIGGERED_GRAPH}?from=1&to=2",
    ]
    problems = {}
    for fragment in fragments:
        open_app(page, dashboard.base_url, fragment)
        page.locator("main h1").first.wait_for()
        found = violations(page, axe)
        if found:
            problems[fragment] = found
    login = new_page(None, bypass_csp=True)
    login.goto(f"{dashboard.base_url}/dashboard/login")
    if found := violations(login, axe):
        problems["login"] = found
    assert problems == {}, json.dumps(problems, indent=1)


def test_status_is_a_word_and_live_updates_are_polite_and_pausable(
    dashboard: Dashboard, new_page: Callable[..., Page], sample_runs: dict[str, str]
) -> None:
    page = new_page()
    open_app(page, dashboard.base_url, "/runs")
    badges = page.locator("#runs-table .status")
    expect(badges.first).to_be_visible()
    for text in badges.all_inner_texts():
        assert text.strip() in {
            "queued",
            "running",
            "sleeping",
            "waiting",
            "completed",
            "failed",
            "cancelled",
            "skipped",
        }
    region = page.locator("#announcer")
    assert region.get_attribute("aria-live") == "polite"
    pause = page.get_by_role("button", name="Pause live updates")
    pause.click()
    expect(page.get_by_role("button", name="Resume live updates")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(region).to_have_text("Live updates paused")
    before = page.locator("#runs-table tbody tr").count()
    dashboard.send("shop/order.placed", {"order": "arrives-while-paused"})
    page.wait_for_timeout(3000)  # longer than a poll: nothing may appear while paused
    expect(page.locator("#new-runs-banner")).to_be_hidden()
    page.get_by_role("button", name="Resume live updates").click()
    banner = page.locator("#new-runs-banner")
    expect(banner).to_contain_text("1 new run arrived.")
    assert page.locator("#runs-table tbody tr").count() == before  # announced, not reflowed
    banner.get_by_role("button", name="Show new runs").click()
    expect(page.locator("#runs-table tbody tr")).to_have_count(before + 1)


def test_everything_is_reachable_by_keyboard(
    dashboard: Dashboard, new_page: Callable[..., Page], sample_runs: dict[str, str]
) -> None:
    page = new_page()
    open_app(page, dashboard.base_url, "/runs?function=checkout")
    link = page.locator(f'a[data-run-link="{sample_runs["failed"]}"]')
    for _ in range(60):  # Tab through the page until the run's link has focus
        page.keyboard.press("Tab")
        if link.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("the run link is not reachable with Tab")
    page.keyboard.press("Enter")
    step = page.locator('button.wf-row[data-step-key="load-cart"]')
    step.focus()
    page.keyboard.press("Enter")
    selected = page.get_by_role("tab", selected=True)
    expect(selected).to_be_focused()
    first_tab = selected.inner_text()
    page.keyboard.press("ArrowLeft")  # tabs follow the WAI-ARIA pattern
    expect(page.get_by_role("tab", selected=True)).to_be_focused()
    assert page.get_by_role("tab", selected=True).inner_text() != first_tab
    rerun = page.get_by_role("button", name="Re-run…", exact=True)
    rerun.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("0 steps reused, 2 executed again")
    page.keyboard.press("Escape")  # a dialog closes with Escape and changes nothing
    expect(dialog).to_have_count(0)
