"""A process that invokes runs of `pg_app`'s `five-steps` with a worker of its own, for the
start-and-claim crash test: while the worker has a free slot, `invoke` inserts each run already
claimed by it (its lease timed from the insert) and the worker executes it here, and `result`
gets the finished run handed over in-process.

    python -m tests.store.starter_app   (from the repository's root)

Settings (environment): STARTER_DATABASE_URL, STARTER_RUNS (runs to invoke, one after another,
each awaited by a waiter of its own), STARTER_CONCURRENCY and STARTER_LEASE_MS (the worker's),
STARTER_REPORT (a file: a line `invoked <run id>` once an invoke returned, `result <run id>
<status>` once its result came); the steps log their executions as `pg_app` says (PG_TEST_LOG_DIR, PG_TEST_STEP_MS, and
PG_TEST_HOLD / PG_TEST_HOLD_STEP to hold the runs at a step). It runs on until SIGTERM, then
drains like `inferpipe worker`.
"""

from __future__ import annotations

import asyncio
import os
import signal

from inferpipe.app import shared_streams
from inferpipe.store.postgres import PostgresStore
from tests.store import pg_app


def _report(fd: int, line: str) -> None:
    os.write(fd, f"{line}\n".encode())  # unbuffered: it survives SIGKILL


async def main() -> None:
    app = pg_app.build_app()
    shared_streams(app, "starter")
    await app.start(store=PostgresStore(os.environ["STARTER_DATABASE_URL"]))
    worker = app.worker(
        concurrency=int(os.environ["STARTER_CONCURRENCY"]),
        lease_ms=int(os.environ["STARTER_LEASE_MS"]),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.notify_shutdown)
    working = asyncio.create_task(worker.run())
    report = os.open(os.environ["STARTER_REPORT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    async def wait(run_id: str) -> None:
        run = await app.result(run_id, timeout=3600)
        _report(report, f"result {run_id} {run.status.value}")

    try:
        # The worker offers its slots once it listens to the store, and tells nobody: polled.
        while worker not in app.engine.runs._starters:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        waiters = []
        for i in range(int(os.environ["STARTER_RUNS"])):  # one after another
            run_id = await app.invoke("five-steps", {"i": i})
            _report(report, f"invoked {run_id}")
            waiters.append(asyncio.create_task(wait(run_id)))
        await asyncio.gather(*waiters)
        await working
    finally:
        worker.notify_shutdown()
        await working
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
