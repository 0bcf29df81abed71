"""Fan-out: one parent invokes N children with `asyncio.gather` and waits for them all.

    .venv/bin/python -m bench.fanout [--children 1000 3000 10000] [--stores sqlite postgres]
        [--database URL] [--burst]

Prints, per store and N: wall time from the parent's start to its result, time per child, the
ratio to the smallest N's time scaled by size (1.0 = linear), this process's CPU time and its
ratio likewise (steadier than wall time on a loaded machine; on PostgreSQL the server's CPU is
not in it), and how often the parent was executed (1 start + its resumes), with the load
average before and after. A worker loop
(concurrency 100) on the embedded SQLite store and on PostgreSQL (a fresh database of the
server at `--database`, or of a throwaway server started for the run); with `--burst`,
`testing.Harness` on SQLite (virtual clock, the worker in burst mode: a wave of up to 100
ready runs at a time, as in a test suite).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


async def one(n: int, store: Store) -> tuple[float, float, int]:
    """Wall seconds for a parent of `n` children, this process's CPU seconds meanwhile (every
    thread: the SQLite one too), and the parent's executions."""
    app = build_app()
    await app.start(store=store)
    worker = app.worker()
    task = asyncio.create_task(worker.run())
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        run_id = await app.invoke("parent", {"n": n})
        run = await app.result(run_id, timeout=3600)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert run.output == n * (n - 1), run
        return elapsed, cpu, len(executions)
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


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


async def curve(store_name: str, children: list[int], database: str | None) -> None:
    print(f"fan-out on {store_name}, a worker loop: one parent, asyncio.gather of N invokes")
    print(
        f"{'children':>9} {'wall s':>8} {'ms/child':>9} {'vs linear':>10} {'cpu s':>7}"
        f" {'vs linear':>10} {'parent executions':>18}"
    )
    first: tuple[int, float, float] | None = None
    for n in children:
        with tempfile.TemporaryDirectory() as tmp:
            store: Store = (
                await new_postgres_store(database)
                if database
                else SQLiteStore(Path(tmp) / "fanout.db")
            )
            elapsed, cpu, executions = await one(n, store)
        first = first or (n, elapsed, cpu)
        wall_ratio = elapsed / (first[1] * n / first[0])
        cpu_ratio = cpu / (first[2] * n / first[0])
        print(
            f"{n:>9} {elapsed:>8.2f} {elapsed / n * 1000:>9.3f} {wall_ratio:>10.2f} {cpu:>7.2f}"
            f" {cpu_ratio:>10.2f} {executions:>18}"
        )


async def burst_curve(children: list[int]) -> None:
    print("fan-out on SQLite, testing.Harness (burst): one parent, asyncio.gather of N invokes")
    print(f"{'children':>9} {'wall s':>8} {'ms/child':>9} {'parent executions':>18}")
    for n in children:
        elapsed, executions = await one_burst(n)
        print(f"{n:>9} {elapsed:>8.2f} {elapsed / n * 1000:>9.3f} {executions:>18}")


async def main(children: list[int], stores: list[str], database: str | None) -> None:
    print(_load())
    if "sqlite" in stores:
        await curve("SQLite", children, None)
    if "postgres" in stores:
        stop = None
        if database is None:
            from tests.servers import start_postgres  # noqa: PLC0415 - only without --database

            # Not TemporaryDirectory: the folder is handed to the postgres user, removed by stop().
            database, stop, _ = start_postgres(Path(tempfile.mkdtemp(prefix="inferpipe-pg-")))
        try:
            await curve("PostgreSQL", children, database)
        finally:
            if stop is not None:
                stop()
    print(_load())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument(
        "--stores", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--database", default=None, help="a PostgreSQL server URL")
    parser.add_argument("--burst", action="store_true", help="in testing.Harness, on SQLite")
    args = parser.parse_args()
    if args.burst:
        asyncio.run(burst_curve(args.children))
    else:
        asyncio.run(main(args.children, args.stores, args.database))
