"""The dashboard in Chromium against the live server: from the runs list to a failed step's
error and input in three clicks, a running run updating live, a dropped stream resumed with no
gap and no duplicate, a retried attempt's streamed output taken back, bulk cancel, the waiting
explanation, large values loaded in full."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from inferpipe.core.json import KB
from tests.dashboard.conftest import MANY_STEPS, Dashboard, open_app
from tests.dashboard.proxy import DroppableProxy


def stream_indices(page: Page) -> list[int]:
    return [
        int(i)
        for i in page.locator("#stream-log li").evaluate_all(
            "items => items.map(li => li.dataset.index)"
        )
    ]


def test_failed_step_error_and_input_in_three_clicks(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.send("shop/checkout", {"customer": "c-1"})[0]
    dashboard.wait(run_id, "failed")
    page = new_page()
    open_app(page, dashboard.base_url, "/runs")
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    expect(row.locator(".status")).to_have_text("failed")  # a word, not only a colour

    page.locator(f'a[data-run-link="{run_id}"]').click()  # 1
    page.locator('button.wf-row[data-step-key="charge-card"]').click()  # 2
    error = page.locator("#step-error")
    expect(error).to_contain_text("card declined for order ord-42")
    expect(error).to_contain_text("ValueError")
    expect(error.locator("pre.traceback")).to_contain_text("in charge")  # the user's frame
    expect(page.locator("#run-header")).to_contain_text("Executions")
    page.locator("#run-error summary").click()
    expect(page.locator("#run-error pre.traceback")).to_contain_text("in checkout")
    page.get_by_role("tab", name="Input").click()  # 3
    expect(page.get_by_role("tabpanel")).to_contain_text('"order_id": "ord-42"')

    assert "step=charge-card" in page.url and "tab=input" in page.url  # a deep link
    page.get_by_role("tab", name="Retries").click()
    expect(page.get_by_role("tabpanel")).to_contain_text("card declined")  # attempt 1 of 2
    deep = new_page()
    open_app(deep, dashboard.base_url, f"/run/{run_id}?step=charge-card&tab=input")
    expect(deep.get_by_role("tab", name="Input")).to_have_attribute("aria-selected", "true")
    expect(deep.get_by_role("tabpanel")).to_contain_text("ord-42")
    assert page.page_errors() == [] and deep.page_errors() == []


def test_running_run_updates_live(dashboard: Dashboard, new_page: Callable[..., Page]) -> None:
    run_id, gate = dashboard.ticker(3)
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    header = page.locator("#run-header")
    expect(header.locator("h1 .status")).to_have_text("running")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "connected")
    for tick in range(3):
        gate.release()
        expect(page.locator(f'button.wf-row[data-step-key="tick-{tick}"]')).to_be_visible()
    expect(header.locator("h1 .status")).to_have_text("completed")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "finished")
    assert stream_indices(page) == list(range(1, 6))  # started, 3 steps, finished


def test_dropped_stream_resumes_without_gap_or_duplicate(
    dashboard: Dashboard, new_page: Callable[..., Page], proxy: DroppableProxy
) -> None:
    run_id, gate = dashboard.ticker(6)
    page = new_page()
    open_app(page, proxy.url, f"/run/{run_id}")
    live = page.locator("#live-state")
    gate.release(2)
    expect(page.locator('#stream-log li[data-index="3"]')).to_be_attached()

    proxy.drop()  # the network goes away: the browser's connection is cut
    expect(live).to_have_attribute("data-state", "reconnecting")
    gate.release(3)  # three steps complete while the page is disconnected
    dashboard.wait_steps(run_id, 5)
    assert stream_indices(page) == [1, 2, 3]
    proxy.resume()  # EventSource reconnects with Last-Event-ID: 3

    expect(live).to_have_attribute("data-connects", "2")
    expect(page.locator('#stream-log li[data-index="6"]')).to_be_attached()
    gate.release(1)
    expect(live).to_have_attribute("data-state", "finished")
    assert stream_indices(page) == list(range(1, 9))  # started, 6 steps, finished
    assert live.get_attribute("data-duplicates") == "0"
    assert live.get_attribute("data-gaps") == "0"
    expect(page.locator('button.wf-row[data-step-key="tick-5"]')).to_be_visible()


def stream_lines(page: Page) -> list[str]:
    return [str(t) for t in page.locator("#stream-log li").all_inner_texts()]


def test_a_retried_attempt_shown_live_is_taken_back(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id, gate = dashboard.gated("retold")
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    live = page.locator("#stream-log")
    expect(live.locator("li", has_text="token tell")).to_have_count(2)  # the first attempt's
    gate.release()  # it fails now; the retry streams three tokens and completes
    expect(page.locator("#live-state")).to_have_attribute("data-state", "finished")
    expect(live.locator("li", has_text="step.abandoned")).to_have_count(1)
    expect(live.locator("li", has_text="token tell")).to_have_count(3)
    assert page.locator("#live-state").get_attribute("data-gaps") == "0"
    # Opened afterwards: the retried attempt's output was never shown, so nothing is taken back.
    later = new_page()
    open_app(later, dashboard.base_url, f"/run/{run_id}")
    expect(later.locator("#live-state")).to_have_attribute("data-state", "finished")
    assert not [line for line in stream_lines(later) if "step.abandoned" in line]
    assert len([line for line in stream_lines(later) if "token tell" in line]) == 3
    assert later.locator("#live-state").get_attribute("data-gaps") == "0"


def test_bulk_cancel_with_preview_and_confirmation(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    runs = [dashboard.send("shop/order.placed", {"order": f"bulk-{i}"})[0] for i in range(3)]
    for run_id in runs:
        dashboard.wait(run_id, "waiting")
    page = new_page()
    open_app(page, dashboard.base_url, "/runs?function=approval&status=waiting")
    for run_id in runs[:2]:
        page.get_by_label(f"Select run {run_id}").check()
    page.get_by_role("button", name="Cancel selected (2)…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Cancel 2 runs of 2 selected?")
    dialog.get_by_role("button", name="Cancel 2 runs").click()
    expect(page.locator("#bulk-result")).to_contain_text("Cancel: 2 runs done.")
    for run_id in runs[:2]:
        assert dashboard.wait(run_id, "cancelled")["status"] == "cancelled"
    assert dashboard.http.get(f"/v1/runs/{runs[2]}").json()["status"] == "waiting"


def test_waiting_run_explains_what_it_waits_for(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.send("shop/order.placed", {"order": "o-why"})[0]
    dashboard.wait(run_id, "waiting")
    dashboard.send("shop/order.approved", {"order": "o-why", "approved": False})
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    why = page.get_by_role("region", name="Why is this run still waiting?")
    expect(why.locator("#wait-event-name")).to_have_text("shop/order.approved")
    expect(why.locator("#wait-expression")).to_have_text(
        'async.data.order == "o-why" && async.data.approved == true'
    )
    expect(why).to_contain_text("Timeout2 d 0 h")
    candidates = why.locator("#wait-candidates")
    expect(candidates).to_contain_text("no match")
    expect(candidates).to_contain_text("failed clause async.data.approved == true")
    wait_row = page.locator('button.wf-row[data-step-key="wait-for-approval"]')
    expect(wait_row).to_contain_text("waits for event shop/order.approved")
    label = wait_row.locator(".wf-wait")
    expect(label).to_contain_text('async.data.order == "o-why" && async.data.approved == true')
    assert label.evaluate("el => el.scrollWidth <= el.clientWidth")  # shown whole, not cut
    dashboard.send("shop/order.approved", {"order": "o-why", "approved": True})
    expect(page.locator("#run-header h1 .status")).to_have_text("completed")


def test_large_output_is_cut_and_loads_in_full(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.invoke("big")
    dashboard.wait(run_id, "completed")
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}?step=make&tab=output")
    panel = page.get_by_role("tabpanel")
    expect(panel).to_contain_text("Large value")
    expect(panel).not_to_contain_text("THE-END")
    panel.get_by_role("button", name="Load full value").click()
    expect(panel).to_contain_text("THE-END")


def test_an_offloaded_output_shows_a_preview_and_downloads_whole(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.invoke("offloaded")
    dashboard.wait(run_id, "completed")
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}?step=scan&tab=output")
    panel = page.get_by_role("tabpanel")
    expect(panel).to_contain_text("Large value")
    link = panel.get_by_role("link", name="Download the whole output (JSON)")
    with page.expect_download() as download:
        link.click()
    saved = Path(download.value.path()).read_text()
    assert saved.endswith('THE-END"') and len(saved) > 300 * 1024


def _downloaded(page: Page, link: Locator) -> str:
    with page.expect_download() as download:
        link.click()
    return Path(download.value.path()).read_text()


def test_offloaded_inputs_and_event_data_download_whole(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    body = "x" * (300 * KB) + "THE-END"
    run_id = dashboard.invoke("offloaded-input", {"body": body})
    dashboard.wait(run_id, "completed")
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}?step=measure&tab=input")
    step_link = page.get_by_role("tabpanel").get_by_role(
        "link", name="Download the whole input (JSON)"
    )
    assert body in _downloaded(page, step_link)
    run_link = page.locator("#run-header").get_by_role(
        "link", name="Download the whole input (JSON)"
    )
    (started_by,) = json.loads(_downloaded(page, run_link))
    assert started_by["data"] == {"body": body}
    expect(page.locator("#run-output-download")).to_have_count(0)  # a number, in its row

    (event_id,) = dashboard.http.post(
        "/v1/events", json={"name": "test/untriggered", "data": {"body": body}}
    ).json()["ids"]
    open_app(page, dashboard.base_url, f"/event/{event_id}")
    event_link = page.get_by_role("link", name="Download the whole data (JSON)")
    assert json.loads(_downloaded(page, event_link)) == {"body": body}


def test_a_long_run_compact_list_is_searched_by_step_name(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.invoke("many-steps")
    dashboard.wait(run_id, "completed")
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    rows = page.locator("table.compact-steps tbody tr")
    expect(rows).to_have_count(MANY_STEPS)
    page.get_by_role("searchbox", name="Search steps by name").fill("item-7")
    expect(rows).to_have_count(11)  # item-7 and item-70 .. item-79
    expect(page.locator("#step-search-count")).to_have_text(f"11 of {MANY_STEPS} steps match")
    expect(page.locator('button[data-step-key="item-79"]')).to_be_visible()
    expect(page.locator('button[data-step-key="item-8"]')).to_have_count(0)
    page.locator('button[data-step-key="item-79"]').click()
    expect(page.locator("#step-search")).to_have_value("item-7")  # kept when the page re-renders
    expect(rows).to_have_count(11)
    page.get_by_role("searchbox", name="Search steps by name").fill("")
    expect(rows).to_have_count(MANY_STEPS)
    assert page.page_errors() == []


def test_a_long_runs_tables_stay_within_their_panels_on_a_small_screen(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.invoke("many-steps")
    dashboard.wait(run_id, "completed")
    page = new_page()
    page.set_viewport_size({"width": 1024, "height": 800})  # steps and inspector side by side
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    expect(page.locator("table.compact-steps tbody tr")).to_have_count(MANY_STEPS)
    overflow = page.locator(".table-wrap").evaluate_all(
        "boxes => boxes.map(box => box.querySelector('table').getBoundingClientRect().right"
        " - box.getBoundingClientRect().right)"
    )
    assert overflow and max(overflow) <= 0  # no sideways scrolling inside a panel
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def tables_overflow(page: Page) -> list[float]:
    """How far each table ends past its panel (positive: it scrolls sideways)."""
    found: list[float] = page.locator(".table-wrap").evaluate_all(
        "boxes => boxes.map(box => box.querySelector('table').getBoundingClientRect().right"
        " - box.getBoundingClientRect().right)"
    )
    return found


def test_the_runs_list_and_a_long_wait_stay_within_the_page_on_a_small_screen(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.send("shop/order.placed", {"order": "o" * 200})[0]
    dashboard.wait(run_id, "waiting")
    page = new_page()
    page.set_viewport_size({"width": 1024, "height": 800})
    open_app(page, dashboard.base_url, "/runs")
    expect(page.locator(f'#runs-table tr[data-run-id="{run_id}"]')).to_be_visible()
    assert max(tables_overflow(page)) <= 0
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    expect(page.locator("#why-waiting .why-summary")).to_contain_text("o" * 200)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_log_lines_written_outside_a_step_are_shown(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.invoke("many-steps")
    dashboard.wait(run_id, "completed")
    page = new_page()
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    logs = page.locator("#run-logs")
    expect(logs.locator("h2")).to_have_text("Logs (1)")
    line = logs.locator('tr[data-log-step=""]')
    expect(line).to_contain_text("starting a long run")
    expect(line).to_contain_text('{"items":80}')
    expect(line.locator("td").nth(1)).to_have_text("run")
    assert page.page_errors() == []


def test_the_events_table_stays_within_the_page(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    long_id = {"name": "shop/noted", "id": "note-" + "7" * 120, "data": {}}  # a producer's id
    assert dashboard.http.post("/v1/events", json=long_id).status_code == 202
    dashboard.send("shop/noted", {"note": "x" * 400})
    page = new_page()
    page.set_viewport_size({"width": 1024, "height": 800})
    open_app(page, dashboard.base_url, "/events")
    expect(page.locator("td.wrap code").first).to_contain_text("xxxx")
    table, box = page.locator("td.wrap").first.evaluate(
        "td => [td.closest('table'), td.closest('table').parentElement]"
        ".map(el => el.getBoundingClientRect().right)"
    )
    assert table <= box  # no sideways scrolling inside the panel either
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.page_errors() == []
