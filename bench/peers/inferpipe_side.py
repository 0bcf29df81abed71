"""inferpipe's side of the peer benchmark: one workload, one fresh database, one JSON line.

    .venv/bin/python -m bench.peers.inferpipe_side --store sqlite|postgres --case CASE
        [--pg-server URL]

CASE: w1, w2-start (`app.invoke` x N), w2-send (one `send` of N events), w2-queue (the
function has `concurrency=50`, filled by `app.invoke` x N), w3, w4 (`app.invoke` then
`app.result`). The engine and a worker (concurrency N for w2, else 100) run in this process,
as DBOS runs its workflows in its own; steps are async no-ops. A w2 case ending in `-<P>p`
(w2-start-2p) runs its workers in P processes of their own instead (each a worker of
concurrency N, started with `--serve URL` and ready before the clock starts): this process
only starts the runs and awaits their results. SQLite: a fresh file (WAL, synchronous=FULL);
PostgreSQL: a fresh database on the server, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

import inferpipe as ip
from bench.peers import common
from bench.peers.common import W2_STEPS, WARMUP, cpu_s, latency_ms, now
from inferpipe.store.base import RunFilter

entered: set[int] = set()
"""Keys of the w3 waiters that reached their wait."""


async def noop(i: int) -> int:
    return i


def build_app() -> ip.App:
    app = ip.App("peer-bench")

    async def steps(ctx: ip.Context) -> int:
        total = 0
        for i in range(int(ctx.input["n"])):
            total += await ctx.step.run("s", noop, i)
        return total

    app.function(id="steps", trigger=ip.on_event("bench/steps"))(steps)
    app.function(id="steps_q", concurrency=50)(steps)

    @app.function(id="empty")
    async def empty(ctx: ip.Context) -> int:
        return 0

    @app.function(id="waiter")
    async def waiter(ctx: ip.Context) -> list[Any]:
        entered.add(int(ctx.input["k"]))
        event = await ctx.step.wait_for_event(
            "w", event="bench/signal", timeout="60s", if_exp="async.data.k == event.data.k"
        )
        return [now(), None if event is None else event.data["k"]]

    return app


async def result(app: ip.App, run_id: str, expect: Any) -> int:
    """1 when the run did not complete with `expect`."""
    run = await app.result(run_id, timeout=120)
    return 0 if run.status is ip.RunStatus.COMPLETED and run.output == expect else 1


async def w1(app: ip.App, n: int) -> dict[str, Any]:
    await result(app, await app.invoke("steps", {"n": 10}), 45)
    t0 = now()
    wrong = await result(app, await app.invoke("steps", {"n": n}), n * (n - 1) // 2)
    return {"us_per_step": round((now() - t0) / n * 1e6, 1), "wrong": wrong}


async def w2(app: ip.App, n: int, mode: str) -> dict[str, Any]:
    expect = W2_STEPS * (W2_STEPS - 1) // 2
    for _ in range(WARMUP):
        await result(app, await app.invoke("steps", {"n": W2_STEPS}), expect)
    t0 = now()
    if mode == "send":
        sent = await app.engine.runs.send(
            [ip.Event("bench/steps", {"n": W2_STEPS}) for _ in range(n)]
        )
        ids = list(sent.runs_created)
    else:
        fn = "steps_q" if mode == "queue" else "steps"
        ids = [await app.invoke(fn, {"n": W2_STEPS}) for _ in range(n)]
    wrong = sum([await result(app, run_id, expect) for run_id in ids])
    return {"steps_per_s": round(n * W2_STEPS / (now() - t0), 1), "wrong": wrong}


async def w3(app: ip.App, n: int) -> dict[str, Any]:
    ids = [await app.invoke("waiter", {"k": k}) for k in range(n)]
    while len(entered) < n:
        await asyncio.sleep(0.01)
    parked = RunFilter(function_id="waiter", status=ip.RunStatus.WAITING)
    while len((await app.list_runs(parked, limit=n)).items) < n:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # as the DBOS side: the last parks settle
    sent_at = []
    for k in range(n):
        sent_at.append(now())
        await app.send(ip.Event("bench/signal", {"k": k}))
    lat, wrong = [], 0
    for k, run_id in enumerate(ids):
        run = await app.result(run_id, timeout=120)
        if run.status is not ip.RunStatus.COMPLETED or run.output[1] != k:
            wrong += 1
            continue
        lat.append(run.output[0] - sent_at[k])
    return {"wakeup": latency_ms(lat), "wrong": wrong}


async def w4(app: ip.App, n: int) -> dict[str, Any]:
    for _ in range(WARMUP):
        await result(app, await app.invoke("empty"), 0)
    lat, wrong = [], 0
    for _ in range(n):
        t0 = now()
        wrong += await result(app, await app.invoke("empty"), 0)
        lat.append(now() - t0)
    return {"start_to_result": latency_ms(lat), "wrong": wrong}


async def serve(url: str) -> None:
    """A worker process of a `-<P>p` case: run the app's functions until SIGTERM."""
    app = build_app()
    app.database = url
    await app.start()
    worker = app.worker(concurrency=common.SIZES["w2"])
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.notify_shutdown)
    task = asyncio.create_task(worker.run())
    while worker not in app.engine.runs._starters:  # it listens to the store by then
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    try:
        await task
    finally:
        await app.close()


