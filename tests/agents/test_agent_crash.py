"""An agent's worker killed with SIGKILL mid-loop: recovery replays the durably recorded model
and tool calls from the journal (no second call), re-runs only the tool that was in flight and
the calls whose records had not reached the disk.

Set INFERPIPE_CRASH_LOOPS to run the kill cases that many times in a row."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import inferpipe as ip
from tests.agents import crash_agent_app

APP_FILE = Path(crash_agent_app.__file__)
LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))
WAIT_S = 120.0
"""How long a case waits for a worker to reach a point: a bound for a hang, not a timing test."""
LEASE = ["--lease-ms", "1000"]  # a killed worker's runs are taken over after a second


def start_worker(db: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--database", db, *LEASE],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("round_", range(LOOPS))
async def test_sigkill_mid_loop_recovers_without_repeating_recorded_calls(
    tmp_path: Path, round_: int
) -> None:
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    log, hold = tmp_path / "calls.log", tmp_path / "hold"
    env = {**os.environ, "AGENT_LOG": str(log), "AGENT_HOLD": str(hold)}
    hold.touch()
    crash_agent_app.app.database = db
    async with crash_agent_app.app as app:
        first = start_worker(db, env)
        try:
            run_id = await app.invoke("crash-agent", {"input": "go"})
            await wait_for(lambda: log.exists() and "tool-hold" in log.read_text().split())
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        # Step records are pipelined: the last ones may still have been on their way to disk.
        before = ["turn-1", "tool-fetch", "turn-2"]
        durable = [s.key for s in await app.steps(run_id)]
        assert durable == before[: len(durable)]

        hold.unlink()
        second = start_worker(db, env)
        try:
            await wait_for_finished(app, run_id)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=20) == 0
        run = await app.get_run(run_id)
        assert run.status is ip.RunStatus.COMPLETED, run.error
        assert run.output["output"] == "fetched a + held b"
        keys = [s.key for s in await app.steps(run_id)]
        assert keys == ["turn-1", "tool-fetch", "turn-2", "tool-hold", "turn-3"]
    # Durable before the crash: not called again. tool-hold was in flight, and so were the
    # calls whose records had not reached the disk: at least once. Everything after: once.
    calls = {"turn-1": "model-1", "tool-fetch": "tool-fetch", "turn-2": "model-2"}
    again = [calls[key] for key in before if key not in durable]
    assert log.read_text().split() == [
        "model-1",
        "tool-fetch",
        "model-2",
        "tool-hold",
        *again,
        "tool-hold",
        "model-3",
    ]


async def wait_for_finished(app: ip.App, run_id: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not (await app.get_run(run_id)).status.finished:
        assert asyncio.get_running_loop().time() < deadline, "run did not finish after recovery"
        await asyncio.sleep(0.1)
