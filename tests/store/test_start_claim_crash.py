"""Start-and-claim survives SIGKILL, on PostgreSQL. A process invokes runs with a worker of its
own, so each run is inserted already claimed by that worker (`Store.start_run`), and is killed:
while its invokes insert the runs, once every run is inserted (each at its first step), or with
every run at its fourth step. Another such process, invoking runs of its own meanwhile, takes the
killed one's runs over once their leases end and finishes every run.

Afterwards every step made its side effect at least once (counted in the files the steps write,
`cluster.SideEffects`), no recorded step started again, each run recorded one result per step,
each that of an execution the files show, and returned them; no run is lost (every invoke that
returned has its run, and every run inserted completed) and none is stuck; and the surviving
process's waiters got each of its runs' results, handed over in-process.

Set INFERPIPE_CRASH_LOOPS to run each case that many times in a row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inferpipe.core.records import StepStatus
from inferpipe.store.postgres import PostgresStore
from tests.store import pg_app
from tests.store.cluster import LEASE_MS, Cluster, SideEffects, eventually, verify
from tests.store.conftest import PostgresServer

LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))
ROOT = Path(__file__).parents[2]
RUNS = 20
"""Runs each process invokes, one after another: as many as its worker has slots."""
STEP_MS = 50

pytestmark = pytest.mark.timeout(300)

KILLED_AT = {"invoking": "s0", "inserted": "s0", "executing": "s3"}
"""When the first process is killed, and the step its runs are held at until then."""


@pytest.fixture
async def cluster(own_postgres: PostgresServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await own_postgres.new_database()
    store = PostgresStore(url)  # migrate once before the processes race to do it
    await store.open()
    await store.close()
    made = Cluster(url, tmp_path, step_ms=STEP_MS)
    try:
        yield made
    finally:
        made.stop_all()
        await made.close()


def _start_starter(cluster: Cluster, name: str, hold_step: str | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STARTER_DATABASE_URL": cluster.url,
        "STARTER_RUNS": str(RUNS),
        "STARTER_CONCURRENCY": str(RUNS),
        "STARTER_LEASE_MS": str(LEASE_MS),
        "STARTER_REPORT": str(cluster.folder / f"{name}.report"),
        "PG_TEST_LOG_DIR": str(cluster.folder),
        "PG_TEST_STEP_MS": str(STEP_MS),
    }
    if hold_step is not None:
        env |= {"PG_TEST_HOLD": str(cluster.folder / "hold"), "PG_TEST_HOLD_STEP": hold_step}
    err = (cluster.folder / f"{name}.err").open("wb")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.store.starter_app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    finally:
        err.close()
    cluster.workers.append(proc)
    return proc


def _reported(cluster: Cluster, name: str, kind: str) -> list[list[str]]:
    path = cluster.folder / f"{name}.report"
    lines = path.read_text().splitlines() if path.exists() else []
    return [fields[1:] for fields in map(str.split, lines) if fields[0] == kind]


def _at_step(cluster: Cluster, pid: int, key: str) -> set[str]:
    """The runs whose step `key` process `pid` started."""
    return {
        run_id
        for run_id, executions in SideEffects.read(cluster.folder).by_run.items()
        if any(e.pid == pid and e.key == key and e.phase == "start" for e in executions)
    }


async def _kill_when_due(cluster: Cluster, first: subprocess.Popen[bytes], kill_at: str) -> None:
    async def due() -> bool:
        if first.poll() is not None:
            raise AssertionError(f"the first process died\n{cluster.errors()}")
        invoked = {run_id for (run_id,) in _reported(cluster, "first", "invoked")}
        if kill_at == "invoking":
            return len(invoked) >= RUNS // 4
        return len(invoked) == RUNS and invoked <= _at_step(cluster, first.pid, KILLED_AT[kill_at])

    await eventually(due)
    first.send_signal(signal.SIGKILL)
    first.wait()


async def _check_recorded_once(cluster: Cluster, effects: SideEffects) -> None:
    """Each run has one record per step, the result of an execution the files show (its `done`
    id), and the run returned those results."""
    done = {
        (run_id, e.key, f"{e.pid}-{e.ns}")
        for run_id, executions in effects.by_run.items()
        for e in executions
        if e.phase == "done"
    }
    store = PostgresStore(cluster.url)
    await store.open()
    try:
        for run_id, _, _ in await cluster.runs():
            steps = sorted(await store.get_steps(run_id), key=lambda s: s.key)
            assert [s.key for s in steps] == [f"s{i}" for i in range(pg_app.STEPS)], run_id
            assert all(s.status is StepStatus.COMPLETED for s in steps), run_id
            unseen = [s.key for s in steps if (run_id, s.key, s.output) not in done]
            assert not unseen, f"{run_id}: results of no execution the files show: {unseen}"
            run = await store.get_run(run_id)
            assert run is not None and run.output == [s.output for s in steps], run_id
    finally:
        await store.close()


@pytest.mark.parametrize("loop", range(LOOPS))
@pytest.mark.parametrize("kill_at", list(KILLED_AT))
async def test_a_starter_killed_hands_its_runs_over(
    cluster: Cluster, kill_at: str, loop: int
) -> None:
    (cluster.folder / "hold").touch()
    first = _start_starter(cluster, "first", KILLED_AT[kill_at])
    await _kill_when_due(cluster, first, kill_at)
    killed_at = time.monotonic()
    invoked = {run_id for (run_id,) in _reported(cluster, "first", "invoked")}
    held = set(await cluster.held_by(first))
    if kill_at != "invoking":  # every run was inserted claimed by it, none could finish
        assert held == invoked and len(invoked) == RUNS
    second = _start_starter(cluster, "second", None)

    async def all_done() -> bool:
        if second.poll() is not None:
            raise AssertionError(f"the second process died\n{cluster.errors()}")
        results = _reported(cluster, "second", "result")
        rows = await cluster.runs()
        return len(results) == RUNS and all(status == "completed" for _, status, _ in rows)

    async def stuck() -> str:
        unfinished = [r for r, status, _ in await cluster.runs() if status != "completed"]
        return f"{await cluster.describe(unfinished)}\n{cluster.errors()}"

    await eventually(all_done, describe=stuck)
    finished_s = time.monotonic() - killed_at
    rows = await cluster.runs()
    assert invoked <= {run_id for run_id, _, _ in rows}, "an invoke returned, its run is lost"
    assert all(status == "completed" for _, status in _reported(cluster, "second", "result"))
    effects = await verify(cluster, len(rows))
    await _check_recorded_once(cluster, effects)
    print(
        f"\nstarter SIGKILLed {kill_at} ({len(held)} runs held, {len(rows)} in all): finished"
        f" {finished_s:.2f} s after the kill (lease {LEASE_MS} ms); side effects repeated:"
        f" {effects.duplicated()}"
    )
