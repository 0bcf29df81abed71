"""The support-ticket example works end to end on the virtual clock."""

from __future__ import annotations

from examples.support.app import app

import inferpipe as ip
from inferpipe.testing import Harness


async def test_support_example_flow() -> None:
    async with Harness(app) as h:
        await h.send(
            [
                ip.Event(
                    "support/ticket.created",
                    {"ticket_id": "t1", "customer": "ada", "content": "invoice wrong"},
                ),
                ip.Event(
                    "support/ticket.created",
                    {"ticket_id": "t2", "customer": "bob", "content": "crash"},
                ),
                ip.Event(
                    "support/ticket.created",
                    {"ticket_id": "t3", "customer": "cy", "content": "hello"},
                ),
            ]
        )
        await h.advance("10s")
        await h.send(ip.Event("support/ticket.resolved", {"ticket_id": "t1"}))
        await h.send(ip.Event("support/ticket.closed", {"ticket_id": "t3"}))
        await h.send(ip.Event("support/feedback.received", {"ticket_id": "t1", "helpful": True}))
        await h.settle()
        runs = {r.input[0]["data"]["ticket_id"]: r for r in await h.runs_of("handle-ticket")}
        assert runs["t1"].output["outcome"] == "resolved"
        assert runs["t1"].output["category"] == "billing"
        assert runs["t2"].output["outcome"] == "escalated"
        assert runs["t3"].status is ip.RunStatus.CANCELLED
        feedback = {s.run_id: s.value for s in await h.app.scores(name="user-feedback")}
        assert feedback == {runs["t1"].id: 1.0, runs["t2"].id: 0.5, runs["t3"].id: 0.5}
        assert len(await h.runs_of("audit-reply")) == 3
        assert len(await h.runs_of("draft-reply")) == 3
        lookups = [s for s in await h.steps(runs["t1"].id) if s.key == "lookup-customer"]
        assert (
            lookups[0].attempt == 1 and lookups[0].meta["attempts"][0]["message"] == "CRM timed out"
        )
