"""Pipelined step records survive SIGKILL of the worker: the durable journal is a prefix of
the steps, the lost tail is at most the lag bound (`Limits.pipeline_steps`) plus the step in
flight, those steps run again (at least once), every other step ran exactly once, and each
recorded result is the one execution the run then went on with. On a SQLite file and on
PostgreSQL; the side effects are counted in files the steps write, not in the journal.

Set INFERPIPE_CRASH_LOOPS to run each store's case that many times in a row (the kill lands at
another step each time).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from tests.store import pipeline_app
from tests.store.conftest import PostgresServer

LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))
APP_FILE = Path(pipeline_app.__file__)
LAG = ip.Limits().pipeline_steps

pytestmark = pytest.mark.timeout(120 + 60 * LOOPS)


def _worker(url: str, folder: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PIPELINE_TEST_LOG_DIR": str(folder)}
    args = ["worker", str(APP_FILE), "--database", url, "--lease-ms", "1000"]
    err = (folder / f"worker-{time.monotonic_ns()}.err").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "inferpipe", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    finally:
        err.close()


def _executions(folder: Path) -> list[tuple[str, str]]:
    """(step key, execution id) of every step execution, in the order they ran."""
    found: list[tuple[int, str, str]] = []
    for log in folder.glob("exec-*.log"):
        # A line being written may be read half-way (one write, but a read does not wait
        # for it): only whole lines count.
        for line in log.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            key, pid, ns = line.split()
            found.append((int(ns), key, f"{pid}-{ns}"))
    return [(key, run) for _, key, run in sorted(found)]


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.005)


async def _crash_and_recover(url: str, folder: Path, kill_after: int) -> None:
    await asyncio.to_thread(folder.mkdir)
    observer = ip.App("observer", database=url)
    async with observer:
        pipeline_app.app.database = url
        async with pipeline_app.app as client:
            run_id = await client.invoke("many")
        first = _worker(url, folder)
        try:

            async def ran_enough() -> bool:
                return len(_executions(folder)) >= kill_after

            await _until(ran_enough)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        ran_before = [key for key, _ in _executions(folder)]
        durable = [
            s.key
            for s in sorted(await observer.engine.store.get_steps(run_id), key=lambda s: s.seq)
        ]
        steps = [f"s{i}" for i in range(pipeline_app.STEPS)]
        # The durable journal is a prefix: no record committed past one that was lost.
        rows = sorted(await observer.engine.store.get_steps(run_id), key=lambda s: s.seq)
        assert durable == steps[: len(durable)], [(r.key, r.seq, r.started_at_ms) for r in rows][
            :40
        ]
        # The lost tail: the steps that ran and whose records had not reached the disk.
        assert ran_before == steps[: len(ran_before)], "a step ran out of order"
        lost = len(ran_before) - len(durable)
        assert 0 <= lost <= LAG + 1, (len(ran_before), len(durable))

        second = _worker(url, folder)
        try:

            async def finished() -> bool:
                run = await observer.engine.store.get_run(run_id)
                return run is not None and run.status.finished

            await _until(finished)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        run = await observer.get_run(run_id)
        assert run.status is ip.RunStatus.COMPLETED, run.error
        executions = _executions(folder)
        counts = Counter(key for key, _ in executions)
        # Durable at the crash: never again. The others ran at least once (a busy machine can
        # also make the recovering worker give up a lease, which re-runs its unflushed tail).
        assert all(counts[key] == 1 for key in durable)
        assert all(counts[key] >= 1 for key in steps)
        # Each step's recorded result is its last execution, the one the run went on with: a
        # step that ran again after its record was durable would not be.
        last = {key: execution for key, execution in executions}
        assert run.output == [last[key] for key in steps]
        recorded = await observer.engine.store.get_steps(run_id)
        assert sorted(s.key for s in recorded) == sorted(steps), (
            sorted(set(steps) - {s.key for s in recorded}),
            len(durable),
            len(ran_before),
        )
        print(f"killed after {len(ran_before)} steps: {lost} ran again")


def _kill_points() -> list[int]:
    rng = random.Random(18)
    return [rng.randrange(20, pipeline_app.STEPS - 50) for _ in range(LOOPS)]


async def test_sigkill_mid_pipeline_on_sqlite(tmp_path: Path) -> None:
    for n, kill_after in enumerate(_kill_points()):
        path = tmp_path / f"app-{n}.db"
        made = SQLiteStore(path)
        await made.open()
        await made.close()
        await _crash_and_recover(f"sqlite:///{path}", tmp_path / f"loop-{n}", kill_after)


async def test_sigkill_mid_pipeline_on_postgres(postgres: PostgresServer, tmp_path: Path) -> None:
    for n, kill_after in enumerate(_kill_points()):
        url = await postgres.new_database()
        made = PostgresStore(url)  # migrated before the worker starts
        await made.open()
        await made.close()
        await _crash_and_recover(url, tmp_path / f"loop-{n}", kill_after)
