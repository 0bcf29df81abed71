"""A support-ticket app: the durable pipeline behind a helpdesk bot.

Run it with `inferpipe dev examples/support/app.py`, then send tickets:

    inferpipe send support/ticket.created --app examples/support/app.py \\
        --data '{"ticket_id": "tk_1", "customer": "ada", "content": "My invoice is wrong"}'
    inferpipe send support/ticket.resolved --app examples/support/app.py \\
        --data '{"ticket_id": "tk_1"}'

It uses every kind of step: run (with a flaky dependency that is retried), invoke (a child
function), send_event, sleep, and wait_for_event (the customer's reply, up to two days); it
scores itself inline and defers a durable scorer that waits a week for the customer's feedback:

    inferpipe send support/feedback.received --app examples/support/app.py \
        --data '{"ticket_id": "tk_1", "helpful": true}'
"""

from __future__ import annotations

from pydantic import BaseModel

import inferpipe as ip

app = ip.App("support")

CATEGORIES = {"invoice": "billing", "refund": "billing", "password": "account", "crash": "bug"}


def classify(content: str) -> str:
    """A stand-in for a model call: pick a category from keywords."""
    words = content.lower()
    return next((cat for key, cat in CATEGORIES.items() if key in words), "general")


_crm_calls: dict[str, int] = {}


def lookup_customer(customer: str) -> dict[str, str]:
    """A flaky CRM: the first call for each customer times out, so the step is retried."""
    _crm_calls[customer] = _crm_calls.get(customer, 0) + 1
    if _crm_calls[customer] == 1:
        raise ConnectionError("CRM timed out")
    return {"customer": customer, "plan": "pro" if len(customer) % 2 else "free"}


class FeedbackInput(BaseModel):
    ticket_id: str


@app.scorer(id="feedback-scorer", input=FeedbackInput)
async def feedback_scorer(ctx: ip.Context) -> ip.Score:
    """Helpful -> 1, not helpful -> 0, no feedback within 7 days -> 0.5."""
    fb = await ctx.step.wait_for_event(
        "wait-for-feedback",
        event="support/feedback.received",
        timeout="7d",
        if_exp=f"async.data.ticket_id == {ctx.input.ticket_id!r}",
        lookback="1d",  # feedback may come before the ticket's run has finished
    )
    if fb is None:
        return ip.Score("user-feedback", 0.5, reason="no feedback within 7 days")
    return ip.Score("user-feedback", 1.0 if fb.data.get("helpful") else 0.0)


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
    await ctx.step.score("classified", category != "general")
    ctx.defer("score-feedback", feedback_scorer, {"ticket_id": ticket["ticket_id"]})
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
