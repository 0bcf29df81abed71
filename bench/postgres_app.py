"""The app of the PostgreSQL benchmark, run in-process and by `inferpipe worker` processes."""

from __future__ import annotations

import os
import time

import inferpipe as ip

app = ip.App("bench-pg", database=os.environ.get("INFERPIPE_DATABASE_URL"))


async def _noop(i: int) -> int:
    return i


@app.function(id="steps", trigger=ip.on_event("bench/steps"))
async def steps(ctx: ip.Context) -> int:
    """`data.steps` no-op steps: measures the engine and the store, not user code."""
    count = int(ctx.event.data["steps"])
    for i in range(count):
        await ctx.step.run("s", _noop, i)
    return count


@app.function(id="latency", trigger=ip.on_event("bench/start"))
async def latency(ctx: ip.Context) -> float:
    """Returns when it started (Unix seconds): event -> run start latency."""
    return time.time()


@app.function(id="waiter", trigger=ip.on_event("bench/wait"))
async def waiter(ctx: ip.Context) -> float:
    """Returns when its wait was satisfied and it went on: wake-up latency."""
    await ctx.step.wait_for_event(
        "w", event="bench/signal", timeout="1h", if_exp="async.data.k == event.data.k"
    )
    return time.time()
