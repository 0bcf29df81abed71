"""The keyless server of `inferpipe dev` answers loopback host names only (no DNS rebinding),
and refuses writes from other sites (a page elsewhere posting with `mode: "no-cors"`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import inferpipe as ip
from inferpipe.server.deps import ApiSettings
from tests.server.conftest import assert_error, start_server


@pytest.fixture(scope="module")
def dev_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = Path(tmp_path_factory.mktemp("dev")) / "dev.db"
    app = ip.App("dev-security", database=f"sqlite:///{database}")

    @app.function(id="noop", trigger=ip.on_event("dev/noop"), retries=0)
    async def noop(ctx: ip.Context) -> str:
        return "ok"

    settings = ApiSettings(allowed_hosts=("devbox",))
    server, stop = start_server(app, require_keys=False, settings=settings)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        stop()


EVENT = {"name": "dev/noop", "data": {}}


@pytest.mark.parametrize("host", ["attacker.example", "127.0.0.1.nip.io", "evil.localhost.com"])
def test_a_foreign_host_header_is_refused(dev_url: str, host: str) -> None:
    answer = httpx.get(f"{dev_url}/v1/runs", headers={"Host": host})
    error = assert_error(answer, 403, "forbidden")
    assert "loopback" in error["message"]


@pytest.mark.parametrize(
    "host", ["localhost:8288", "127.0.0.1", "[::1]:8288", "app.localhost", "devbox"]
)
def test_loopback_names_and_configured_hosts_are_served(dev_url: str, host: str) -> None:
    assert httpx.get(f"{dev_url}/v1/runs", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_site_writes_are_refused(dev_url: str, headers: dict[str, str]) -> None:
    answer = httpx.post(f"{dev_url}/v1/events", json=EVENT, headers=headers)
    error = assert_error(answer, 403, "forbidden")
    assert "cross-site" in error["message"]


def test_same_origin_and_non_browser_writes_are_accepted(dev_url: str) -> None:
    same = httpx.post(f"{dev_url}/v1/events", json=EVENT, headers={"Origin": dev_url})
    plain = httpx.post(f"{dev_url}/v1/events", json=EVENT)
    assert same.status_code == 202, same.text
    assert plain.status_code == 202, plain.text
