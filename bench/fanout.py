"""Fan-out: one parent invokes N children with `asyncio.gather` and waits for them all.

    .venv/bin/python -m bench.fanout [--children 1000 3000 10000] [--database URL] [--burst]

Prints, per N: wall time from the parent's start to its result, time per child, and how often
the parent was executed (1 start + its resumes). A worker loop (concurrency 100) on the
embedded SQLite store by default; with `--database postgresql://...` on a fresh database of
that server; with `--burst`, `testing.Harness` (virtual clock, the worker in burst mode: a
wave of up to 100 ready runs at a time, as in a test suite).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

import inferpipe as ip
from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.testing import Harness


async def _double(i: int) -> int:
    await asyncio.sleep(0.02)  # a child does some I/O: children finish over time
    return i * 2


executions: list[int] = []
"""One entry per execution of the parent (its start and each resume)."""


def build_app() -> ip.App:
    app = ip.App("bench-fanout")
    executions.clear()

    @app.function(id="child")
    async def child(ctx: ip.Context) -> int:
        return int(await ctx.step.run("double", _double, int(ctx.input["i"])))

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> int:
        executions.append(1)
        n = int(ctx.input["n"])
        results = await asyncio.gather(
            *(ctx.step.invoke(f"child-{i}", "child", {"i": i}) for i in range(n))
        )
        return sum(results)

    return app


async def new_postgres_store(url: str) -> PostgresStore:
    name = f"bench_fanout_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return PostgresStore(url.rsplit("/", 1)[0] + f"/{name}")


async def one(n: int, store: Store) -> tuple[float, int]:
    """Wall seconds for a parent of `n` children, and the parent's executions."""
    app = build_app()
    await app.start(store=store)
    worker = app.worker()
    task = asyncio.create_task(worker.run())
    try:
        t0 = time.perf_counter()
        run_id = await app.invoke("parent", {"n": n})
        run = await app.result(run_id, timeout=3600)
        elapsed = time.perf_counter() - t0
        assert run.output == n * (n - 1), run
        return elapsed, len(executions)
    finally:
        worker.notify_shutdown()
        await task
        await app.close()


async def one_burst(n: int) -> tuple[float, int]:
    """`one`, in `testing.Harness`."""
    async with Harness(build_app()) as h:
        t0 = time.perf_counter()
        run = await h.settle(await h.invoke("parent", {"n": n}))
        elapsed = time.perf_counter() - t0
        assert run is not None and run.output == n * (n - 1), run
        return elapsed, len(executions)


async def main(children: list[int], database: str | None, burst: bool) -> None:
    where = "PostgreSQL" if database else "SQLite"
    how = "testing.Harness (burst)" if burst else "a worker loop"
    print(f"fan-out on {where}, {how}: one parent, asyncio.gather of N invokes")
    print(f"{'children':>9} {'wall s':>8} {'ms/child':>9} {'parent executions':>18}")
    for n in children:
        if burst:
            elapsed, executions = await one_burst(n)
            print(f"{n:>9} {elapsed:>8.2f} {elapsed / n * 1000:>9.3f} {executions:>18}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            store: Store = (
                await new_postgres_store(database)
                if database
                else SQLiteStore(Path(tmp) / "fanout.db")
            )
            elapsed, executions = await one(n, store)
        print(f"{n:>9} {elapsed:>8.2f} {elapsed / n * 1000:>9.3f} {executions:>18}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--database", default=None, help="a PostgreSQL server URL")
    parser.add_argument("--burst", action="store_true", help="in testing.Harness")
    args = parser.parse_args()
    if args.burst and args.database:
        parser.error("--burst runs on SQLite only")
    asyncio.run(main(args.children, args.database, args.burst))
