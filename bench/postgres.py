"""Engine figures on PostgreSQL (loopback, durable commits: fsync + synchronous_commit=on).

    .venv/bin/python -m bench.postgres [--database URL] [--runs 1000] [--steps 10]
                                       [--samples 200] [--workers 1,2,4]

Without --database, a temporary server is started (tests/servers.py). Prints a table:
step overhead (1 run x 1000 steps) and throughput (N runs x M steps) in one process; throughput
with 1, 2 and 4 `inferpipe worker` processes; event -> run start and wake-up after a matching
event (p50 / p99), in one process and across processes (LISTEN/NOTIFY).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

import inferpipe as ip
from bench import postgres_app
from inferpipe.store.postgres import PostgresStore

APP_FILE = Path(postgres_app.__file__)
BATCH = 500
"""Events per `send` when loading runs."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def new_database(url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    db_url = url.rsplit("/", 1)[0] + f"/{name}"
    store = PostgresStore(db_url)
    await store.open()  # migrate once, before any worker races to
    await store.close()
    return db_url


async def poll(check: Callable[[], Awaitable[bool]], every_s: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark stalled")
        await asyncio.sleep(every_s)


async def load(app: ip.App, runs: int, steps: int) -> None:
    for first in range(0, runs, BATCH):
        count = min(BATCH, runs - first)
        await app.engine.runs.send(
            [ip.Event("bench/steps", {"steps": steps}) for _ in range(count)]
        )


async def finished_span_s(url: str, runs: int, since_s: float, timeout_s: float = 600) -> float:
    """Wait until `runs` runs of `steps` completed; seconds from `since_s` to the last finish."""
    conn = await asyncpg.connect(url)
    try:

        async def done() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM runs WHERE function_id = 'steps' AND status = 'completed'"
            )
            return int(n) >= runs

        await poll(done, 0.05, timeout_s)
        last_ms = await conn.fetchval("SELECT max(finished_at_ms) FROM runs")
        return float(last_ms) / 1000 - since_s
    finally:
        await conn.close()


async def wait_status(store: PostgresStore, run_id: str, status: ip.RunStatus) -> ip.Run:
    found: list[ip.Run] = []

    async def reached() -> bool:
        run = await store.get_run(run_id)
        if run is not None and run.status is status:
            found.append(run)
        return bool(found)

    await poll(reached, 0.002, 30)
    return found[0]


async def latencies(sender: ip.App, samples: int) -> tuple[list[float], list[float]]:
    """(event -> run start, wake-up after a matching event) in ms, one sample at a time."""
    store = sender.engine.store
    assert isinstance(store, PostgresStore)
    starts: list[float] = []
    for _ in range(samples):
        sent = time.time()
        result = await sender.engine.runs.send(ip.Event("bench/start", {}))
        run = await wait_status(store, result.runs_created[0], ip.RunStatus.COMPLETED)
        starts.append((float(run.output) - sent) * 1000)
    wakes: list[float] = []
    for i in range(samples):
        result = await sender.engine.runs.send(ip.Event("bench/wait", {"k": i}))
        run_id = result.runs_created[0]
        await wait_status(store, run_id, ip.RunStatus.WAITING)
        sent = time.time()
        await sender.engine.runs.send(ip.Event("bench/signal", {"k": i}))
        run = await wait_status(store, run_id, ip.RunStatus.COMPLETED)
        wakes.append((float(run.output) - sent) * 1000)
    return starts, wakes


async def in_process(server_url: str, runs: int, steps: int, samples: int) -> dict[str, str]:
    url = await new_database(server_url)
    app = postgres_app.app
    await app.start(store=PostgresStore(url))
    worker = app.worker(concurrency=runs)
    task = asyncio.create_task(worker.run())
    figures: dict[str, str] = {}
    try:
        t0 = time.perf_counter()
        result = await app.engine.runs.send(ip.Event("bench/steps", {"steps": 1000}))
        await app.result(result.runs_created[0], timeout=600)
        per_step_ms = (time.perf_counter() - t0) / 1000 * 1000
        figures["step overhead (1 run x 1000 steps)"] = f"{per_step_ms:.2f} ms/step"

        since = time.time()
        await load(app, runs, steps)
        span = await finished_span_s(url, runs + 1, since)
        figures[f"throughput, 1 process ({runs} runs x {steps} steps)"] = (
            f"{runs * steps / span:.0f} steps/s"
        )
        starts, wakes = await latencies(app, samples)
        figures["event -> run start, in-process"] = _p(starts)
        figures["wake-up after matching event, in-process"] = _p(wakes)
    finally:
        worker.notify_shutdown()
        await task
        await app.close()
    return figures


def start_workers(url: str, count: int, folder: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "INFERPIPE_DATABASE_URL": url}
    procs = []
    for i in range(count):
        with (folder / f"worker-{i}.err").open("wb") as err:
            args = ["worker", str(APP_FILE), "--database", url, "--concurrency", "1000"]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "inferpipe", *args],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            )
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


async def workers_listening(url: str, count: int) -> None:
    """Wait until `count` workers hold their LISTEN connection (they are up and idle)."""
    conn = await asyncpg.connect(url)
    try:

        async def ready() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'LISTEN%'"
            )
            return int(n) >= count

        await poll(ready, 0.05, 60)
    finally:
        await conn.close()


async def across_processes(
    server_url: str, workers: int, runs: int, steps: int, samples: int, folder: Path
) -> dict[str, str]:
    url = await new_database(server_url)
    procs = start_workers(url, workers, folder)
    sender = ip.App("bench-sender")
    sender.registry = postgres_app.app.registry  # plans runs as a client process would
    figures: dict[str, str] = {}
    try:
        await workers_listening(url, workers)
        await sender.start(store=PostgresStore(url))
        since = time.time()
        await load(sender, runs, steps)
        span = await finished_span_s(url, runs, since)
        figures[f"throughput, {workers} worker process(es)"] = f"{runs * steps / span:.0f} steps/s"
        if samples and workers == 1:
            starts, wakes = await latencies(sender, samples)
            figures["event -> run start, across processes"] = _p(starts)
            figures["wake-up after matching event, across processes"] = _p(wakes)
    finally:
        await sender.close()
        stop_workers(procs)
    return figures


def _p(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5):.2f} ms, p99 {pct(values, 0.99):.2f} ms"


async def main(args: argparse.Namespace) -> None:
    stop: Callable[[], None] | None = None
    folder = Path(tempfile.mkdtemp(prefix="inferpipe-bench-pg-"))
    url = args.database
    if url is None:
        from tests.servers import start_postgres  # noqa: PLC0415 - only without --database

        url, stop, _ = start_postgres(Path(tempfile.mkdtemp(prefix="inferpipe-pg-")))
    try:
        figures = await in_process(url, args.runs, args.steps, args.samples)
        for count in args.workers:
            figures |= await across_processes(
                url, count, args.runs, args.steps, args.samples, folder
            )
    finally:
        if stop is not None:
            stop()
    width = max(len(k) for k in figures)
    print(f"PostgreSQL on loopback, durable commits; {os.cpu_count()} cores")
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database", help="a postgresql:// URL (default: a temporary server)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4]
    )
    asyncio.run(main(parser.parse_args()))
