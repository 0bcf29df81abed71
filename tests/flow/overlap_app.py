"""An app for the multi-process test: each step writes when it started and ended, and which
worker process ran it, to a log file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import inferpipe as ip
from inferpipe.engine.flow import Concurrency

LOG = Path(os.environ.get("FLOW_LOG", "/tmp/inferpipe-flow.log"))

app = ip.App("overlap", database=os.environ.get("INFERPIPE_DATABASE_URL"))


def work(key: str) -> str:
    start_ns = time.time_ns()
    time.sleep(0.03)  # long enough for another process to try to take the key meanwhile
    end_ns = time.time_ns()
    with LOG.open("a") as f:
        f.write(f"{key} {start_ns} {end_ns} {os.getpid()}\n")
    return key


@app.function(
    id="per-key", trigger=ip.on_event("job"), concurrency=Concurrency(1, key="event.data.k")
)
async def per_key(ctx: ip.Context) -> str:
    return str(await ctx.step.run("work", work, ctx.event.data["k"]))
