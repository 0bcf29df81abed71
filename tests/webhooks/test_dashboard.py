"""The dashboard's Webhooks page in Chromium: a subscription's delivery log with every attempt
and the receiver's answers, and redelivery from the page (counted at the receiver)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS
from tests.server.conftest import start_server
from tests.webhooks.conftest import incoming_app
from tests.webhooks.delivery_app import build
from tests.webhooks.receiver import receiver


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[Page, str]]:
    app = build(f"sqlite:///{tmp_path / 'dash.db'}", private=True, backoff_s=0.2)
    server, stop = start_server(app, require_keys=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                made = browser.new_page()
                made.set_default_timeout(UI_TIMEOUT_MS)
                yield made, f"http://127.0.0.1:{server.port}"
            finally:
                browser.close()
    finally:
        stop()


def test_the_delivery_log_shows_attempts_and_redelivers(page: tuple[Page, str]) -> None:
    tab, base = page
    with receiver([503]) as hook, httpx.Client(base_url=base, timeout=10.0) as http:
        sub = http.post(
            "/v1/webhook-subscriptions", json={"url": hook.url, "events": ["run.finished"]}
        ).json()
        http.put("/v1/webhook-sources/helpdesk", json={"scheme": "standard"})
        (run_id,) = http.post("/v1/events", json={"name": "test/work"}).json()["runs_created"]
        deadline = time.monotonic() + 20
        while not hook.accepted():
            assert time.monotonic() < deadline, "the delivery did not arrive"
            time.sleep(0.05)
        delivery_id = hook.accepted()[0].headers["webhook-id"]
        deadline = time.monotonic() + 20
        while http.get(f"/v1/webhook-deliveries/{delivery_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the delivery was not logged as succeeded"
            time.sleep(0.05)

        tab.goto(f"{base}/#/webhooks")
        panel = tab.locator(f'[data-subscription="{sub["id"]}"]')
        expect(panel).to_contain_text(hook.url)
        row = panel.locator(f'[data-delivery="{delivery_id}"]')
        expect(row.locator('[data-status="succeeded"]')).to_be_visible()
        expect(row.get_by_role("link", name=run_id)).to_be_visible()
        row.get_by_text("2 attempts").click()
        expect(row.locator('[data-attempt="0.0"]')).to_contain_text("HTTP 503")
        expect(row.locator('[data-attempt="0.0"]')).to_contain_text("receiver says no")
        expect(row.locator('[data-attempt="0.1"]')).to_contain_text("HTTP 200")
        expect(tab.get_by_role("table").last).to_contain_text("helpdesk")

        row.get_by_role("button", name="Redeliver").click()
        deadline = time.monotonic() + 20
        while len(hook.accepted()) < 2:
            assert time.monotonic() < deadline, "the redelivery did not arrive"
            time.sleep(0.05)
        assert hook.accepted()[1].headers["webhook-id"] == delivery_id
        assert len(hook.all()) == 3
        tab.reload()
        row = tab.locator(f'[data-delivery="{delivery_id}"]')
        row.get_by_text("3 attempts").click()
        expect(row.locator('[data-attempt="1.0"]')).to_contain_text("redelivery 1")


def test_an_app_without_delivery_says_so(tmp_path: Path) -> None:
    server, stop = start_server(incoming_app(f"sqlite:///{tmp_path / 'in.db'}"), require_keys=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                tab = browser.new_page()
                tab.goto(f"http://127.0.0.1:{server.port}/#/webhooks")
                expect(tab.get_by_text("delivers no outgoing webhooks")).to_be_visible(
                    timeout=UI_TIMEOUT_MS
                )
            finally:
                browser.close()
    finally:
        stop()
