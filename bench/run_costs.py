"""What a zero-step run costs, counted: the work that load does not change, beside its time.

    .venv/bin/python -m bench.run_costs [--store sqlite|postgres] [--runs 300] [--pg-server URL]

The peer benchmark's w4 path (`app.invoke` of a function with no step, then `app.result`, a
worker of this process executing it: start-and-claim), on a fresh database, in three passes:

1. timed, with nothing counted: p50 and mean start -> result, and CPU ms per run, of the
   process and of each thread that used any (the event loop's; SQLite's writer thread);
2. counted, per run: statements sent to the database and the commits among them (SQLite: the
   connection's trace callback sees every statement, BEGIN and COMMIT included; PostgreSQL:
   every query asyncpg sends, BEGIN and COMMIT included; an autocommitted statement counts no
   commit), the SQLite writer thread's jobs and its wake-ups of the event loop (a job handed
   to the thread and its answer handed back are the run's thread hand-offs), and the loop's
   turns and callbacks;
3. under cProfile: Python calls per run on the loop's thread.

A figure from a loaded machine is noise, the counts are not (the load average is printed
before and after). PostgreSQL: a database of its own on `--pg-server`, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import pstats
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

import inferpipe as ip
from bench import asyncpg_trips
from bench.peers.inferpipe_side import build_app
from inferpipe.store.sqlite import database

WARMUP = 30


class _Counts:
    """What the instrumented calls count, while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.by_name: collections.Counter[str] = collections.Counter()


_counts = _Counts()


def _count(name: str, n: int = 1) -> None:
    if _counts.on:
        _counts.by_name[name] += n


def _instrument_sqlite() -> None:
    connect, settle, submit = (
        database.Database._connect,
        database._settle,
        database.Database._submit,
    )

    def traced_connect(self: database.Database) -> sqlite3.Connection:
        conn = connect(self)

        def statement(sql: str) -> None:
            _count("statements")
            _count("commits", sql.lstrip().upper().startswith("COMMIT"))

        conn.set_trace_callback(statement)
        return conn

    async def counted_submit(self: database.Database, fn: Any, **kw: Any) -> Any:
        _count("writer jobs" if kw.get("write") else "reader jobs")
        return await submit(self, fn, **kw)

    def counted_settle(outcomes: list[Any]) -> None:
        _count("writer -> loop wake-ups", len({job.loop for job, _, _ in outcomes}))
        settle(outcomes)

    database.Database._connect = traced_connect  # type: ignore[method-assign]
    database.Database._submit = counted_submit  # type: ignore[method-assign]
    database._settle = counted_settle


def _count_round_trip(t0: float, t1: float, query: str) -> None:
    _count("statements")
    _count("commits", query.lstrip().upper().startswith("COMMIT"))


def _count_loop(loop: asyncio.AbstractEventLoop) -> None:
    run_once: Callable[[], None] = loop._run_once  # type: ignore[attr-defined]
    handle_run = asyncio.events.Handle._run

    def counted_run_once() -> None:
        _count("loop turns")
        run_once()

    def counted_handle_run(self: asyncio.Handle) -> None:
        _count("loop callbacks")
        handle_run(self)

    loop._run_once = counted_run_once  # type: ignore[attr-defined]
    asyncio.events.Handle._run = counted_handle_run  # type: ignore[method-assign]


def _thread_cpu_s() -> dict[str, float]:
    """CPU seconds of each thread of this process (Linux), by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        out[names.get(int(tid), tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


async def _runs(app: ip.App, n: int) -> list[float]:
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        run = await app.result(await app.invoke("empty"), timeout=60)
        took.append(time.perf_counter() - t0)
        assert run.status is ip.RunStatus.COMPLETED
    return took


async def measure(url: str, n: int) -> None:
    app = build_app()
    app.database = url
    await app.start()
    worker = app.worker(concurrency=100)
    task = asyncio.create_task(worker.run())
    try:
        await _runs(app, WARMUP)
        cpu0, threads0 = time.process_time(), _thread_cpu_s()
        took = sorted(await _runs(app, n))
        cpu, threads = time.process_time() - cpu0, _thread_cpu_s()
        print(
            f"timed:   p50 {statistics.median(took) * 1e3:.3f} ms, mean"
            f" {statistics.fmean(took) * 1e3:.3f} ms, CPU {cpu / n * 1e3:.3f} ms per run ("
            + ", ".join(
                f"{name} {(s - threads0.get(name, 0.0)) / n * 1e3:.3f}"
                for name, s in threads.items()
                if s > threads0.get(name, 0.0)
            )
            + ")"
        )
        _count_loop(asyncio.get_running_loop())
        _counts.on = True
        await _runs(app, n)
        _counts.on = False
        print(
            "counted: " + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(_counts.by_name.items()))
        )
        profile = cProfile.Profile()
        profile.enable()
        await _runs(app, n)
        profile.disable()
        calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
        print(f"profiled: {calls / n:.0f} Python calls per run on the event loop's thread")
    finally:
        worker.notify_shutdown()
        await task
        await app.close()


async def main(args: argparse.Namespace) -> None:
    if args.store == "sqlite":
        _instrument_sqlite()
        folder = tempfile.mkdtemp(prefix="inferpipe-run-costs-")
        try:
            await measure(f"sqlite:///{folder}/bench.db", args.runs)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"run_costs_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(args.pg_server)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    try:
        with asyncpg_trips.traced(_count_round_trip):
            await measure(args.pg_server.rsplit("/", 1)[0] + f"/{name}", args.runs)
    finally:
        conn = await asyncpg.connect(args.pg_server)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--pg-server", default="", help="a postgresql:// URL of a server")
    parsed = parser.parse_args()
    if parsed.store == "postgres" and not parsed.pg_server:
        parser.error("--store postgres needs --pg-server")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    asyncio.run(main(parsed))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
