"""The API reference works offline: Swagger UI at /docs and Redoc at /redoc render every
operation of the API from files this server serves, in Chromium with every request beyond
loopback failed, under a content security policy that blocks nothing they need."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.dashboard.conftest import UI_TIMEOUT_MS, Dashboard, open_app

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolations.push({directive: e.effectiveDirective, blocked: e.blockedURI}));
"""

RENDER_TIMEOUT_MS = 30_000
"""The first render parses a 1-2 MB bundle and lays out every operation: on a loaded shared
machine that alone has taken over the default 10 s."""

REDOC_LOGO = {"directive": "img-src", "blocked": "https://cdn.redoc.ly/redoc/logo-mini.svg"}
"""Redoc's footer shows Redocly's logo from their CDN: the policy keeps it out (and the page
hides the broken image)."""


class OfflineBrowser:
    """Browser contexts whose requests beyond loopback fail, and are remembered."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.outside: list[str] = []
        self.contexts: list[BrowserContext] = []

    def page(self, storage_state: dict[str, Any] | None = None) -> Page:
        context = self.browser.new_context(
            storage_state=storage_state,  # type: ignore[arg-type]
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        context.route("**/*", self._only_loopback)
        context.add_init_script(VIOLATIONS)
        self.contexts.append(context)
        return context.new_page()

    def _only_loopback(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK_HOSTS:
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline(browser: Browser) -> Iterator[OfflineBrowser]:
    made = OfflineBrowser(browser)
    yield made
    for context in made.contexts:
        context.close()


def operations(dashboard: Dashboard) -> list[tuple[str, str, str]]:
    spec = dashboard.http.get("/openapi.json").json()
    return [
        (method.upper(), path, operation["summary"])
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def violations(page: Page) -> list[dict[str, str]]:
    found: list[dict[str, str]] = page.evaluate("window.cspViolations")
    return found


def test_swagger_ui_renders_every_operation_offline_and_tries_one(
    dashboard: Dashboard, offline: OfflineBrowser, sessions: dict[str, dict[str, Any]]
) -> None:
    expected = operations(dashboard)
    page = offline.page(sessions["reader"])
    open_app(page, dashboard.base_url, "/runs")
    with page.expect_navigation() as reached:
        page.get_by_role("navigation", name="Main").get_by_role(
            "link", name="API reference"
        ).click()
    response = reached.value
    assert response is not None and response.ok and response.url.endswith("/docs")

    blocks = page.locator(".opblock")
    expect(blocks).to_have_count(len(expected), timeout=RENDER_TIMEOUT_MS)
    for method, path, summary in expected:
        block = page.locator(f'.opblock:has(.opblock-summary-path[data-path="{path}"])')
        expect(block.filter(has_text=summary)).to_contain_text(method)

    listing = page.locator('.opblock-get:has(.opblock-summary-path[data-path="/v1/functions"])')
    listing.locator(".opblock-summary").click()
    listing.get_by_role("button", name="Try it out").click()
    listing.get_by_role("button", name="Execute").click()  # the session cookie is the key
    live = listing.locator(".live-responses-table tbody")
    expect(live.locator("td.response-col_status")).to_have_text("200")
    expect(live.locator("td.response-col_description")).to_contain_text('"checkout"')

    assert offline.outside == []
    assert violations(page) == []
    assert page.page_errors() == []
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy


def test_redoc_renders_every_operation_offline(
    dashboard: Dashboard, offline: OfflineBrowser
) -> None:
    expected = operations(dashboard)
    page = offline.page()
    response = page.goto(f"{dashboard.base_url}/redoc")
    assert response is not None and response.ok
    assert "script-src 'self';" in response.headers["content-security-policy"]

    headings = page.locator("h2")
    expect(headings.filter(has_text=expected[-1][2])).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    summaries = set(headings.all_inner_texts())
    assert {summary for _, _, summary in expected} <= summaries
    expect(page.locator(".menu-content")).to_contain_text("workflows")

    assert offline.outside == []
    assert [v for v in violations(page) if v != REDOC_LOGO] == []
    assert page.page_errors() == []
