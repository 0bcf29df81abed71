"""Core engine figures on the embedded SQLite store (durable commits: WAL + synchronous=FULL).

    .venv/bin/python -m bench.core [--runs 1000] [--steps 10]

Prints: step overhead (1 run x 1000 steps), throughput (N concurrent runs x M steps),
event -> run start latency and wait_for_event wake-up latency (p50 / p99).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import inferpipe as ip
from inferpipe.store.sqlite import SQLiteStore


def _noop(i: int) -> int:
    return i


async def _noop_async(i: int) -> int:
    return i


def build_app(steps: int) -> tuple[ip.App, dict[str, list[float]]]:
    app = ip.App("bench")
    marks: dict[str, list[float]] = {"started": [], "woken": []}

    @app.function(id="long")
    async def long(ctx: ip.Context) -> int:
        for i in range(1000):
            await ctx.step.run("s", _noop_async, i)
        return 1000

    @app.function(id="ten")
    async def ten(ctx: ip.Context) -> int:
        for i in range(steps):
            await ctx.step.run("s", _noop_async, i)
        return steps

    @app.function(id="latency", trigger=ip.on_event("bench/start"))
    async def latency(ctx: ip.Context) -> None:
        marks["started"].append(time.perf_counter())

    @app.function(id="waiter", trigger=ip.on_event("bench/wait"))
    async def waiter(ctx: ip.Context) -> None:
        waiting.add(ctx.event.data["k"])  # the wait below is enqueued before this yields
        await ctx.step.wait_for_event(
            "w", event="bench/signal", timeout="1h", if_exp="async.data.k == event.data.k"
        )
        marks["woken"].append(time.perf_counter())

    return app, marks


waiting: set[int] = set()
"""Keys of the bench waiters that reached their wait."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(runs: int, steps: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app, marks = build_app(steps)
        await app.start(store=SQLiteStore(Path(tmp) / "bench.db"))
        worker = app.worker(concurrency=runs)
        task = asyncio.create_task(worker.run())
        try:
            await report(app, marks, runs, steps, samples)
        finally:
            worker.notify_shutdown()
            await task
            await app.close()


async def report(
    app: ip.App, marks: dict[str, list[float]], runs: int, steps: int, samples: int
) -> None:
    t0 = time.perf_counter()
    await app.result(await app.invoke("long"), timeout=600)
    per_step_us = (time.perf_counter() - t0) / 1000 * 1e6
    print(f"step overhead (1 run x 1000 steps):     {per_step_us:8.0f} us/step   target <= 300")

    t0 = time.perf_counter()
    ids = [await app.invoke("ten") for _ in range(runs)]
    for run_id in ids:
        await app.result(run_id, timeout=600)
    elapsed = time.perf_counter() - t0
    print(
        f"throughput ({runs} runs x {steps} steps):      {runs * steps / elapsed:8.0f} steps/s  "
        f"target >= 5000"
    )

    starts = []
    for _ in range(samples):
        sent = time.perf_counter()
        await app.send(ip.Event("bench/start", {}))
        while len(marks["started"]) < len(starts) + 1:
            await asyncio.sleep(0)
        starts.append((marks["started"][-1] - sent) * 1000)
    print(
        f"event -> run start:  p50 {pct(starts, 0.5):6.2f} ms   p99 {pct(starts, 0.99):6.2f} ms   "
        "target p50 <= 5"
    )

    wakes = []
    for i in range(samples):
        await app.send(ip.Event("bench/wait", {"k": i}))
        while i not in waiting:  # the run has reached its wait
            await asyncio.sleep(0)
        sent = time.perf_counter()
        await app.send(ip.Event("bench/signal", {"k": i}))
        while len(marks["woken"]) < i + 1:
            await asyncio.sleep(0)
        wakes.append((marks["woken"][-1] - sent) * 1000)
    print(
        f"wait_for_event wake-up: p50 {pct(wakes, 0.5):6.2f} ms   p99 {pct(wakes, 0.99):6.2f} ms   "
        "target p50 <= 5"
    )
    print(f"(samples: {samples}; stdev wake-up {statistics.pstdev(wakes):.2f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.steps, args.samples))
