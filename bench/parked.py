"""Many parked runs: worker memory and wake-up latency with N runs waiting.

    .venv/bin/python -m bench.parked [--runs 100000] [--store sqlite|postgres]
        [--park event|sleep] [--samples 200] [--settle 30] [--database URL]

N runs of one function park at once (`--park event`: each in `wait_for_event` on its own key,
`async.data.k == event.data.k`, for an hour; `--park sleep`: each in a one-hour sleep, with
`--samples` more runs waiting on keys for the wake-ups), started by batched sends of 1000
events, in one process with a worker (concurrency 1000) on the store: a fresh SQLite file, or
a fresh database of the PostgreSQL server at `--database` (a throwaway server without it).
Progress goes to stderr while they park. Then, right after the burst and again after
`--settle` seconds, `--samples` single deliveries one at a time to waiters spread over the
keys: wake-up = `send()` called -> `wait_for_event` returned inside the run; and the `send()`
time of an event that matches no waiter. Printed: the process's RSS with every run parked
(after a garbage collection) and its peak, its idle CPU, the wake-up p50 / p99 in both phases,
and the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

import inferpipe as ip
from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore

BATCH = 1000
"""Events per `send` while parking."""

woken: dict[int, asyncio.Future[float]] = {}
"""Key -> the moment its run's `wait_for_event` returned, for the sampled waiters."""


def build_app() -> ip.App:
    app = ip.App("bench-parked")

    @app.function(id="waiter", trigger=ip.on_event("bench/wait"))
    async def waiter(ctx: ip.Context) -> int:
        k = int(ctx.input["k"])
        event = await ctx.step.wait_for_event(
            "signal", event="bench/signal", timeout="1h", if_exp="async.data.k == event.data.k"
        )
        now = time.perf_counter()
        future = woken.get(k)
        if future is not None and not future.done():
            future.set_result(now)
        return -1 if event is None else int(event.data["k"])

    @app.function(id="sleeper", trigger=ip.on_event("bench/sleep"))
    async def sleeper(ctx: ip.Context) -> int:
        await ctx.step.sleep("nap", "1h")
        return 0

    return app


async def parked_count(store: Store) -> int:
    """Runs sleeping or waiting in the store (a park is counted once committed, whichever
    execution committed it)."""
    counts = await store.count_runs_by_status()
    return counts.get("sleeping", 0) + counts.get("waiting", 0)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def park(app: ip.App, event: str, keys: range) -> float:
    """Send one event per key and wait until every run it starts has parked; seconds taken."""
    start = time.perf_counter()
    target = await parked_count(app.engine.store) + len(keys)
    for first in range(keys.start, keys.stop, BATCH):
        last = min(keys.stop, first + BATCH)
        await app.engine.runs.send([ip.Event(event, {"k": k}) for k in range(first, last)])
    shown = 0.0
    while (count := await parked_count(app.engine.store)) < target:
        if time.perf_counter() - shown > 5:
            shown = time.perf_counter()
            progress(
                f"  parked {count}/{target} after {shown - start:.0f} s,"
                f" RSS {rss_mb():.0f} MB, load {load()}"
            )
        await asyncio.sleep(0.25)
    return time.perf_counter() - start


async def wakes(app: ip.App, keys: list[int]) -> tuple[list[float], list[float]]:
    """Wake the waiters of `keys` one at a time: (wake-up ms, non-matching send ms)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    misses: list[float] = []
    for k in keys:
        t0 = time.perf_counter()
        await app.engine.runs.send(ip.Event("bench/signal", {"k": -1 - k}))
        misses.append((time.perf_counter() - t0) * 1000)
        woken[k] = loop.create_future()
        t0 = time.perf_counter()
        await app.engine.runs.send(ip.Event("bench/signal", {"k": k}))
        latencies.append((await asyncio.wait_for(woken[k], 60) - t0) * 1000)
    return latencies, misses


async def create_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


def line(name: str, value: str) -> None:
    print(f"  {name:<44} {value}", flush=True)


def summary(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5):.2f} ms, p99 {pct(values, 0.99):.2f} ms, max {max(values):.1f}"


async def measure(store: Store, runs: int, mode: str, samples: int, settle_s: float) -> None:
    app = build_app()
    await app.start(store=store)
    worker = app.worker(concurrency=1000)
    task = asyncio.create_task(worker.run())
    try:
        print(f"{runs} runs parked in {mode}s on {type(store).__name__}; load {load()}")
        if mode == "event":
            park_s = await park(app, "bench/wait", range(runs))
            span = runs
        else:
            park_s = await park(app, "bench/sleep", range(runs))
            park_s += await park(app, "bench/wait", range(2 * samples))
            span = 2 * samples
        line("park (send + every run parked)", f"{park_s:.1f} s, {runs / park_s:.0f} runs/s")
        gc.collect()
        line("RSS with every run parked", f"{rss_mb():.0f} MB (peak {peak_rss_mb():.0f} MB)")
        keys = [int(i * (span - 1) / (2 * samples - 1)) for i in range(2 * samples)]
        latencies, misses = await wakes(app, keys[0::2])
        line("wake-up right after the burst", summary(latencies))
        line("send matching no waiter, after the burst", summary(misses))
        progress(f"  settling {settle_s:.0f} s")
        await asyncio.sleep(settle_s)
        c0, t0 = cpu_s(), time.perf_counter()
        await asyncio.sleep(2)
        idle = 100 * (cpu_s() - c0) / (time.perf_counter() - t0)
        gc.collect()
        line("RSS after settling", f"{rss_mb():.0f} MB, idle CPU {idle:.1f} %")
        latencies, misses = await wakes(app, keys[1::2])
        line("wake-up after settling", summary(latencies))
        line("send matching no waiter, after settling", summary(misses))
        print(f"load average after: {load()}")
    finally:
        worker.notify_shutdown()
        await task
        await app.close()


async def main(args: argparse.Namespace) -> None:
    stop = None
    folder = Path(tempfile.mkdtemp(prefix="inferpipe-bench-parked-"))
    server, name = args.database, ""
    try:
        if args.store == "sqlite":
            store: Store = SQLiteStore(str(folder / "parked.db"))
        else:
            if server is None:
                from tests.servers import start_postgres  # noqa: PLC0415 - only without one

                # a folder of its own: the server's OS user cannot enter `folder` (0700)
                server, stop, _ = start_postgres(Path(tempfile.mkdtemp(prefix="inferpipe-pg-")))
            name = f"bench_parked_{uuid.uuid4().hex[:8]}"
            await create_database(server, name)
            store = PostgresStore(server.rsplit("/", 1)[0] + f"/{name}")
        await measure(store, args.runs, args.park, args.samples, args.settle)
    finally:
        if stop is not None:
            stop()
        elif name:
            await drop_database(server, name)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--park", choices=("event", "sleep"), default="event")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--database", help="a postgresql:// server URL (default: a throwaway)")
    asyncio.run(main(parser.parse_args()))