def start_workers(url: str, count: int) -> list[subprocess.Popen[str]]:
    """`count` worker processes on `url`, each ready (listening) when this returns."""
    argv = [sys.executable, "-m", "bench.peers.inferpipe_side", "--serve", url]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            stop_workers(procs)
            raise RuntimeError("a worker process did not start")
    return procs


def process_cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far (Linux), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_pids(pg_server: str, database: str) -> list[int]:
    """The server processes of the connections to `database` (a server on this machine)."""
    conn = await asyncpg.connect(pg_server)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await conn.close()
    return [int(row[0]) for row in rows]


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def runs_of(workload: str, n: int) -> int:
    """Runs a workload executes, its warm-up included."""
    return {"w1": 2, "w3": n}.get(workload, n + WARMUP)


async def main(args: argparse.Namespace) -> None:
    workload, _, mode = args.case.partition("-")
    mode, _, apart = mode.partition("-")
    processes = int(apart.removesuffix("p")) if apart else 0
    n = common.SIZES[workload]
    folder = Path(tempfile.mkdtemp(prefix="inferpipe-peer-"))
    url, name = str(folder / "bench.db"), ""
    if args.store == "sqlite":
        url = f"sqlite:///{url}"
    else:
        name = f"peer_inferpipe_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(args.pg_server)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        url = args.pg_server.rsplit("/", 1)[0] + f"/{name}"
    app = build_app()
    app.database = url  # the app is built before its database exists
    await app.start()
    workers = await asyncio.to_thread(start_workers, url, processes) if processes else []
    worker = None if workers else app.worker(concurrency=n if workload == "w2" else 100)
    task = asyncio.create_task(worker.run()) if worker is not None else None
    try:
        procs = [p.pid for p in workers]
        local = name and urlsplit(args.pg_server).hostname in ("127.0.0.1", "localhost", "::1")
        backends = await server_pids(args.pg_server, name) if local else []
        c0, t0 = cpu_s(), now()
        w0 = {pid: process_cpu_s(pid) for pid in procs + backends}
        if workload == "w1":
            metrics = await w1(app, n)
        elif workload == "w2":
            metrics = await w2(app, n, mode)
        elif workload == "w3":
            metrics = await w3(app, n)
        else:
            metrics = await w4(app, n)
        runs = runs_of(workload, n)
        metrics["cpu_pct"] = round(100 * (cpu_s() - c0) / (now() - t0), 1)
        metrics["cpu_ms_per_run"] = round(1000 * (cpu_s() - c0) / runs, 3)
        if workers:
            metrics["worker_processes"] = len(workers)
            worker_s = sum(process_cpu_s(pid) - w0[pid] for pid in procs)
            metrics["worker_cpu_ms_per_run"] = round(1000 * worker_s / runs, 3)
        if local:
            # Connections opened since (pools grow on demand) count from their start.
            server = await server_pids(args.pg_server, name)
            server_s = sum(process_cpu_s(pid) - w0.get(pid, 0.0) for pid in server)
            metrics["server_cpu_ms_per_run"] = round(1000 * server_s / runs, 3)
    finally:
        if worker is not None and task is not None:
            worker.notify_shutdown()
            await task
        await asyncio.to_thread(stop_workers, workers)
        await app.close()
        shutil.rmtree(folder, ignore_errors=True)
        if name:
            conn = await asyncpg.connect(args.pg_server)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await conn.close()
    common.emit("inferpipe", version("inferpipe"), args.store, args.case, metrics)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"))
    parser.add_argument("--case")
    parser.add_argument("--pg-server", default="", help="a postgresql:// URL of a server")
    parser.add_argument("--serve", metavar="URL", help="be a worker process on this database")
    parsed = parser.parse_args()
    if parsed.serve:
        asyncio.run(serve(parsed.serve))
    elif parsed.store is None or parsed.case is None:
        parser.error("--store and --case are required (or --serve)")
    else:
        asyncio.run(main(parsed))
