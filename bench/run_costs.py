"""What a run costs, counted: the work that load does not change, beside its time.

    .venv/bin/python -m bench.run_costs [--store sqlite|postgres] [--case w4|w2|w1]
        [--runs N] [--pg-server URL]

A peer benchmark case (a worker of this process executing the runs), on a fresh database:
w4 (the default: `app.invoke` of a function with no step, then `app.result`, one run after
another, 300 of them: start-and-claim), w2 (`--runs` runs of 10 async no-op steps, 1000 by
default, started at once with `app.invoke` on a worker of concurrency 1000, then awaited: the
peer table's w2-start) or w1 (one run of `--runs` steps, 1000 by default). Three passes:

1. timed, with nothing counted: p50 and mean start -> result, and CPU ms per run, of the
   process and of each thread that used any (the event loop's; SQLite's writer thread), and
   per step for w2 and w1, with the steps per second;
2. counted, per run (and per step for w2 and w1): statements sent to the database and the
   commits among them (SQLite: the connection's trace callback sees every statement, BEGIN
   and COMMIT included; PostgreSQL: every query asyncpg sends, BEGIN and COMMIT included; an
   autocommitted statement counts no commit), the SQLite store's write jobs, those handed to
   its writer thread and the thread's wake-ups of the event loop (the run's thread hand-offs:
   a brief write that finds the connection idle runs on the loop's thread, with none), the
   loop's turns and callbacks, and the asyncio tasks created;
3. under cProfile: Python calls per run (and per step) on the loop's thread.

A figure from a loaded machine is noise, the counts are not (the load average is printed
before and after). PostgreSQL: a database of its own on `--pg-server`, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import dataclasses
import os
import pstats
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import inferpipe as ip
from bench import asyncpg_trips, scratch
from bench.peers.common import W2_STEPS
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
    connect, settle, submit, handed = (
        database.Database._connect,
        database._settle,
        database.Database._submit,
        database.Database._queue,
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

    def counted_queue(self: database.Database, jobs: list[Any], **kw: Any) -> None:
        _count("jobs handed to the writer thread", len(jobs))
        handed(self, jobs, **kw)

    def counted_settle(outcomes: list[Any]) -> None:
        _count("writer -> loop wake-ups", len({job.loop for job, _, _ in outcomes}))
        settle(outcomes)

    database.Database._connect = traced_connect  # type: ignore[method-assign]
    database.Database._submit = counted_submit  # type: ignore[method-assign]
    database.Database._queue = counted_queue  # type: ignore[method-assign]
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

    def counted_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any
    ) -> asyncio.Task[Any]:
        _count("tasks")
        return asyncio.Task(coro, loop=loop, **kw)

    loop._run_once = counted_run_once  # type: ignore[attr-defined]
    asyncio.events.Handle._run = counted_handle_run  # type: ignore[method-assign]
    loop.set_task_factory(counted_task)  # type: ignore[arg-type]


def _thread_cpu_s() -> dict[str, float]:
    """CPU seconds of each thread of this process (Linux), by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        out[names.get(int(tid), tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


@dataclasses.dataclass(frozen=True)
class Case:
    """A workload: how many runs of how many steps, and how they are started."""

    name: str
    runs: int
    steps: int  #: per run
    at_once: bool  #: every run started before any is awaited (w2), else one after another

    @property
    def concurrency(self) -> int:
        return self.runs if self.at_once else 100

    def per(self, n: float) -> str:
        """`n` per run, and per step when the runs have steps."""
        if self.steps == 0:
            return f"{n / self.runs:.2f}"
        return f"{n / self.runs:.2f} ({n / (self.runs * self.steps):.3f}/step)"


def _case(name: str, runs: int | None) -> Case:
    if name == "w2":
        return Case(name, runs or 1000, W2_STEPS, at_once=True)
    if name == "w1":
        return Case(name, 1, runs or 1000, at_once=False)
    return Case(name, runs or 300, 0, at_once=False)


async def _runs(app: ip.App, case: Case) -> list[float]:
    """Each run's start -> result time (w2: each run's start -> all results)."""
    expect = case.steps * (case.steps - 1) // 2
    if case.at_once:
        t0 = time.perf_counter()
        ids = [await app.invoke("steps", {"n": case.steps}) for _ in range(case.runs)]
        took = []
        for run_id in ids:
            run = await app.result(run_id, timeout=120)
            assert run.status is ip.RunStatus.COMPLETED and run.output == expect
            took.append(time.perf_counter() - t0)
        return took
    took = []
    for _ in range(case.runs):
        t0 = time.perf_counter()
        if case.steps:
            run = await app.result(await app.invoke("steps", {"n": case.steps}), timeout=120)
        else:
            run = await app.result(await app.invoke("empty"), timeout=60)
        took.append(time.perf_counter() - t0)
        assert run.status is ip.RunStatus.COMPLETED and run.output == expect
    return took


async def measure(url: str, case: Case) -> None:
    app = build_app()
    app.database = url
    await app.start()
    worker = app.worker(concurrency=case.concurrency)
    task = asyncio.create_task(worker.run())
    warmup = dataclasses.replace(case, runs=WARMUP, steps=min(case.steps, 10), at_once=False)
    try:
        await _runs(app, warmup)
        cpu0, threads0, t0 = time.process_time(), _thread_cpu_s(), time.perf_counter()
        took = sorted(await _runs(app, case))
        wall = time.perf_counter() - t0
        cpu, threads = time.process_time() - cpu0, _thread_cpu_s()
        ms = 1e3 / case.runs
        print(
            f"timed:   p50 {statistics.median(took) * 1e3:.3f} ms, mean"
            f" {statistics.fmean(took) * 1e3:.3f} ms, CPU {cpu * ms:.3f} ms per run ("
            + ", ".join(
                f"{name} {(s - threads0.get(name, 0.0)) * ms:.3f}"
                for name, s in threads.items()
                if s > threads0.get(name, 0.0)
            )
            + ")"
        )
        if case.steps:
            steps = case.runs * case.steps
            print(
                f"         {steps / wall:.0f} steps/s, CPU {cpu / steps * 1e3:.4f} ms per step,"
                f" {wall / steps * 1e6:.1f} us of wall time per step"
            )
        loop = asyncio.get_running_loop()
        _count_loop(loop)
        _counts.on = True
        await _runs(app, case)
        _counts.on = False
        print(
            "counted: "
            + ", ".join(f"{k} {case.per(v)}" for k, v in sorted(_counts.by_name.items()))
        )
        profile = cProfile.Profile()
        profile.enable()
        await _runs(app, case)
        profile.disable()
        calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
        print(f"profiled: {case.per(calls)} Python calls per run on the event loop's thread")
    finally:
        worker.notify_shutdown()
        await task
        await app.close()


async def main(args: argparse.Namespace) -> None:
    case = _case(args.case, args.runs)
    if args.store == "sqlite":
        _instrument_sqlite()
        folder = tempfile.mkdtemp(prefix="inferpipe-run-costs-")
        try:
            await measure(f"sqlite:///{folder}/bench.db", case)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    async with scratch.database_on(args.pg_server, "run_costs") as url:
        with asyncpg_trips.traced(_count_round_trip):
            await measure(url, case)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--case", choices=("w4", "w2", "w1"), default="w4")
    parser.add_argument(
        "--runs", type=int, help="runs (w1: steps of its one run); 300 for w4, else 1000"
    )
    parser.add_argument("--pg-server", default="", help="a postgresql:// URL of a server")
    parsed = parser.parse_args()
    if parsed.store == "postgres" and not parsed.pg_server:
        parser.error("--store postgres needs --pg-server")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    asyncio.run(main(parsed))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
