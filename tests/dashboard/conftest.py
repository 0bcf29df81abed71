"""A real API server with the dashboard (uvicorn in a thread, real workers, keys required) and
Debian's Chromium driven by Playwright, for the dashboard tests.

The browser is logged in once through the login form (an admin key and a read-only key); each
test gets a fresh context carrying that session cookie. Runs are made through the API, and the
`ticker` function's steps wait on semaphores the test releases, so a test decides when a running
run makes progress (no sleeps).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from rich.console import Console

import inferpipe as ip
from inferpipe.core.json import KB
from inferpipe.llm import step as llm_step
from inferpipe.server import keys_cli
from inferpipe.server.deps import ApiSettings
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.workflows import spec
from inferpipe.workflows.runtime import WorkflowRuntime
from tests.dashboard.proxy import DroppableProxy
from tests.server.conftest import start_server, wait_status

T = TypeVar("T")

CHROMIUM = os.environ.get("INFERPIPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PREVIEW_BYTES = 2 * KB
UI_TIMEOUT_MS = 10_000
expect.set_options(timeout=UI_TIMEOUT_MS)  # the machine is shared: be patient, never sleep
WORKSPACE = "dash"

#: Semaphores the `ticker` function's steps acquire: a test releases one per step to let run.
GATES: dict[str, threading.Semaphore] = {}
GATE_TIMEOUT_S = 30.0


def pass_gate(gate: str, tick: int) -> dict[str, int]:
    if not GATES[gate].acquire(timeout=GATE_TIMEOUT_S):
        raise RuntimeError(f"gate {gate} was never opened")
    return {"tick": tick}


TRIGGERED_GRAPH = "triage"
"""A workflow graph id whose runs also start on the event `ticket/created`."""

MANY_STEPS = 80
"""Steps of the `many-steps` run: over the dashboard's threshold for its compact list."""


def build_app(database: str) -> ip.App:
    app = ip.App("dashboard-tests", database=database)
    quick = ip.Backoff(base_s=0.01, max_s=0.02, jitter=0.0)

    @app.function(id="checkout", trigger=ip.on_event("shop/checkout"), retries=1, backoff=quick)
    async def checkout(ctx: ip.Context) -> str:
        cart = await ctx.step.run("load-cart", lambda: {"items": 2, "total": 30})

        def charge(order: dict[str, Any]) -> str:
            raise ValueError(f"card declined for order {order['order_id']}")

        return str(await ctx.step.run("charge-card", charge, {"order_id": "ord-42", **cart}))

    @app.function(id="ticker", retries=0)
    async def ticker(ctx: ip.Context) -> dict[str, int]:
        ticks = int(ctx.event.data["ticks"])
        for tick in range(ticks):
            await ctx.step.run(f"tick-{tick}", pass_gate, ctx.event.data["gate"], tick)
        return {"ticks": ticks}

    @app.function(id="retold", retries=1, backoff=quick)
    async def retold(ctx: ip.Context) -> str:
        async def tell() -> str:
            first = ctx.attempt == 0
            for n in range(2 if first else 3):
                await ctx.stream.publish(f"{'draft' if first else 'tok'}{n}", kind="token")
            if first:  # the first attempt streams, then fails when the test says so
                await asyncio.to_thread(pass_gate, ctx.event.data["gate"], 0)
                raise RuntimeError("the model connection dropped")
            return "told"

        return str(await ctx.step.run("tell", tell))

    @app.function(id="approval", trigger=ip.on_event("shop/order.placed"), retries=0)
    async def approval(ctx: ip.Context) -> object:
        await ctx.step.run("notify", lambda: "asked a human")
        decision = await ctx.step.wait_for_event(
            "wait-for-approval",
            event="shop/order.approved",
            timeout="2d",
            if_exp="async.data.order == event.data.order && async.data.approved == true",
        )
        return decision.data if decision else None

    @app.function(id="chat", trigger=ip.on_event("chat/asked"), retries=0)
    async def chat(ctx: ip.Context) -> str | None:
        reply = await llm_step.chat(
            ctx,
            "answer",
            model="fake/echo",
            messages=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": ctx.event.data["question"]},
            ],
        )
        await ctx.step.score("helpful", 0.9, reason="echoed the question")
        return reply.content

    @app.function(id="prompt-ab", trigger=ip.on_event("chat/rated"), retries=0)
    async def prompt_ab(ctx: ip.Context) -> str:
        style = await ctx.step.experiment(
            "prompt-style",
            variants={"short": "short", "long": "long"},
            select=ip.fixed(ctx.event.data["variant"]),
        )
        await ctx.step.score("rating", float(ctx.event.data["rating"]))
        return str(style)

    @app.function(id="big", retries=0)
    async def big(ctx: ip.Context) -> str:
        return str(await ctx.step.run("make", lambda: "x" * (8 * KB) + "THE-END"))

    @app.function(id="offloaded", retries=0)
    async def offloaded(ctx: ip.Context) -> int:
        text = await ctx.step.run("scan", lambda: "x" * (300 * KB) + "THE-END")
        return len(text)

    @app.function(id="offloaded-input", retries=0)
    async def offloaded_input(ctx: ip.Context) -> int:
        return int(await ctx.step.run("measure", len, ctx.event.data["body"]))

    @app.function(id="many-steps", retries=0)
    async def many_steps(ctx: ip.Context) -> int:
        ctx.logger.info("starting a long run", items=MANY_STEPS)  # outside any step
        for item in range(MANY_STEPS):
            await ctx.step.run(f"item-{item}", lambda item=item: item)
        return MANY_STEPS

    # Saved workflow graphs (/v1/workflows); `triage` also runs on its own trigger event.
    workflows = WorkflowRuntime(app, retries=0)
    workflows.add_trigger(TRIGGERED_GRAPH, spec.GraphTrigger(event="ticket/created"))
    return app


