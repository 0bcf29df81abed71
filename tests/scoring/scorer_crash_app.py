"""An app for the scorer crash test: the scorer's judging step blocks while a file exists."""

from __future__ import annotations

import os
import time
from pathlib import Path

import inferpipe as ip

LOG = Path(os.environ.get("CRASH_LOG", "/tmp/inferpipe-scorer.log"))
HOLD = Path(os.environ.get("CRASH_HOLD", "/tmp/inferpipe-scorer.hold"))

app = ip.App("scorer-crash", database=os.environ.get("INFERPIPE_DATABASE_URL"))


def judge() -> float:
    with LOG.open("a") as f:
        f.write("judge\n")
    while HOLD.exists():
        time.sleep(0.05)
    return 0.9


@app.scorer(id="slow-judge")
async def slow_judge(ctx: ip.Context) -> ip.Score:
    return ip.Score("judged", await ctx.step.run("judge", judge))


@app.function(id="answer")
async def answer(ctx: ip.Context) -> str:
    ctx.defer("judge-it", slow_judge, {})
    return "42"
