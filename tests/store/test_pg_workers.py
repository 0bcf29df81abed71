"""Several worker processes on one PostgreSQL database: a worker killed with SIGKILL, a server
restarted mid-run, cron raced by every worker. Each run of `pg_app.five-steps` logs every step
execution; the journal must name the last execution of each step (a recorded step never runs
again), every run must complete, and none may be left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest

import inferpipe as ip
from inferpipe.core.records import NewRun
from inferpipe.store.base import PlannedEvent
from inferpipe.store.postgres import PostgresStore
from tests.store import pg_app
from tests.store.conftest import PostgresServer, launch_postgres

APP_FILE = Path(pg_app.__file__)
RUNS = int(os.environ.get("INFERPIPE_PG_WORKERS_RUNS", "1000"))
"""Runs per scenario (1000 as the issue asks; lower it on a slow machine)."""
WORKERS = 3
LEASE_MS = 2000
DEADLINE_S = 90.0


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A server of this module's own: the restart test must not cut other tests' connections."""
    made, stop = launch_postgres()
    try:
        yield made
    finally:
        stop()


class Cluster:
    """Worker processes of `pg_app` on one database, and an observer connection."""

    def __init__(self, url: str, folder: Path, conn: asyncpg.Connection) -> None:
        self.url = url
        self.folder = folder
        self.conn = conn
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self, *, cron: bool = False) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PG_TEST_LOG_DIR": str(self.folder),
            "PG_TEST_CRON": "1" if cron else "0",
        }
        err = (self.folder / f"worker-{len(self.workers)}.err").open("wb")
        args = ["worker", str(APP_FILE), "--database", self.url, "--lease-ms", str(LEASE_MS)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferpipe", *args, "--concurrency", "50"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        err.close()
        self.workers.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def statuses(self, function_id: str = "five-steps") -> dict[str, int]:
        rows = await self.conn.fetch(
            "SELECT status, count(*) FROM runs WHERE function_id = $1 GROUP BY status",
            function_id,
        )
        return {r[0]: r[1] for r in rows}

    async def completed(self) -> int:
        return (await self.statuses()).get("completed", 0)

    async def send_load(self, runs: int) -> None:
        app = pg_app.build_app()
        await app.start(store=PostgresStore(self.url))
        try:
            for first in range(0, runs, 200):
                batch = range(first, min(runs, first + 200))
                await app.send([ip.Event("load/item", {"i": i}) for i in batch])
        finally:
            await app.close()


@pytest.fixture
async def cluster(server: PostgresServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await server.new_database()
    # Migrate once before the workers race to do it (they would wait on the advisory lock).
    store = PostgresStore(url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(url)
    made = Cluster(url, tmp_path, conn)
    try:
        yield made
    finally:
        made.stop_all()
        await made.conn.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = DEADLINE_S) -> None:
    """Poll an outside observation (other processes do the work) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s")
        await asyncio.sleep(0.1)


async def verify_exactly_once(cluster: Cluster, runs: int) -> dict[str, int]:
    """Every run completed; each recorded step is the last execution of that step.
    Returns how many step executions were repeated (in flight at a crash: at least once)."""
    assert await cluster.statuses() == {"completed": runs}
    rows = await cluster.conn.fetch(
        "SELECT s.run_id, s.key, s.output FROM steps s JOIN runs r ON r.id = s.run_id"
        " WHERE r.function_id = 'five-steps'"
    )
    recorded = {(r[0], r[1]): orjson.loads(r[2]) for r in rows}
    assert len(recorded) == runs * pg_app.STEPS
    executions: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for log in cluster.folder.glob("exec-*.log"):
        for line in log.read_text().splitlines():
            run_id, key, exec_id = line.split()
            executions[(run_id, key)].append((int(exec_id.split("-")[1]), exec_id))
    for step_key, winner in recorded.items():
        ran = sorted(executions[step_key])
        assert ran and ran[-1][1] == winner, f"recorded step {step_key} executed again: {ran}"
    repeated = sum(len(v) - 1 for v in executions.values())
    by_pid: dict[str, int] = defaultdict(int)
    for ran in executions.values():
        for _, exec_id in sorted(ran)[:-1]:
            by_pid[exec_id.split("-")[0]] += 1
    return {"repeated": repeated, **by_pid}


async def test_sigkill_one_of_three_workers(cluster: Cluster) -> None:
    for _ in range(WORKERS):
        cluster.start_worker()
    started = time.monotonic()
    await cluster.send_load(RUNS)
    await eventually(lambda: _at_least(cluster, RUNS * 3 // 10))
    busiest: list[tuple[subprocess.Popen[bytes], list[str]]] = []

    async def holding() -> bool:  # a worker is in the middle of some runs
        busiest[:] = [await _busiest_worker(cluster)]
        return bool(busiest[0][1])

    await eventually(holding)
    victim, held_ids = busiest[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()

    await eventually(lambda: _all_finished(cluster, held_ids))
    takeover_s = time.monotonic() - killed_at
    await eventually(lambda: _at_least(cluster, RUNS))
    elapsed_s = time.monotonic() - started
    repeats = await verify_exactly_once(cluster, RUNS)
    # Only the killed worker's steps in flight may have run twice.
    assert set(repeats) <= {"repeated", str(victim.pid)}
    print(
        f"\nSIGKILL: {RUNS} runs x {pg_app.STEPS} steps on {WORKERS} workers in {elapsed_s:.1f} s;"
        f" {len(held_ids)} runs held by the killed worker all finished {takeover_s:.1f} s after"
        f" the kill (lease {LEASE_MS} ms); repeated executions: {repeats['repeated']}"
    )


async def test_postgres_restart_mid_run(cluster: Cluster, server: PostgresServer) -> None:
    for _ in range(WORKERS):
        cluster.start_worker()
    started = time.monotonic()
    await cluster.send_load(RUNS)
    await eventually(lambda: _at_least(cluster, RUNS * 3 // 10))
    await asyncio.to_thread(server.restart)
    await cluster.conn.close()
    cluster.conn = await asyncpg.connect(cluster.url)
    await eventually(lambda: _at_least(cluster, RUNS))
    elapsed_s = time.monotonic() - started
    repeats = await verify_exactly_once(cluster, RUNS)
    assert all(proc.poll() is None for proc in cluster.workers), "a worker died"
    print(
        f"\nrestart: {RUNS} runs x {pg_app.STEPS} steps on {WORKERS} workers in {elapsed_s:.1f} s"
        f" across `pg_ctl restart -m immediate`; repeated executions: {repeats['repeated']}"
    )


async def test_cron_with_three_workers_fires_once_per_tick(cluster: Cluster) -> None:
    for _ in range(WORKERS):
        cluster.start_worker(cron=True)
    all_up_ms = int(time.time() * 1000) + 3000  # every worker is running by then

    async def enough_ticks() -> bool:
        count = await cluster.conn.fetchval(
            "SELECT count(*) FROM events WHERE name = 'inferpipe/scheduled.tick' AND ts_ms >= $1",
            all_up_ms,
        )
        return int(count) >= 4

    await eventually(enough_ticks, timeout_s=30)
    cluster.stop_all()
    rows = await cluster.conn.fetch(
        "SELECT (input->0->'data'->>'tick_ms')::bigint AS tick, count(*) FROM runs"
        " WHERE function_id = 'every-second' GROUP BY tick ORDER BY tick"
    )
    ticks = {r[0]: r[1] for r in rows}
    assert ticks and all(n == 1 for n in ticks.values()), ticks
    late = sorted(t for t in ticks if t >= all_up_ms)
    assert late == list(range(late[0], late[-1] + 1, 1000)), "a tick was skipped"
    assert len(late) >= 4


async def test_listener_reconnects_after_restart(cluster: Cluster, server: PostgresServer) -> None:
    store = PostgresStore(cluster.url, "listening")
    await store.open()
    woken = asyncio.Event()
    unlisten = await store.listen(woken.set)
    try:
        await asyncio.to_thread(server.restart)
        await asyncio.wait_for(woken.wait(), timeout=30)  # called once reconnected
        woken.clear()
        sender = PostgresStore(cluster.url, "listening")
        await sender.open()
        try:
            event = ip.Event("x", id="e1", ts_ms=1)
            await sender.ingest([PlannedEvent(event, [NewRun("r1", "f", ["e1"], [], 0)])], 1)
        finally:
            await sender.close()
        await asyncio.wait_for(woken.wait(), timeout=10)
    finally:
        await unlisten()
        await store.close()
        await cluster.conn.close()
        cluster.conn = await asyncpg.connect(cluster.url)


async def _busiest_worker(cluster: Cluster) -> tuple[subprocess.Popen[bytes], list[str]]:
    """The live worker holding the most running runs (lease owners are `host:pid:suffix`)."""
    rows = await cluster.conn.fetch("SELECT id, lease_owner FROM runs WHERE status = 'running'")
    by_pid: dict[int, list[str]] = defaultdict(list)
    for run_id, owner in rows:
        by_pid[int(owner.split(":")[1])].append(run_id)
    live = [p for p in cluster.workers if p.poll() is None]
    best = max(live, key=lambda p: len(by_pid.get(p.pid, [])))
    return best, by_pid.get(best.pid, [])


async def _at_least(cluster: Cluster, runs: int) -> bool:
    return await cluster.completed() >= runs


async def _all_finished(cluster: Cluster, run_ids: list[str]) -> bool:
    left = await cluster.conn.fetchval(
        "SELECT count(*) FROM runs WHERE id = ANY($1::text[]) AND status <> 'completed'", run_ids
    )
    return int(left) == 0