@dataclass
class Dashboard:
    """The live server: its URL, keys, and helpers to make runs through the API."""

    base_url: str
    keys: dict[str, str]
    key_ids: dict[str, str]
    db_path: Path
    http: httpx.Client
    port: int
    gates_made: list[str] = field(default_factory=list)

    def client(self, key: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.keys[key]}"},
            timeout=10.0,
        )

    def invoke(self, function: str, data: dict[str, Any] | None = None) -> str:
        response = self.http.post(f"/v1/functions/{function}/invoke", json={"data": data or {}})
        assert response.status_code == 202, response.text
        return str(response.json()["run_id"])

    def send(self, name: str, data: dict[str, Any]) -> list[str]:
        response = self.http.post("/v1/events", json={"name": name, "data": data})
        assert response.status_code == 202, response.text
        return list(response.json()["runs_created"])

    def wait(self, run_id: str, *statuses: str) -> dict[str, Any]:
        return wait_status(self.http, run_id, set(statuses), timeout_s=15.0)

    def wait_steps(self, run_id: str, count: int) -> list[dict[str, Any]]:
        """Poll until the run has at least `count` steps recorded (assert_eventually)."""
        deadline = time.monotonic() + 15.0
        while True:
            steps = self.http.get(f"/v1/runs/{run_id}/steps").json()["items"]
            if len(steps) >= count:
                return list(steps)
            assert time.monotonic() < deadline, f"run {run_id} has {len(steps)} steps"
            time.sleep(0.02)

    def gated(self, function: str) -> tuple[str, threading.Semaphore]:
        """A run of `function` whose steps wait on a gate the test opens."""
        gate = f"gate-{len(GATES)}"
        GATES[gate] = threading.Semaphore(0)
        self.gates_made.append(gate)
        return self.invoke(function, {"gate": gate}), GATES[gate]

    def ticker(self, ticks: int) -> tuple[str, threading.Semaphore]:
        """A `ticker` run that waits for the test before each of its `ticks` steps."""
        gate = f"gate-{len(GATES)}"
        GATES[gate] = threading.Semaphore(0)
        self.gates_made.append(gate)
        return self.invoke("ticker", {"ticks": ticks, "gate": gate}), GATES[gate]


KEY_SPECS = {
    "admin": (WORKSPACE, "admin"),
    "reader": (WORKSPACE, "read"),
    "doomed": (WORKSPACE, "admin"),
    "other": ("elsewhere", "admin"),
}


