"""A worker killed while a scorer runs: the score still arrives, once, and the parent's
outcome is untouched."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import inferpipe as ip
from inferpipe.store.base import RunFilter
from tests.scoring import scorer_crash_app

APP_FILE = Path(scorer_crash_app.__file__)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--lease-ms", "1000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_scorer_killed_mid_judgement_scores_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'scorer.db'}"
    log, hold = tmp_path / "judge.log", tmp_path / "hold"
    env = {
        **os.environ,
        "INFERPIPE_DATABASE_URL": db,
        "CRASH_LOG": str(log),
        "CRASH_HOLD": str(hold),
    }
    hold.touch()
    scorer_crash_app.app.database = db
    async with scorer_crash_app.app as app:
        first = start_worker(env)
        parent_id = await app.invoke("answer")

        async def judging() -> bool:
            return log.exists() and "judge" in log.read_text()

        await until(judging)
        first.send_signal(signal.SIGKILL)
        first.wait()
        parent = await app.get_run(parent_id)
        assert parent.status is ip.RunStatus.COMPLETED and parent.output == "42"
        hold.unlink()
        second = start_worker(env)
        try:

            async def scored() -> bool:
                return bool(await app.scores(run_id=parent_id))

            await until(scored)
            (scorer_run,) = (await app.list_runs(RunFilter(function_id="slow-judge"))).items
            await until(lambda: _finished(app, scorer_run.id))
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=20)
        scores = await app.scores(run_id=parent_id)
        assert [(s.name, s.value, s.scorer_id) for s in scores] == [("judged", 0.9, "slow-judge")]
        assert log.read_text().split().count("judge") == 2  # in flight at the kill: at least once
        after = await app.get_run(parent_id)
        assert (after.status, after.finished_at_ms) == (parent.status, parent.finished_at_ms)


async def _finished(app: ip.App, run_id: str) -> bool:
    return (await app.get_run(run_id)).status.finished
