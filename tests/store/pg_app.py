"""The app run by worker processes in the multi-process tests (`inferpipe worker pg_app.py`).

Every execution of a step appends `run key execution-id` to a file of its process, with an
unbuffered write (it survives SIGKILL of the process), and returns its execution id: the step's
recorded output then names the execution that won, and the files tell which ran.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import inferpipe as ip

STEPS = 5
LOG_DIR = Path(os.environ.get("PG_TEST_LOG_DIR", "."))
_log_fd: int | None = None


def execution(run_id: str, key: str) -> str:
    """Log one execution of a step; returns its id `<pid>-<monotonic ns>` (system-wide order)."""
    global _log_fd  # noqa: PLW0603 - one append-only file per process
    if _log_fd is None:
        path = LOG_DIR / f"exec-{os.getpid()}.log"
        _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    exec_id = f"{os.getpid()}-{time.monotonic_ns()}"
    os.write(_log_fd, f"{run_id} {key} {exec_id}\n".encode())
    return exec_id


def build_app(*, cron: bool = False) -> ip.App:
    app = ip.App("pg-workers", database=os.environ.get("INFERPIPE_DATABASE_URL"))

    @app.function(id="five-steps", trigger=ip.on_event("load/item"), retries=10)
    async def five_steps(ctx: ip.Context) -> list[str]:
        async def work(key: str) -> str:
            await asyncio.sleep(0.01)  # a little I/O, so runs are in flight when a worker dies
            return execution(ctx.run_id, key)

        return [await ctx.step.run(f"s{i}", work, f"s{i}") for i in range(STEPS)]

    if cron:

        @app.function(id="every-second", trigger=ip.on_cron("* * * * * *"))
        async def every_second(ctx: ip.Context) -> int:
            return int(ctx.event.data["tick_ms"])

    return app


app = build_app(cron=os.environ.get("PG_TEST_CRON") == "1")
