"""Limits hold across worker processes: two workers on one database (a SQLite file, or
PostgreSQL) never run two steps of one key at once (per-key concurrency 1), checked from the
times each step logged."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.store.base import RunFilter
from tests.flow import overlap_app

APP_FILE = Path(overlap_app.__file__)
KEYS = ["a", "b", "c", "d"]
RUNS_PER_KEY = 6


def start_worker(env: dict[str, str], banner: Path) -> subprocess.Popen[bytes]:
    # Two slots each, for four keys: neither worker can hold every key at once.
    with banner.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--concurrency", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


async def _started(banners: list[Path], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not all(b.exists() and "functions:" in b.read_text() for b in banners):
        assert asyncio.get_running_loop().time() < deadline, "workers did not start"
        await asyncio.sleep(0.05)


async def test_two_worker_processes_never_overlap_a_key(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        db = f"sqlite:///{tmp_path / 'flow.db'}"
    else:  # a database of its own: the workers use the default workspace
        db = await request.getfixturevalue("postgres").new_database()
    log = tmp_path / "steps.log"
    env = {**os.environ, "INFERPIPE_DATABASE_URL": db, "FLOW_LOG": str(log)}
    overlap_app.app.database = db
    async with overlap_app.app as app:  # creates the schema before the workers start
        banners = [tmp_path / "worker1.err", tmp_path / "worker2.err"]
        workers = [start_worker(env, banner) for banner in banners]
        try:
            await _started(banners)  # both poll the file: the first runs go to each
            await app.send([ip.Event("job", {"k": k}) for _ in range(RUNS_PER_KEY) for k in KEYS])
            await _all_completed(app, len(KEYS) * RUNS_PER_KEY)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(timeout=20) for worker in workers]
    assert codes == [0, 0]
    spans: dict[str, list[tuple[int, int]]] = {}
    pids = set()
    for line in log.read_text().splitlines():
        key, start, end, pid = line.split()
        spans.setdefault(key, []).append((int(start), int(end)))
        pids.add(pid)
    assert sorted(spans) == KEYS and all(len(s) == RUNS_PER_KEY for s in spans.values())
    for key, times in spans.items():
        times.sort()
        for (_, ended_ns), (started_ns, _) in itertools.pairwise(times):
            assert started_ns >= ended_ns, f"two steps of key {key} overlapped"
    assert len(pids) == 2, "both worker processes took runs"


async def _all_completed(app: ip.App, n: int, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        page = await app.list_runs(RunFilter(function_id="per-key"), limit=n)
        if sum(1 for r in page.items if r.status is ip.RunStatus.COMPLETED) == n:
            return
        assert asyncio.get_running_loop().time() < deadline, "runs did not complete in time"
        await asyncio.sleep(0.05)
