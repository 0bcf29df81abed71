"""Round trips to PostgreSQL per operation, and where the time of one goes.

    .venv/bin/python -m bench.round_trips [--database URL] [--samples 200]

Counts are what a busy machine does not change, unlike timings: each asyncpg call that waits
for the server (a statement, BEGIN, COMMIT) is a round trip. Operations, in one process with a
worker (concurrency 100): a zero-step run (`invoke` -> `result`), a run of 10 no-op steps, a
send that resumes a parked run (`wait_for_event`, `send` -> the run's code resumed), and a send
that matches no wait. For each: round trips (the median per operation), then the timeline of
the median operation of that count: the engine's time before each round trip, the round trip,
and what it sent (a round trip of other work, such as the resumed run's finish, may overlap). PostgreSQL: the server at `--database` (a fresh database on it, dropped
afterwards), else a throwaway one (tests/servers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import inferpipe as ip
from bench import asyncpg_trips, scratch

Trip = tuple[float, float, str]
"""A round trip: (perf_counter at its start, at its end, what it sent)."""

trips: list[Trip] = []

resumed: dict[int, asyncio.Future[None]] = {}


def _record(t0: float, t1: float, query: str) -> None:
    trips.append((t0, t1, " ".join(query.split())[:56]))


def build_app() -> ip.App:
    app = ip.App("bench-round-trips")

    async def noop(i: int) -> int:
        return i

    @app.function(id="empty")
    async def empty(ctx: ip.Context) -> int:
        return 0

    @app.function(id="steps")
    async def steps(ctx: ip.Context) -> int:
        return sum([await ctx.step.run("s", noop, i) for i in range(10)])

    @app.function(id="waiter")
    async def waiter(ctx: ip.Context) -> int:
        k = int(ctx.input["k"])
        await ctx.step.wait_for_event(
            "signal", event="bench/signal", timeout="1h", if_exp=f"async.data.k == {k}"
        )
        future = resumed.get(k)
        if future is not None and not future.done():
            future.set_result(None)
        return k

    return app


async def _zero_step(app: ip.App, _: int) -> None:
    await app.result(await app.invoke("empty"))


async def _ten_steps(app: ip.App, _: int) -> None:
    await app.result(await app.invoke("steps"))


async def _matching_send(app: ip.App, k: int) -> None:
    await app.send(ip.Event("bench/signal", {"k": k}))
    await resumed[k]


async def _unmatched_send(app: ip.App, k: int) -> None:
    await app.send(ip.Event("bench/signal", {"k": -1 - k}))


async def _park(app: ip.App, samples: int) -> None:
    """Park `samples` waiters (keys 0..samples-1) and wait until each is parked."""
    loop = asyncio.get_running_loop()
    resumed.update({k: loop.create_future() for k in range(samples)})
    ids = [await app.invoke("waiter", {"k": k}) for k in range(samples)]
    for run_id in ids:
        while (await app.get_run(run_id)).status is not ip.RunStatus.WAITING:
            await asyncio.sleep(0.01)


def _summarize(name: str, traces: list[tuple[float, float, list[Trip]]]) -> None:
    counts = [len(t) for _, _, t in traces]
    median = statistics.median(counts)
    took = [end - start for start, end, _ in traces]
    typical = sorted((t for t in traces if len(t[2]) == median), key=lambda t: t[1] - t[0])
    start, end, shown = typical[len(typical) // 2] if typical else traces[0]
    print(
        f"\n{name}: {median:g} round trips (min {min(counts)}, max {max(counts)}), "
        f"p50 {statistics.median(took) * 1e3:.2f} ms; the median one of {len(shown)}:"
    )
    last = start
    for t0, t1, query in sorted(shown):
        gap = f"{(t0 - last) * 1e3:6.3f} ms engine" if t0 >= last else "  (overlapping)"
        print(f"  {gap}  {(t1 - t0) * 1e3:6.3f} ms  {query}")
        last = max(last, t1)
    print(f"  {(end - last) * 1e3:6.3f} ms engine  (in all {(end - start) * 1e3:.3f} ms)")


async def _measure(
    app: ip.App, name: str, op: Callable[[ip.App, int], Awaitable[None]], samples: int
) -> None:
    traces = []
    for i in range(samples):
        trips.clear()
        t0 = time.perf_counter()
        await op(app, i)
        traces.append((t0, time.perf_counter(), list(trips)))
    _summarize(name, traces)


async def run(url: str, samples: int) -> None:
    app = build_app()
    app.database = url
    await app.start()
    worker = app.worker(concurrency=100)
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(20):  # connections made, statements prepared
            await _zero_step(app, 0)
        await _park(app, samples)
        with asyncpg_trips.traced(_record):
            await _measure(app, "zero-step run, invoke -> result", _zero_step, samples)
            await _measure(app, "10-step run, invoke -> result", _ten_steps, samples)
            await _measure(app, "send resuming a parked run", _matching_send, samples)
            await _measure(app, "send matching no wait", _unmatched_send, samples)
    finally:
        worker.notify_shutdown()
        await task
        await app.close()


async def main(args: argparse.Namespace) -> None:
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    server, stop = args.database, None
    if server is None:
        from tests.servers import start_postgres  # noqa: PLC0415 - only without --database

        server, stop, _ = start_postgres(Path(tempfile.mkdtemp(prefix="inferpipe-pg-")))
    try:
        async with scratch.database_on(server, "bench_rt") as url:
            await run(url, args.samples)
    finally:
        if stop is not None:
            stop()
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database", help="a postgresql:// server URL (default: a throwaway)")
    parser.add_argument("--samples", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
