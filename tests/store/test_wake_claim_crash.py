"""Wake-and-claim survives SIGKILL: a run that a send resumed and took for the sender's worker
(`WakeClaim`, in the send's transaction) is taken over when that process dies with the run's
next step in flight. The step runs again (at least once), the steps recorded before the wait
never run again, and the run completes once with the last execution's result. On a SQLite
file and on PostgreSQL; the side effects are counted in files the steps write.

Set INFERPIPE_CRASH_LOOPS to run each store's case that many times in a row.
"""

from __future__ import annotations

import asyncio
import os
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
from tests.store import wake_claim_app
from tests.store.conftest import PostgresServer

LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))
APP_FILE = Path(wake_claim_app.__file__)

pytestmark = pytest.mark.timeout(120 + 60 * LOOPS)


def _start(url: str, folder: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WAKE_CLAIM_LOG_DIR": str(folder), "INFERPIPE_DATABASE_URL": url}
    err = (folder / f"process-{time.monotonic_ns()}.err").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=err
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
        await asyncio.sleep(0.01)


async def _crash_and_recover(url: str, folder: Path) -> None:
    await asyncio.to_thread(folder.mkdir)
    (folder / "hold").touch()
    observer = ip.App("observer", database=url)
    async with observer:
        sender = _start(url, folder, str(APP_FILE))
        try:

            async def resumed() -> bool:
                return any(key == "after" for key, _ in _executions(folder))

            await _until(resumed)
        finally:
            sender.send_signal(signal.SIGKILL)
            sender.wait()
        (run,) = (await observer.list_runs(limit=5)).items
        # the send took the run for the sender's worker: it held the run when it died
        assert run.status is ip.RunStatus.RUNNING and run.executions == 2
        assert run.lease_owner is not None and f":{sender.pid}:" in run.lease_owner
        (folder / "hold").unlink()

        recovering = _start(
            url, folder, "-m", "inferpipe", "worker", str(APP_FILE), "--lease-ms", "1000"
        )
        try:

            async def finished() -> bool:
                found = await observer.engine.store.get_run(run.id)
                return found is not None and found.status.finished

            await _until(finished)
        finally:
            recovering.send_signal(signal.SIGTERM)
            recovering.wait(timeout=30)
        done = await observer.get_run(run.id)
        assert done.status is ip.RunStatus.COMPLETED, done.error
        executions = _executions(folder)
        counts = Counter(key for key, _ in executions)
        # `before` was durable when the run parked: never again; `after` was in flight at the
        # kill, and runs again (at least once: a busy machine can make a worker lose a lease)
        assert counts["before"] == 1 and counts["after"] >= 2, executions
        last = {key: execution for key, execution in executions}
        assert done.output == [last["before"], 7, last["after"]]
        recorded = await observer.engine.store.get_steps(run.id)
        assert sorted(s.key for s in recorded) == ["after", "before", "go"]


async def test_sigkill_after_a_wake_claim_on_sqlite(tmp_path: Path) -> None:
    for n in range(LOOPS):
        path = tmp_path / f"app-{n}.db"
        made = SQLiteStore(path)
        await made.open()
        await made.close()
        await _crash_and_recover(f"sqlite:///{path}", tmp_path / f"loop-{n}")


async def test_sigkill_after_a_wake_claim_on_postgres(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    for n in range(LOOPS):
        url = await postgres.new_database()
        made = PostgresStore(url)  # migrated before the processes start
        await made.open()
        await made.close()
        await _crash_and_recover(url, tmp_path / f"loop-{n}")
