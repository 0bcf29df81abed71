"""Attacks that already failed safely when the server was first tried as a tenant would, kept
here so they stay blocked: reading another workspace, guessing keys, path traversal, open
redirects and stored XSS on the login form, CSRF and cookie flags of dashboard sessions, and
SSRF literals at save time."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.security.conftest import SecureServer, graph
from tests.server.conftest import assert_error, wait_status


def test_a_tenant_cannot_read_or_cancel_another_workspaces_run(secure: SecureServer) -> None:
    with secure.client("a") as a, secure.client("b") as b:
        run_id = a.post("/v1/functions/echo/invoke", json={"data": {"x": 1}}).json()["run_id"]
        wait_status(a, run_id, {"completed"})
        assert_error(b.get(f"/v1/runs/{run_id}"), 404, "run_not_found")
        assert_error(b.get(f"/v1/runs/{run_id}/steps"), 404, "run_not_found")
        assert b.post(f"/v1/runs/{run_id}/cancel").status_code == 404
        assert run_id not in b.get("/v1/runs").text


@pytest.mark.parametrize(
    "key",
    ["ip_tenanta_" + "0" * 40, "ip_tenanta_" + "f" * 39, "not-a-key", "ip__" + "0" * 40],
)
def test_guessed_keys_are_refused_alike(secure: SecureServer, key: str) -> None:
    answer = httpx.get(f"{secure.base_url}/v1/runs", headers={"Authorization": f"Bearer {key}"})
    assert_error(answer, 401, "unauthorized")


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/../../../../pyproject.toml",
        "/dashboard/static/%2e%2e/%2e%2e/keys.py",
        "/dashboard/static/..%2f..%2fapi.py",
    ],
)
def test_static_files_do_not_traverse(secure: SecureServer, path: str) -> None:
    answer = httpx.get(f"{secure.base_url}{path}")
    assert answer.status_code in (401, 404)  # a normalized `..` leaves the public static path
    assert "[project]" not in answer.text and "def " not in answer.text


@pytest.mark.parametrize(
    "target", ["//attacker.example/x", "https://attacker.example", "/\\attacker.example"]
)
def test_the_login_form_does_not_redirect_off_site(secure: SecureServer, target: str) -> None:
    answer = httpx.post(
        f"{secure.base_url}/dashboard/login",
        data={"api_key": secure.keys["a"], "next": target},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_the_login_form_escapes_what_it_echoes(secure: SecureServer) -> None:
    payload = '"><script>alert(1)</script>'
    page = httpx.get(f"{secure.base_url}/dashboard/login", params={"next": "/" + payload})
    assert "<script>alert(1)</script>" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_session_cookie_is_strict_and_writes_need_the_csrf_token(
    secure: SecureServer,
) -> None:
    with httpx.Client(base_url=secure.base_url, follow_redirects=False) as browser:
        login = browser.post("/dashboard/login", data={"api_key": secure.keys["a"]})
        cookie = login.headers["set-cookie"]
        assert re.search(r"(?i)httponly", cookie) and re.search(r"(?i)samesite=strict", cookie)
        assert secure.keys["a"] not in cookie
        forged = browser.post("/v1/functions/echo/invoke", json={"data": {}})
        assert_error(forged, 403, "forbidden")
        token = browser.get("/v1/dashboard/session").json()["csrf_token"]
        sent = browser.post(
            "/v1/functions/echo/invoke", json={"data": {}}, headers={"X-CSRF-Token": token}
        )
        assert sent.status_code == 202, sent.text


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:5432/",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
    ],
)
def test_ssrf_literals_are_refused_at_save(secure: SecureServer, url: str) -> None:
    with secure.client("a") as a:
        answer = a.post("/v1/workflows", json=graph([{"id": "ssrf", "type": "http", "url": url}]))
    error = assert_error(answer, 422, "graph_invalid")
    assert any("'ssrf'" in d["message"] for d in error["details"]), error


def test_a_name_resolving_to_a_private_address_is_refused_when_the_node_runs(
    secure: SecureServer,
) -> None:
    node = {"id": "rebind", "type": "http", "url": "http://billing.internal/"}
    with secure.client("a") as a:
        assert a.post("/v1/workflows", json=graph([node])).status_code in (200, 201)
        started = a.post("/v1/workflows/attack/runs", json={"input": {}}).json()
        run = wait_status(a, started["run_id"], {"failed"}, timeout_s=30)
    assert "10.0.0.7" in run["error"]["message"] and "private" in run["error"]["message"]
