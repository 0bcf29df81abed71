"""Off loopback the dashboard needs a login: an API key typed into a form becomes an HttpOnly
session cookie that the API accepts (with a CSRF token on writes); read-only keys see no
destructive buttons and are refused anyway; logging out or revoking the key ends the session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import APIRequestContext, Page, expect

from tests.dashboard.conftest import Dashboard, in_thread, login, open_app, revoke


def csrf_of(request: APIRequestContext, base_url: str) -> str:
    info: dict[str, Any] = request.get(f"{base_url}/v1/dashboard/session").json()
    assert info["auth"] == "session"
    return str(info["csrf_token"])


def test_login_is_required_and_a_key_opens_a_session(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    page = new_page(None)
    page.goto(f"{dashboard.base_url}/#/functions")
    page.wait_for_url("**/dashboard/login?next=*")
    expect(page.get_by_role("heading", name="inferpipe")).to_be_visible()
    assert httpx.get(f"{dashboard.base_url}/v1/runs").status_code == 401

    page.get_by_label("API key").fill("ip_dash_" + "0" * 40)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid API key")

    page.get_by_label("API key").fill(dashboard.keys["admin"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/#/functions")
    expect(page.get_by_role("heading", name="Functions", exact=True)).to_be_visible()
    expect(page.locator("#whoami")).to_contain_text("dash · admin")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "ip_session" and cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert dashboard.keys["admin"] not in cookie["value"]  # the secret stays out of the browser


def test_session_cookie_opens_the_api_with_csrf_on_writes(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    request = new_page("admin").context.request
    assert request.get(f"{dashboard.base_url}/v1/runs").status == 200
    url = f"{dashboard.base_url}/v1/functions/big/invoke"
    refused = request.post(url, data={"data": {}})
    assert refused.status == 403 and refused.json()["error"]["code"] == "forbidden"
    token = csrf_of(request, dashboard.base_url)
    accepted = request.post(url, data={"data": {}}, headers={"X-CSRF-Token": token})
    assert accepted.status == 202


def test_read_only_key_sees_no_destructive_buttons_and_is_refused(
    dashboard: Dashboard, new_page: Callable[..., Page]
) -> None:
    run_id = dashboard.send("shop/order.placed", {"order": "ro-1"})[0]
    dashboard.wait(run_id, "waiting")
    page = new_page("reader")
    open_app(page, dashboard.base_url, "/runs")
    expect(page.locator("#whoami")).to_contain_text("read-only")
    expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_be_visible()
    expect(page.get_by_role("group", name="Bulk actions")).to_have_count(0)
    expect(page.get_by_role("checkbox")).to_have_count(0)
    open_app(page, dashboard.base_url, f"/run/{run_id}")
    expect(page.locator("#run-header")).to_contain_text("Read-only key")
    expect(page.get_by_role("button", name="Cancel run…")).to_have_count(0)
    request = page.context.request
    refused = request.post(
        f"{dashboard.base_url}/v1/runs/{run_id}/cancel",
        headers={"X-CSRF-Token": csrf_of(request, dashboard.base_url)},
    )
    assert refused.status == 403 and "read-only" in refused.json()["error"]["message"]


def test_logout_and_revocation_end_sessions(
    dashboard: Dashboard, new_page: Callable[..., Page], browser: Any
) -> None:
    admin = new_page("admin")
    open_app(admin, dashboard.base_url, "/runs")
    old_cookie = admin.context.cookies()[0]["value"]
    admin.get_by_role("button", name="Log out").click()
    admin.wait_for_url("**/dashboard/login")
    assert admin.context.cookies() == []
    stale = httpx.get(f"{dashboard.base_url}/v1/runs", cookies={"ip_session": old_cookie})
    assert stale.status_code == 401

    state = login(browser, dashboard.base_url, dashboard.keys["doomed"])
    cookie = state["cookies"][0]["value"]
    assert (
        httpx.get(f"{dashboard.base_url}/v1/runs", cookies={"ip_session": cookie}).status_code
        == 200
    )
    in_thread(lambda: revoke(dashboard.db_path, dashboard.key_ids["doomed"]))
    gone = httpx.get(f"{dashboard.base_url}/v1/runs", cookies={"ip_session": cookie})
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]
