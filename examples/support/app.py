"""A support-ticket app: the durable pipeline behind a helpdesk bot.

Run it with `inferpipe dev examples/support/app.py`, then send tickets:

    inferpipe send support/ticket.created --app examples/support/app.py \\
        --data '{"ticket_id": "tk_1", "customer": "ada", "content": "My invoice is wrong"}'
    inferpipe send support/ticket.resolved --app examples/support/app.py \\
        --data '{"ticket_id": "tk_1"}'

It uses every kind of step: run (with a flaky dependency that is retried), invoke (a child
function), send_event, sleep, and wait_for_event (the customer's reply, up to two days).
"""

from __future__ import annotations

import random

import inferpipe as ip

app = ip.App("support")

CATEGORIES = {"invoice": "billing", "refund": "billing", "password": "account", "crash": "bug"}


def classify(content: str) -> str:
    """A stand-in for a model call: pick a category from keywords."""
    words = content.lower()
    return next((cat for key, cat in CATEGORIES.items() if key in words), "general")


def lookup_customer(customer: str) -> dict[str, str]:
    """A flaky CRM: fails about half the time, so the step is retried with backoff."""
    if random.random() < 0.5:
        raise ConnectionError("CRM timed out")
    return {"customer": customer, "plan": "pro" if len(customer) % 2 else "free"}


@app.function(id="draft-reply", retries=2)
async def draft_reply(ctx: ip.Context) -> str:
    """Draft a reply for a category (invoked by handle-ticket)."""
    data = ctx.event.data
    return await ctx.step.run(
        "compose",
        lambda: f"Hello {data['customer']}, our {data['category']} team is on it.",
    )


@app.function(
    id="handle-ticket",
    trigger=ip.on_event("support/ticket.created"),
    cancel_on=ip.CancelOn(
        "support/ticket.closed", if_exp="async.data.ticket_id == event.data.ticket_id"
    ),
    retries=4,
    backoff=ip.Backoff(base_s=0.5, max_s=5),
)
async def handle_ticket(ctx: ip.Context) -> dict[str, object]:
    """Classify a ticket, reply, then wait for the customer to confirm it is resolved."""
    ticket = ctx.event.data
    category = await ctx.step.run("classify", classify, ticket["content"])
    ctx.logger.info("classified", ticket_id=ticket["ticket_id"], category=category)
    customer = await ctx.step.run("lookup-customer", lookup_customer, ticket["customer"])
    reply = await ctx.step.invoke(
        "draft-reply", "draft-reply", {"customer": ticket["customer"], "category": category}
    )
    await ctx.step.send_event(
        "notify-customer",
        ip.Event("support/reply.sent", {"ticket_id": ticket["ticket_id"], "reply": reply}),
    )
    await ctx.step.sleep("grace-period", "2s")
    resolved = await ctx.step.wait_for_event(
        "wait-for-resolution",
        event="support/ticket.resolved",
        timeout="2d",
        if_exp="async.data.ticket_id == event.data.ticket_id",
        lookback="1m",
    )
    outcome = "resolved" if resolved else "escalated"
    ctx.logger.info(f"ticket {outcome}", ticket_id=ticket["ticket_id"])
    return {"category": category, "plan": customer["plan"], "reply": reply, "outcome": outcome}


@app.function(id="audit-reply", trigger=ip.on_event("support/reply.sent"))
async def audit_reply(ctx: ip.Context) -> int:
    """Every reply sent is audited (triggered by the event handle-ticket sends)."""
    return len(ctx.event.data["reply"])
