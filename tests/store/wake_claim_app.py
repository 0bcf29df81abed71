"""The app of the wake-and-claim crash test. Run as a script, it is the process the test kills:
a worker that invokes one run, waits for it to park on its event, then sends the event, which
takes the run for this worker (`WakeClaim`); the step after the wait then holds until the test
removes the hold file. As `inferpipe worker wake_claim_app.py`, it is the worker that recovers.

Every execution of a step appends `key pid ns` to a file of its process with an unbuffered
write (it survives SIGKILL): the file, not the engine's journal, tells what ran.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import inferpipe as ip

LOG_DIR = Path(os.environ.get("WAKE_CLAIM_LOG_DIR", "."))
HOLD = LOG_DIR / "hold"

app = ip.App("wake-claim-crash", database=os.environ.get("INFERPIPE_DATABASE_URL"))


def log_execution(key: str) -> str:
    """Append `key pid ns`; returns `pid-ns`, an id for this execution."""
    now_ns = time.monotonic_ns()
    fd = os.open(LOG_DIR / f"exec-{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{key} {os.getpid()} {now_ns}\n".encode())
    finally:
        os.close(fd)
    return f"{os.getpid()}-{now_ns}"


def held(key: str) -> str:
    execution = log_execution(key)
    while HOLD.exists():  # the test kills the process while this step is in flight
        time.sleep(0.02)
    return execution


@app.function(id="waiter", retries=0)
async def waiter(ctx: ip.Context) -> list[object]:
    before = await ctx.step.run("before", log_execution, "before")
    event = await ctx.step.wait_for_event("go", event="test/go", timeout="1h")
    after = await ctx.step.run("after", held, "after")
    return [before, None if event is None else event.data["n"], after]


async def main() -> None:
    async with app:
        worker = app.worker(lease_ms=1000)
        working = asyncio.create_task(worker.run())
        run_id = await app.invoke("waiter")
        for _ in range(6000):  # until it parks on its wait (a minute at most)
            if (await app.get_run(run_id)).status is ip.RunStatus.WAITING:
                break
            await asyncio.sleep(0.01)
        await app.send(ip.Event("test/go", {"n": 7}))
        await working  # until killed


if __name__ == "__main__":
    asyncio.run(main())
