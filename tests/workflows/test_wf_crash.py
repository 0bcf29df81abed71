"""A worker killed (SIGKILL) mid-graph: after recovery the run completes, and the nodes that
had finished before the crash are not run again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import inferpipe as ip
from tests.workflows import wf_crash_app

APP_FILE = Path(wf_crash_app.__file__)
DEADLINE_S = 90.0
"""Generous: worker processes start slowly on a loaded 2-core machine."""


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--lease-ms", "1000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"{what} not reached in time"
        await asyncio.sleep(0.05)


async def test_worker_killed_mid_graph_then_recovery(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    log, hold = tmp_path / "nodes.log", tmp_path / "hold"
    env = {**os.environ, "INFERPIPE_DATABASE_URL": db}
    env.update(WF_CRASH_LOG=str(log), WF_CRASH_HOLD=str(hold))
    hold.touch()
    wf_crash_app.app.database = db
    async with wf_crash_app.app as app:
        await wf_crash_app.runtime.save(wf_crash_app.GRAPH)
        run_id = await wf_crash_app.runtime.run("crashy", {"q": "x"})
        first = start_worker(env)

        async def slow_started() -> bool:
            return log.exists() and "slow" in log.read_text().split()

        try:
            await eventually(slow_started, "the slow node")
        finally:
            first.send_signal(signal.SIGKILL)  # also when the wait failed: leave no worker
            first.wait()
        before = await app.get_run(run_id)
        assert before.status is ip.RunStatus.RUNNING
        # Step records are pipelined: the last ones may still have been on their way to disk;
        # what is durable is a prefix of the order they were recorded in.
        recorded = [s.key for s in await app.steps(run_id)]
        assert recorded[:1] in ([], ["resolve-graph"])
        assert set(recorded) <= {"resolve-graph", "node-a-task", "node-b-task"}

        hold.unlink()
        second = start_worker(env)
        try:

            async def finished() -> bool:
                return (await app.get_run(run_id)).status.finished

            await eventually(finished, "the run's end")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=20) == 0
        run = await app.get_run(run_id)
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {"a": "a-x", "c": "c", "slow": "slow"}
    lines = log.read_text().split()
    # a and b finished before the crash: not again if their records were durable. slow was in
    # flight: at least once. c: once.
    lost = [
        name for key, name in (("node-a-task", "a-x"), ("node-b-task", "b")) if key not in recorded
    ]
    assert sorted(lines[:2]) == ["a-x", "b"]
    assert lines[2] == "slow"
    assert sorted(lines[3 : 3 + len(lost)]) == sorted(lost)
    assert lines[3 + len(lost) :] == ["slow", "c"]
