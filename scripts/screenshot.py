"""Save a screenshot of the dashboard's run page (docs/run-page.png, shown in the README).

Starts the API server with a small demo app on a free loopback port (keyless dev mode, a
throwaway SQLite file), makes a few runs through the API, and photographs one of them with
Debian's Chromium through Playwright (no browser download):

    .venv/bin/python scripts/screenshot.py [--out docs/run-page.png] [--runs-list PATH]

Needs `apt-get install -y chromium` and `pip install playwright` (never `playwright install`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

import inferpipe as ip
from inferpipe.llm import step as llm_step
from inferpipe.server.runner import ApiServer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 1000}
FLAKY_CALLS: dict[str, int] = {}


def demo_app(database: str) -> ip.App:
    """A support-ticket pipeline: parallel lookups, a retried call, model calls, a score."""
    app = ip.App("demo", database=database)
    quick = ip.Backoff(base_s=0.05, max_s=0.1, jitter=0.0)

    def lookup_customer(customer: str) -> dict[str, Any]:
        time.sleep(0.12)
        return {"id": customer, "plan": "pro", "since": "2023-04-01"}

    def lookup_history(customer: str) -> list[str]:
        time.sleep(0.2)
        return ["tk_0998: billing question (solved)", "tk_1003: login issue (solved)"]

    def sync_crm(ticket: str) -> str:
        FLAKY_CALLS[ticket] = FLAKY_CALLS.get(ticket, 0) + 1
        time.sleep(0.05)
        if FLAKY_CALLS[ticket] == 1:  # the first attempt fails: the page shows the retry
            raise ConnectionError("CRM answered 503 Service Unavailable")
        return f"crm-{ticket}"

    @app.function(id="handle-ticket", trigger=ip.on_event("support/ticket.created"), backoff=quick)
    async def handle_ticket(ctx: ip.Context) -> dict[str, Any]:
        data = ctx.event.data
        customer, history = await asyncio.gather(
            ctx.step.run("fetch-customer", lookup_customer, data["customer"]),
            ctx.step.run("fetch-history", lookup_history, data["customer"]),
        )
        triage = await llm_step.chat(
            ctx,
            "classify",
            model="fake/summarize",
            messages=[
                {"role": "system", "content": "Classify the ticket: billing, bug or question."},
                {"role": "user", "content": data["content"]},
            ],
        )
        reply = await llm_step.chat(
            ctx,
            "draft-reply",
            model="fake/echo",
            messages=[
                {"role": "system", "content": f"You help {customer['plan']} customers kindly."},
                {"role": "user", "content": f"History: {history}. Ticket: {data['content']}"},
            ],
        )
        await ctx.step.run("sync-crm", sync_crm, data["ticket_id"])
        await ctx.step.score("reply-length-ok", 1.0 if len(reply.content or "") < 400 else 0.0)
        await ctx.step.send_event(
            "notify", ip.Event("support/reply.ready", {"ticket": data["ticket_id"]})
        )
        return {"category": triage.content, "reply": reply.content}

    @app.function(id="await-feedback", trigger=ip.on_event("support/reply.ready"), retries=0)
    async def await_feedback(ctx: ip.Context) -> object:
        feedback = await ctx.step.wait_for_event(
            "wait-for-feedback",
            event="support/feedback.received",
            timeout="7d",
            if_exp="async.data.ticket == event.data.ticket",
        )
        return feedback.data if feedback else None

    return app


@contextlib.contextmanager
def running_server(app: ip.App) -> Iterator[str]:
    server = ApiServer(app, port=0, require_keys=False, log_level="warning")
    thread = threading.Thread(target=lambda: asyncio.run(server.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the demo server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        thread.join(timeout=20)


def make_runs(base_url: str) -> str:
    """Send a few tickets; returns the id of the run to photograph once it has finished."""
    with httpx.Client(base_url=base_url, timeout=10) as http:
        sent = http.post(
            "/v1/events",
            json=[
                {
                    "name": "support/ticket.created",
                    "data": {
                        "ticket_id": f"tk_{1040 + i}",
                        "customer": f"cus_{i}",
                        "content": text,
                    },
                }
                for i, text in enumerate(
                    [
                        "I was charged twice for my March invoice. Can you refund one?",
                        "The export button does nothing on Firefox.",
                    ]
                )
            ],
        ).json()
        run_id = str(sent["runs_created"][0])
        deadline = time.monotonic() + 30
        while http.get(f"/v1/runs/{run_id}").json()["status"] != "completed":
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo run {run_id} did not complete")
            time.sleep(0.05)
        return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "run-page.png")
    parser.add_argument("--runs-list", type=Path, default=None, help="also save the runs list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = demo_app(f"sqlite:///{Path(tmp) / 'demo.db'}")
        with running_server(app) as base_url:
            run_id = make_runs(base_url)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                if args.runs_list:
                    page.goto(f"{base_url}/#/runs")
                    page.wait_for_selector("#runs-table")
                    page.screenshot(path=str(args.runs_list), full_page=True)
                page.goto(f"{base_url}/#/run/{run_id}?step=draft-reply&tab=model")
                page.wait_for_selector('#live-state[data-state="finished"]')
                page.wait_for_selector("#inspector .chat")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
