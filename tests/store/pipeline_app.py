"""The app of the pipelined-steps crash test (`inferpipe worker pipeline_app.py`): one run of
many quick steps, so that a SIGKILL finds step records on their way to the disk.

Every execution of a step appends `key pid ns` to a file of its process with an unbuffered
write (it survives SIGKILL): the file, not the engine's journal, tells what ran.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import inferpipe as ip

STEPS = 400
LOG_DIR = Path(os.environ.get("PIPELINE_TEST_LOG_DIR", "."))
_log_fd: int | None = None


def log_execution(key: str) -> str:
    """Append `key pid ns`; returns `pid-ns`, an id for this execution."""
    global _log_fd  # noqa: PLW0603 - one append-only file per process
    if _log_fd is None:
        path = LOG_DIR / f"exec-{os.getpid()}.log"
        _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    now_ns = time.monotonic_ns()
    os.write(_log_fd, f"{key} {os.getpid()} {now_ns}\n".encode())
    return f"{os.getpid()}-{now_ns}"


app = ip.App("pipeline-crash", database=os.environ.get("INFERPIPE_DATABASE_URL"))


@app.function(id="many", retries=0)
async def many(ctx: ip.Context) -> list[str]:
    async def work(key: str) -> str:
        return log_execution(key)

    return [await ctx.step.run(f"s{i}", work, f"s{i}") for i in range(STEPS)]
