"""W3C trace context from an HTTP request reaches the runs it starts: `POST /v1/events` and
`POST /v1/functions/{id}/invoke` through a real API server, exported to a real receiver."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

import inferpipe as ip
from inferpipe.core.trace_context import run_span
from tests.server.conftest import start_server, wait_status
from tests.telemetry.otlp_receiver import Receiver

WEB_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
WEB_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{WEB_TRACE}-{WEB_SPAN}-01"


def web_app(db: Path) -> ip.App:
    app = ip.App("web-traced", database=f"sqlite:///{db}")

    @app.function(id="on-signup", trigger=ip.on_event("web/signed.up"), retries=0)
    async def on_signup(ctx: ip.Context) -> str:
        await ctx.step.run("welcome", lambda: "sent")
        await ctx.step.send_event("announce", ip.Event("web/announced", {}))
        return "ok"

    @app.function(id="announced", trigger=ip.on_event("web/announced"), retries=0)
    async def announced(ctx: ip.Context) -> None:
        await ctx.step.run("log", lambda: None)

    @app.function(id="direct", retries=0)
    async def direct(ctx: ip.Context) -> None:
        await ctx.step.run("work", lambda: None)

    return app


def test_a_request_trace_continues_into_the_runs_it_causes(
    receiver: Receiver, tmp_path: Path
) -> None:
    server, stop = start_server(web_app(tmp_path / "web.db"), require_keys=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
            sent = http.post(
                "/v1/events",
                json={"name": "web/signed.up", "data": {"user": "u1"}},
                headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"},
            )
            assert sent.status_code == 202, sent.text
            (signup_id,) = sent.json()["runs_created"]
            invoked = http.post(
                "/v1/functions/direct/invoke",
                json={"data": {}},
                headers={"traceparent": f"00-{WEB_TRACE}-{'1' * 16}-01"},
            )
            assert invoked.status_code == 202, invoked.text
            direct_id = invoked.json()["run_id"]
            untraced = http.post(
                "/v1/events",
                json={"name": "web/signed.up", "data": {}},
                headers={"traceparent": "not-a-traceparent"},  # ignored, as W3C says
            )
            assert untraced.status_code == 202, untraced.text
            (untraced_id,) = untraced.json()["runs_created"]
            for run_id in (signup_id, direct_id, untraced_id):
                wait_status(http, run_id, {"completed"})
            shown = {
                i: http.get(f"/v1/runs/{i}").json()["trace_id"] for i in (signup_id, direct_id)
            }
            assert shown == {signup_id: WEB_TRACE, direct_id: WEB_TRACE}
            assert http.get(f"/v1/runs/{untraced_id}").json()["trace_id"] == (
                run_span(untraced_id, []).trace_id
            )
        receiver.wait_for(lambda spans: sum(s.name == "run announced" for s in spans) == 2)
    finally:
        stop()
    signup = run_span(signup_id, [{"trace": {"traceparent": TRACEPARENT}}])
    spans = [s for s in receiver.spans if s.trace_id == WEB_TRACE]
    by = {(s.name, s.attributes.get("inferpipe.run.id")): s for s in spans}
    root = by["run on-signup", signup_id]
    assert (root.span_id, root.parent_span_id) == (signup.span_id, WEB_SPAN)
    assert by["step welcome", signup_id].parent_span_id == root.span_id
    send = by["send announce", signup_id]
    (announced,) = [s for s in spans if s.name == "run announced"]
    assert announced.parent_span_id == send.span_id
    assert by["run direct", direct_id].parent_span_id == "1" * 16
    own = [s for s in receiver.spans if s.attributes.get("inferpipe.run.id") == untraced_id]
    assert {s.trace_id for s in own} == {run_span(untraced_id, []).trace_id}
    stored = asyncio.run(trigger_of(tmp_path / "web.db", signup_id))
    assert stored["trace"] == {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}


async def trigger_of(db: Path, run_id: str) -> dict[str, object]:
    """The run's trigger event as stored: the trace context is kept with the run."""
    async with ip.App("reader", database=f"sqlite:///{db}", telemetry=False) as app:
        run = await app.get_run(run_id)
        return dict(run.events[0])
