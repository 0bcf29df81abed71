"""The app run by worker processes in the multi-process fault tests (`inferpipe worker
pg_app.py`), on PostgreSQL or on one SQLite file.

Every execution of a step appends two lines to a file of its process, with unbuffered writes
(they survive SIGKILL of the process): `start` when the step's code begins and `done` when its
side effect is made, each with the time (CLOCK_MONOTONIC, one order for every process of the
machine) and the time the run's execution in this process began (the function was called: a
run claimed again is a new execution). The files, not the engine's records, tell what ran where
and when.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import inferpipe as ip

STEPS = 5
LOG_DIR = Path(os.environ.get("PG_TEST_LOG_DIR", "."))
STEP_S = float(os.environ.get("PG_TEST_STEP_MS", "10")) / 1000
"""The I/O each step waits for, so runs are in flight when a fault strikes."""
HOLD = os.environ.get("PG_TEST_HOLD")
HOLD_STEP = os.environ.get("PG_TEST_HOLD_STEP")
"""In this process, step `HOLD_STEP` waits (once its start is logged) while the file `HOLD`
exists: the process can be killed with its runs in flight at a step of the test's choosing."""
PIPELINE_STEPS = 1
"""Step records a run may have on their way to the disk while the next step runs: with 1, a
step starting means the record before the previous one is durable (`SideEffects` checks it)."""
_log_fd: int | None = None


def log_execution(run_id: str, key: str, phase: str, execution_ns: int) -> str:
    """Append `run key phase pid ns execution_ns`; returns `pid-ns`, an id for this step
    execution."""
    global _log_fd  # noqa: PLW0603 - one append-only file per process
    if _log_fd is None:
        path = LOG_DIR / f"exec-{os.getpid()}.log"
        _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    now_ns = time.monotonic_ns()
    line = f"{run_id} {key} {phase} {os.getpid()} {now_ns} {execution_ns}\n"
    os.write(_log_fd, line.encode())
    return f"{os.getpid()}-{now_ns}"


def build_app(*, cron: bool = False) -> ip.App:
    app = ip.App(
        "pg-workers",
        database=os.environ.get("INFERPIPE_DATABASE_URL"),
        limits=ip.Limits(pipeline_steps=PIPELINE_STEPS),
    )

    @app.function(id="five-steps", trigger=ip.on_event("load/item"), retries=10)
    async def five_steps(ctx: ip.Context) -> list[str]:
        execution_ns = time.monotonic_ns()

        async def work(key: str) -> str:
            log_execution(ctx.run_id, key, "start", execution_ns)
            if HOLD is not None and key == HOLD_STEP:
                while os.path.exists(HOLD):  # noqa: ASYNC110, ASYNC240
                    await asyncio.sleep(0.01)
            await asyncio.sleep(STEP_S)
            return log_execution(ctx.run_id, key, "done", execution_ns)

        return [await ctx.step.run(f"s{i}", work, f"s{i}") for i in range(STEPS)]

    if cron:

        @app.function(id="every-second", trigger=ip.on_cron("* * * * * *"))
        async def every_second(ctx: ip.Context) -> int:
            return int(ctx.event.data["tick_ms"])

    return app


app = build_app(cron=os.environ.get("PG_TEST_CRON") == "1")
