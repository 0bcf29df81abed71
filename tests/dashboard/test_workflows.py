"""The dashboard's workflows section in Chromium: the saved graphs, a graph's versions and one
version's nodes, a diff between two versions (long values wrapped inside the page), and the
graph's runs, all or one version's, whether started by id or by the graph's trigger."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import LONG_NOTE, TRIGGERED_GRAPH, Dashboard, Triage, open_app


def within_page(page: Page, selector: str) -> None:
    """The table at `selector` ends inside its panel, and the page does not scroll sideways."""
    table, box = page.locator(selector).evaluate(
        "t => [t, t.closest('.table-wrap')].map(el => el.getBoundingClientRect().right)"
    )
    assert table <= box
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_saved_graphs_and_a_graphs_versions(
    dashboard: Dashboard, new_page: Callable[..., Page], triage: Triage
) -> None:
    page = new_page("reader")
    open_app(page, dashboard.base_url, "/runs")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    row = page.locator(f'#graphs-table tr[data-graph-id="{TRIGGERED_GRAPH}"]')
    expect(row).to_contain_text("Ticket triage, renamed")
    expect(row.locator("td").nth(2)).to_have_text("v3")  # current version
    expect(row.locator("td").nth(3)).to_have_text("3")  # versions saved

    row.get_by_role("link", name=TRIGGERED_GRAPH, exact=True).click()
    expect(page.locator("main h1")).to_contain_text("Ticket triage, renamed")
    versions = page.locator("#versions-table tbody tr")
    expect(versions).to_have_count(3)
    expect(versions.nth(2)).to_contain_text("current")
    expect(versions.nth(0)).not_to_contain_text("current")
    expect(page.locator("#nodes-title")).to_have_text("Nodes of version 3")
    expect(page.locator("#nodes-table tbody tr")).to_have_count(2)

    versions.nth(0).get_by_role("link", name="Nodes of v1").click()
    expect(page.locator("#nodes-title")).to_have_text("Nodes of version 1")
    nodes = page.locator("#nodes-table tbody tr")
    expect(nodes).to_have_count(1)
    expect(nodes.first).to_contain_text("node-clean-transform")  # the node's step name
    assert "show=1" in page.url  # a link that can be shared
    assert page.page_errors() == []


def test_diff_between_two_versions_wraps_inside_the_page(
    dashboard: Dashboard, new_page: Callable[..., Page], triage: Triage
) -> None:
    page = new_page("reader")
    page.set_viewport_size({"width": 1024, "height": 800})
    open_app(page, dashboard.base_url, f"/workflow/{TRIGGERED_GRAPH}")
    result = page.locator("#diff-result")
    expect(result).to_contain_text("From v2 to v3")  # the latest two by default
    expect(result).to_contain_text("name")

    page.get_by_label("From version", exact=True).select_option("1")
    page.get_by_label("To version", exact=True).select_option("2")
    page.get_by_role("button", name="Compare").click()
    expect(result).to_contain_text("From v1 to v2: 1 node added, 0 removed, 1 changed.")
    expect(result.get_by_role("list").first).to_contain_text("measure")
    changed = page.locator("#diff-table tbody tr", has_text="expression")
    expect(changed.locator("td").nth(0)).to_have_text("clean")
    expect(changed.locator("td").nth(2)).to_have_text("input.q")
    expect(changed.locator("td").nth(3)).to_contain_text(LONG_NOTE.strip()[-60:])  # whole
    within_page(page, "#diff-table")
    assert "from=1" in page.url and "to=2" in page.url

    page.get_by_label("To version", exact=True).select_option("1")
    page.get_by_role("button", name="Compare").click()
    expect(result).to_contain_text("Choose two different versions.")
    assert page.page_errors() == []


def test_runs_per_graph_and_per_version(
    dashboard: Dashboard, new_page: Callable[..., Page], triage: Triage
) -> None:
    page = new_page("reader")
    open_app(page, dashboard.base_url, f"/workflow/{TRIGGERED_GRAPH}")
    rows = page.locator("#graph-runs-table tbody tr")
    expect(rows).to_have_count(len(triage.runs))
    for run_id, version in triage.runs.items():
        row = page.locator(f'#graph-runs-table tr[data-run-id="{run_id}"]')
        expect(row.locator("td").nth(1)).to_have_text("completed")
        expect(row.locator("td").nth(2)).to_have_text(f"v{version}")
    triggered = page.locator(f'#graph-runs-table tr[data-run-id="{triage.triggered}"]')
    expect(triggered).to_contain_text(f"workflow:{TRIGGERED_GRAPH}")

    page.get_by_label("Version", exact=True).select_option("1")
    expect(page.locator("#graph-runs-table caption")).to_have_text("Runs of v1, newest first")
    expect(rows).to_have_count(2)
    for text in rows.locator("td:nth-child(3)").all_inner_texts():
        assert text == "v1"
    within_page(page, "#graph-runs-table")

    page.locator("#versions-table tbody tr").nth(2).get_by_role("link", name="Runs of v3").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link").click()
    page.wait_for_url(f"**/#/run/{triage.triggered}")
    expect(page.locator("#run-header")).to_contain_text(f"workflow:{TRIGGERED_GRAPH}")
    assert page.page_errors() == []


def test_graph_runs_page_by_page_cover_both_functions_once(
    dashboard: Dashboard, triage: Triage
) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = dashboard.http.get(
            f"/v1/dashboard/workflows/{TRIGGERED_GRAPH}/runs", params=params
        )
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [row["id"] for row in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(triage.runs, reverse=True)  # newest first, each once
    only_v2 = dashboard.http.get(
        f"/v1/dashboard/workflows/{TRIGGERED_GRAPH}/runs", params={"version": 2}
    ).json()
    assert [(r["id"], r["graph_version"]) for r in only_v2["items"]] == [
        (run_id, 2) for run_id, version in triage.runs.items() if version == 2
    ]
    missing = dashboard.http.get("/v1/dashboard/workflows/no-such-graph/runs")
    assert missing.status_code == 404
