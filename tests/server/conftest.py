"""A real API server on loopback (uvicorn in a thread, with real workers) for the server tests.

One server per session: a temporary SQLite file, keys created beforehand the way the CLI does
(another connection to the same file), and `ApiServer` bound to port 0.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

import inferpipe as ip
from inferpipe.core.json import KB
from inferpipe.server import keys_cli
from inferpipe.server.deps import ApiSettings
from inferpipe.server.runner import ApiServer
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.workflows.runtime import WorkflowRuntime

STARTUP_TIMEOUT_S = 15.0
MAX_BODY_BYTES = 256 * KB
PREVIEW_BYTES = 2 * KB

#: Toggled by tests: while True, the step "explode" of function "fragile" fails.
FRAGILE = {"fail": True}


def build_app(database: str) -> ip.App:
    app = ip.App("server-tests", database=database)

    @app.function(id="greet", trigger=ip.on_event("test/greet"), retries=0)
    async def greet(ctx: ip.Context) -> dict[str, object]:
        name = ctx.event.data.get("name", "world")
        text = await ctx.step.run("compose", lambda n: f"hello {n}", name)
        ctx.logger.info("composed", length=len(text))
        return {"text": text}

    @app.function(id="await-reply", trigger=ip.on_event("test/ask"), retries=0)
    async def await_reply(ctx: ip.Context) -> object:
        await ctx.step.run("ask", lambda: "asked")
        reply = await ctx.step.wait_for_event("reply", event="test/reply", timeout="1d")
        return reply.data if reply else None

    @app.function(id="fragile", retries=0)
    async def fragile(ctx: ip.Context) -> str:
        await ctx.step.run("prepare", lambda: "ready")

        def explode() -> str:
            if FRAGILE["fail"]:
                raise ip.NonRetriableError("boom")
            return "fine"

        return str(await ctx.step.run("explode", explode))

    @app.function(id="secrets", trigger=ip.on_event("test/secrets"), retries=0)
    async def secrets(ctx: ip.Context) -> dict[str, object]:
        config = {"api_key": "sk-live-input", "headers": {"Authorization": "Bearer in"}, "n": 1}
        result = await ctx.step.run("call", lambda c: {"password": "out-pw", "ok": c["n"]}, config)
        ctx.logger.info("called", token="log-token", nested={"Client_Secret": "cs"}, ok=True)
        return {"result": result, "access_token": "run-output-token"}

    @app.function(id="scored", trigger=ip.on_event("test/scored"), retries=0)
    async def scored(ctx: ip.Context) -> str:
        await ctx.step.score("politeness", 0.75, reason="said please")
        return "ok"

    @app.function(id="big", retries=0)
    async def big(ctx: ip.Context) -> str:
        return str(await ctx.step.run("make", lambda: "x" * (8 * KB)))

    # Workflow graphs over the API (/v1/workflows), with one task their nodes may call.
    workflows = WorkflowRuntime(app, retries=0)

    @workflows.task("double")
    def double(n: int) -> int:
        return n * 2

    return app


@dataclass
class LiveServer:
    base_url: str
    keys: dict[str, str]  #: label -> secret
    key_ids: dict[str, str]  #: label -> key id
    db_path: Path

    def client(self, key: str | None = "a") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10.0)

    def wait_status(
        self, http: httpx.Client, run_id: str, statuses: set[str], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        return wait_status(http, run_id, statuses, timeout_s)


def wait_status(
    http: httpx.Client, run_id: str, statuses: set[str], timeout_s: float = 10.0
) -> dict[str, Any]:
    """Poll a run until its status is one of `statuses` (assert_eventually)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = http.get(f"/v1/runs/{run_id}").json()
        if run.get("status") in statuses:
            return dict(run)
        assert time.monotonic() < deadline, f"run {run_id} stayed {run.get('status')}"
        time.sleep(0.02)


KEYS: dict[str, dict[str, object]] = {
    "a": {"workspace": "ws-a", "role": "admin", "rate_limit_per_min": None},
    "a_read": {"workspace": "ws-a", "role": "read", "rate_limit_per_min": None},
    "b": {"workspace": "ws-b", "role": "admin", "rate_limit_per_min": None},
    "limited": {"workspace": "ws-limited", "role": "admin", "rate_limit_per_min": 3},
    "fuzz": {"workspace": "ws-fuzz", "role": "admin", "rate_limit_per_min": None},
    "doomed": {"workspace": "ws-a", "role": "admin", "rate_limit_per_min": None},
}


async def _create_keys(db_path: Path) -> dict[str, tuple[str, str]]:
    store = SQLiteStore(db_path)
    await store.open()
    quiet = Console(file=io.StringIO())
    try:
        made = {}
        for label, spec in KEYS.items():
            secret = await keys_cli.create_key(
                store,
                workspace=str(spec["workspace"]),
                name=label,
                role=str(spec["role"]),
                rate_limit_per_min=spec["rate_limit_per_min"],  # type: ignore[arg-type]
                console=quiet,
            )
            listed = await keys_cli.list_keys(store, console=quiet)
            made[label] = (secret, next(k.id for k in listed if k.name == label))
        return made
    finally:
        await store.close()


def start_server(app: ip.App, **options: object) -> tuple[ApiServer, Callable[[], None]]:
    """Start `ApiServer(app, port=0, ...)` in a thread; returns it and its stopper."""
    server = ApiServer(app, port=0, log_level="warning", **options)  # type: ignore[arg-type]
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.run())
        except BaseException as exc:  # reported to the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:  # startup polling, not test synchronization
        if failure or not thread.is_alive():
            raise RuntimeError(f"the API server did not start: {failure}")
        assert time.monotonic() < deadline, "the API server did not start in time"
        time.sleep(0.01)

    def stop() -> None:
        server.stop()
        thread.join(timeout=STARTUP_TIMEOUT_S)

    return server, stop


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db_path = tmp_path_factory.mktemp("api") / "api.db"
    made = asyncio.run(_create_keys(db_path))
    settings = ApiSettings(max_body_bytes=MAX_BODY_BYTES, preview_bytes=PREVIEW_BYTES)
    server, stop = start_server(
        build_app(f"sqlite:///{db_path}"), require_keys=True, settings=settings
    )
    try:
        yield LiveServer(
            base_url=f"http://127.0.0.1:{server.port}",
            keys={label: secret for label, (secret, _) in made.items()},
            key_ids={label: key_id for label, (_, key_id) in made.items()},
            db_path=db_path,
        )
    finally:
        stop()


@pytest.fixture
def http_a(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("a") as http:
        yield http


@pytest.fixture
def http_b(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("b") as http:
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an error in our shape with this status and code; returns `error`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    for detail in error["details"]:
        assert set(detail) == {"field", "message"}
    return dict(error)
