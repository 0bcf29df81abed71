"""An app for the crash-recovery test: each step execution is appended to a log file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import inferpipe as ip

LOG = Path(os.environ.get("CRASH_LOG", "/tmp/inferpipe-crash.log"))
HOLD = Path(os.environ.get("CRASH_HOLD", "/tmp/inferpipe-crash.hold"))

app = ip.App("crash", database=os.environ.get("INFERPIPE_DATABASE_URL"))


def executed(name: str) -> str:
    with LOG.open("a") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    return name


def slow() -> str:
    executed("slow")
    while HOLD.exists():  # the test kills the worker while this step is in flight
        time.sleep(0.05)
    return "slow"


@app.function(id="pipeline")
async def pipeline(ctx: ip.Context) -> list[str]:
    out = [await ctx.step.run("a", executed, "a"), await ctx.step.run("b", executed, "b")]
    out.append(await ctx.step.run("slow", slow))
    out.append(await ctx.step.run("c", executed, "c"))
    await ctx.step.sleep("pause", "200ms")
    out.append(await ctx.step.run("d", executed, "d"))
    return out
