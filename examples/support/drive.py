"""Send a few tickets to the support app and show the runs as they progress.

python examples/support/drive.py          # against the same database as `inferpipe dev`
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from app import app

import inferpipe as ip

TICKETS = [
    ("tk_1", "ada", "My invoice is wrong"),
    ("tk_2", "grace", "The app crashes on start"),
    ("tk_3", "linus", "I forgot my password"),
]


async def main() -> None:
    async with app:
        for ticket_id, customer, content in TICKETS:
            await app.send(
                ip.Event(
                    "support/ticket.created",
                    {"ticket_id": ticket_id, "customer": customer, "content": content},
                )
            )
            print(f"sent ticket {ticket_id}")
        await asyncio.sleep(4)
        await app.send(ip.Event("support/ticket.resolved", {"ticket_id": "tk_1"}))
        print("customer resolved tk_1; tk_2 and tk_3 wait up to two days (or until closed)")
        await app.send(ip.Event("support/ticket.closed", {"ticket_id": "tk_3"}))
        print("tk_3 closed: its run is cancelled")
        await app.send(
            ip.Event("support/feedback.received", {"ticket_id": "tk_1", "helpful": True})
        )
        print("feedback on tk_1: helpful (scored 1.0 on its run by the deferred feedback scorer)")


if __name__ == "__main__":
    asyncio.run(main())