async def _create_keys(db_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Keys made the way the CLI makes them: label -> secret, and label -> key id."""
    store = SQLiteStore(db_path)
    await store.open()
    quiet = Console(file=io.StringIO())
    try:
        secrets = {
            label: await keys_cli.create_key(
                store,
                workspace=workspace,
                name=label,
                role=role,
                rate_limit_per_min=None,
                console=quiet,
            )
            for label, (workspace, role) in KEY_SPECS.items()
        }
        listed = await keys_cli.list_keys(store, console=quiet)
        return secrets, {k.name: k.id for k in listed}
    finally:
        await store.close()


def in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a thread of its own: Playwright's sync API keeps an
    event loop running on the test thread, where `asyncio.run` is refused."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def revoke(db_path: Path, key_id: str) -> None:
    store = SQLiteStore(db_path)  # another connection, as the CLI would have
    await store.open()
    try:
        await keys_cli.revoke_key(store, key_id, console=Console(file=io.StringIO()))
    finally:
        await store.close()


@pytest.fixture(scope="package")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    db_path = tmp_path_factory.mktemp("dashboard") / "dash.db"
    keys, key_ids = in_thread(lambda: _create_keys(db_path))
    settings = ApiSettings(preview_bytes=PREVIEW_BYTES)
    server, stop = start_server(
        build_app(f"sqlite:///{db_path}"), require_keys=True, settings=settings
    )
    base_url = f"http://127.0.0.1:{server.port}"
    http = httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=10.0
    )
    found = Dashboard(base_url, keys, key_ids, db_path, http, server.port)
    try:
        yield found
    finally:
        for gate in found.gates_made:  # let blocked steps finish so workers drain
            GATES[gate].release(1000)
        http.close()
        stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run scripts/test (or `apt-get install -y "
            "chromium`), or set $INFERPIPE_CHROMIUM"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def login(browser: Browser, base_url: str, key: str) -> dict[str, Any]:
    """Log in through the form; returns the context's storage state (the session cookie)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base_url}/dashboard/login")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{base_url}/")
        state: dict[str, Any] = context.storage_state()  # type: ignore[assignment]
        return state
    finally:
        context.close()


@pytest.fixture(scope="package")
def sessions(browser: Browser, dashboard: Dashboard) -> dict[str, dict[str, Any]]:
    return {
        label: login(browser, dashboard.base_url, dashboard.keys[label])
        for label in ("admin", "reader")
    }


@pytest.fixture
def new_page(
    browser: Browser, dashboard: Dashboard, sessions: dict[str, dict[str, Any]]
) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh context logged in as `as_` ("admin", "reader" or None); with
    `own_session`, through a login of its own (the login tests log the shared sessions out)."""
    contexts: list[BrowserContext] = []

    def make(
        as_: str | None = "admin", *, bypass_csp: bool = False, own_session: bool = False
    ) -> Page:
        if as_ and own_session:
            state = login(browser, dashboard.base_url, dashboard.keys[as_])
        else:
            state = sessions[as_] if as_ else None
        context = browser.new_context(
            storage_state=state,  # type: ignore[arg-type]
            viewport={"width": 1400, "height": 1000},
            bypass_csp=bypass_csp,  # only to inject the accessibility checker
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def proxy(dashboard: Dashboard) -> Iterator[DroppableProxy]:
    cut = DroppableProxy(dashboard.port)
    try:
        yield cut
    finally:
        cut.close()


def open_app(page: Page, base_url: str, fragment: str) -> None:
    """Load the dashboard at `#<fragment>` and wait until it has rendered."""
    page.goto(f"{base_url}/#{fragment}")
    page.wait_for_selector("body[data-ready=true]")


AXE_VERSION = "4.14.1"


def axe_source(cache_dir: Path) -> str:
    """axe-core's script: from $AXE_CORE_PATH, a node_modules beside the repo, or installed
    with npm into `cache_dir` (the npm registry is the only download)."""
    candidates = [
        Path(os.environ.get("AXE_CORE_PATH", "/nonexistent")),
        Path(__file__).resolve().parents[2] / "node_modules/axe-core/axe.min.js",
        cache_dir / "node_modules/axe-core/axe.min.js",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("axe-core is needed for the accessibility scan: run scripts/test (npm)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            npm,
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(cache_dir),
            f"axe-core@{AXE_VERSION}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return (cache_dir / "node_modules/axe-core/axe.min.js").read_text(encoding="utf-8")


LONG_NOTE = "escalate when the customer mentions a refund, " * 8
"""A long literal in version 2 of the triage graph: its diff must wrap inside the page."""


def triage_versions() -> list[dict[str, Any]]:
    """Three versions of the `triage` graph: v2 changes a node's expression (to a long one) and
    adds a node; v3 renames the graph."""
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    v1 = {
        "id": TRIGGERED_GRAPH,
        "name": "Ticket triage",
        "input_schema": schema,
        "nodes": [{"id": "clean", "type": "transform", "expression": "input.q"}],
        "edges": [],
        "output": {"result": "nodes.clean.output"},
    }
    long_expression = f'input.q + " / {LONG_NOTE.strip()}"'
    v2 = {
        **v1,
        "nodes": [
            {"id": "clean", "type": "transform", "expression": long_expression},
            {"id": "measure", "type": "transform", "expression": "size(nodes.clean.output)"},
        ],
        "output": {"result": "nodes.measure.output"},
    }
    return [v1, v2, {**v2, "name": "Ticket triage, renamed"}]


@dataclass(frozen=True)
class Triage:
    """The saved `triage` graph and its runs: run id -> the version it ran."""

    runs: dict[str, int]
    triggered: str


@pytest.fixture(scope="package")
def triage(dashboard: Dashboard) -> Triage:
    """`triage` saved in three versions, run twice on v1 and once on v2 by id, and once (on
    the current v3) by its trigger event."""
    for document in triage_versions():
        response = dashboard.http.post("/v1/workflows", json=document)
        assert response.status_code == 201, response.text
    runs = {}
    for version in (1, 1, 2):
        body = {"input": {"q": f"ticket for v{version}"}, "version": version}
        response = dashboard.http.post(f"/v1/workflows/{TRIGGERED_GRAPH}/runs", json=body)
        assert response.status_code == 202, response.text
        runs[response.json()["run_id"]] = version
    triggered = dashboard.send("ticket/created", {"q": "sent as an event"})[0]
    runs[triggered] = 3
    for run_id in runs:
        dashboard.wait(run_id, "completed")
    return Triage(runs, triggered)
