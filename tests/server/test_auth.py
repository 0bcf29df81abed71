"""API keys: missing, wrong, revoked, read-only, rate-limited; and the keyless loopback mode."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from inferpipe.core.errors import ConfigurationError
from inferpipe.server import keys_cli
from inferpipe.server.runner import check_binding, is_loopback
from inferpipe.store.sqlite import SQLiteStore
from tests.server.conftest import LiveServer, assert_error, build_app, start_server


def test_missing_and_malformed_keys_are_refused(live: LiveServer) -> None:
    with live.client(None) as anonymous:
        error = assert_error(anonymous.get("/v1/runs"), 401, "unauthorized")
        assert "missing API key" in str(error["message"])
        assert_error(anonymous.get("/v1/nope"), 401, "unauthorized")  # before routing
        basic = anonymous.get("/v1/runs", headers={"Authorization": "Basic abc"})
        assert "Bearer" in str(assert_error(basic, 401, "unauthorized")["message"])
        junk = anonymous.get("/v1/runs", headers={"Authorization": "Bearer not-a-key"})
        assert "malformed API key" in str(assert_error(junk, 401, "unauthorized")["message"])


def test_wrong_key_is_refused(live: LiveServer) -> None:
    real = live.keys["a"]
    wrong = real[:-6] + ("000000" if not real.endswith("000000") else "111111")
    with httpx.Client(base_url=live.base_url) as http:
        response = http.get("/v1/runs", headers={"Authorization": f"Bearer {wrong}"})
        assert "no such key" in str(assert_error(response, 401, "unauthorized")["message"])
        # the X-API-Key header works as well as Authorization
        assert http.get("/v1/runs", headers={"X-API-Key": real}).status_code == 200


def test_revoked_key_is_refused(live: LiveServer) -> None:
    with live.client("doomed") as http:
        assert http.get("/v1/runs").status_code == 200

        async def revoke() -> None:
            store = SQLiteStore(live.db_path)  # another connection, as the CLI would have
            await store.open()
            try:
                await keys_cli.revoke_key(
                    store, live.key_ids["doomed"], console=Console(file=io.StringIO())
                )
            finally:
                await store.close()

        asyncio.run(revoke())
        error = assert_error(http.get("/v1/runs"), 401, "unauthorized")
        assert "revoked" in str(error["message"])


def test_read_only_key_cannot_mutate(live: LiveServer) -> None:
    with live.client("a_read") as http:
        assert http.get("/v1/runs").status_code == 200
        assert http.get("/v1/functions").status_code == 200
        for path, body in (
            ("/v1/events", {"name": "test/greet"}),
            ("/v1/functions/greet/invoke", {}),
            ("/v1/runs/whatever/cancel", {}),
            ("/v1/runs/whatever/rerun", {}),
        ):
            error = assert_error(http.post(path, json=body), 403, "forbidden")
            assert "read-only" in str(error["message"])


def test_rate_limit_answers_429_with_retry_after(live: LiveServer) -> None:
    with live.client("limited") as http:
        statuses = [http.get("/v1/functions").status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = http.get("/v1/functions")
        error = assert_error(limited, 429, "rate_limited")
        assert "3 requests per minute" in str(error["message"])
        assert int(limited.headers["Retry-After"]) >= 1


def test_open_paths_need_no_key(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}
        assert http.get("/openapi.json").json()["info"]["title"] == "inferpipe"
        assert "inferpipe_events_accepted_total" in http.get("/metrics").text


def test_keyless_mode_only_on_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    with pytest.raises(ConfigurationError, match="without API keys"):
        check_binding("0.0.0.0", require_keys=False)
    check_binding("0.0.0.0", require_keys=True)


def test_keyless_dev_server_acts_in_the_app_workspace(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/dev.db")
    server, stop = start_server(app, require_keys=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
            sent = http.post("/v1/events", json={"name": "test/greet"})
            assert sent.status_code == 202, sent.text
            run = http.get(f"/v1/runs/{sent.json()['runs_created'][0]}").json()
            assert run["function_id"] == "greet"
            # a key that is presented is still checked
            bad = http.get("/v1/runs", headers={"Authorization": "Bearer ip_x_" + "0" * 40})
            assert_error(bad, 401, "unauthorized")
    finally:
        stop()
