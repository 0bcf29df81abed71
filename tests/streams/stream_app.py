"""An app for the cross-process stream tests: a run whose step streams tokens.

While the file named by $STREAM_HOLD exists, the step `speak` waits after its tokens, so a test
can kill the worker with the step in flight.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import inferpipe as ip

HOLD = Path(os.environ.get("STREAM_HOLD", "/tmp/inferpipe-stream.hold"))
TOKENS = 5

app = ip.App("stream-processes", database=os.environ.get("INFERPIPE_DATABASE_URL"))


@app.function(id="talk", retries=0)
async def talk(ctx: ip.Context) -> list[str]:
    prepared = await ctx.step.run("prepare", lambda: "ready")

    async def speak() -> str:
        for n in range(TOKENS):
            await ctx.stream.publish(f"tok{n}", kind="token")
        # The test kills the worker while this step is in flight (a file set by another process).
        while HOLD.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.02)
        return "spoken"

    spoken = await ctx.step.run("speak", speak)
    await ctx.stream.publish({"progress": "done"})
    return [prepared, str(spoken)]
