"""An app with outgoing webhooks for the delivery tests (in-process and as a worker process).

Loopback receivers are allowed through the operator's egress policy, explicitly: the tests set
`INFERPIPE_EGRESS_PRIVATE` or pass `EgressPolicy(allow_private=True)`.
"""

from __future__ import annotations

import os

import inferpipe as ip
from inferpipe.engine.functions import Backoff
from inferpipe.net.egress import AsyncResolver, EgressPolicy, resolve_host_async
from inferpipe.webhooks.delivery import DeliverySettings, enable_delivery
from inferpipe.workflows import HttpSettings


def build(
    database: str | None,
    *,
    private: bool,
    backoff_s: float,
    resolver: AsyncResolver = resolve_host_async,
) -> ip.App:
    app = ip.App("webhook-delivery", database=database)

    @app.function(id="work", trigger=ip.on_event("test/work"), retries=0)
    async def work(ctx: ip.Context) -> dict[str, object]:
        if ctx.event.data.get("fail"):
            raise ip.NonRetriableError("asked to fail")
        if ctx.event.data.get("score") is not None:
            await ctx.step.score("quality", float(ctx.event.data["score"]))
        if ctx.event.data.get("wait"):
            await ctx.step.wait_for_event("never", event="test/never", timeout="1d")
        return {"n": ctx.event.data.get("n")}

    @app.function(id="other", trigger=ip.on_event("test/other"), retries=0)
    async def other(ctx: ip.Context) -> str:
        return "other"

    egress = EgressPolicy(allow_private=True) if private else EgressPolicy()
    backoff = Backoff(base_s=backoff_s, max_s=backoff_s * 4, jitter=0.0)
    http = HttpSettings(resolver=resolver)
    settings = DeliverySettings(egress=egress, backoff=backoff, timeout_s=5.0, http=http)
    enable_delivery(app, settings)
    return app


app = build(
    os.environ.get("INFERPIPE_DATABASE_URL"),
    private=EgressPolicy.from_env().allows_private("default"),
    backoff_s=float(os.environ.get("WEBHOOK_BACKOFF_S", "1.5")),
)
