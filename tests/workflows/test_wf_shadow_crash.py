"""A worker killed (SIGKILL) between a primary run's start and its shadow's start, or at a
random moment: after recovery the primary completed once, its shadow exists exactly once with
its comparison, and the shadow never called the side-effect task.

One pass by default; ``WF_SHADOW_CRASH_LOOPS=20`` repeats it (even passes kill while the
primary's side effect is in flight, odd passes after a random delay)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.store.base import RunFilter
from inferpipe.workflows.shadow.run import SHADOW_FUNCTION_ID
from tests.workflows import wf_shadow_crash_app as crash_app
from tests.workflows.test_wf_crash import eventually

APP_FILE = Path(crash_app.__file__)
LOOPS = int(os.environ.get("WF_SHADOW_CRASH_LOOPS", "1"))


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--lease-ms", "1000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _one_pass(tmp_path: Path, index: int) -> None:
    db = f"sqlite:///{tmp_path / f'shadow-{index}.db'}"
    log, hold = tmp_path / f"tasks-{index}.log", tmp_path / f"hold-{index}"
    env = {**os.environ, "INFERPIPE_DATABASE_URL": db}
    env.update(WF_SHADOW_LOG=str(log), WF_SHADOW_HOLD=str(hold))
    at_side_effect = index % 2 == 0
    if at_side_effect:
        hold.touch()
    crash_app.app.database = db
    async with crash_app.app as app:
        rt = crash_app.runtime
        await rt.save(crash_app.GRAPH)
        policy = await rt.shadow_policies().create("shadowed", overrides=crash_app.CANDIDATE)
        run_id = await rt.run("shadowed", {"q": "x"})
        first = start_worker(env)
        try:
            if at_side_effect:

                async def in_flight() -> bool:
                    return log.exists() and "slow:a-x" in log.read_text().split()

                await eventually(in_flight, "the primary's side effect")
            else:
                await asyncio.sleep(random.uniform(0.3, 2.5))
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        if at_side_effect:  # killed after the primary started, before its shadow could
            assert (await app.get_run(run_id)).status is ip.RunStatus.RUNNING
            assert await _shadows(app) == []
        hold.unlink(missing_ok=True)
        second = start_worker(env)
        try:

            async def compared() -> bool:
                return bool(await app.engine.store.shadows.comparisons(policy.id))

            await eventually(compared, "the shadow's comparison")
        finally:
            second.send_signal(signal.SIGTERM)
            # -SIGTERM: stopped while starting, when the first worker had done everything.
            assert second.wait(timeout=20) in (0, -signal.SIGTERM)
        primary = await app.get_run(run_id)
        shadows = await _shadows(app)
        comparisons = await app.engine.store.shadows.comparisons(policy.id)
    assert primary.status is ip.RunStatus.COMPLETED, primary.error
    assert primary.output == {"a": "a-x", "slow": "slow"}
    assert len(shadows) == 1 and shadows[0].parent_run_id == run_id
    assert shadows[0].status is ip.RunStatus.COMPLETED, shadows[0].error
    assert shadows[0].output == {"a": "shadow-x", "slow": "slow"}
    assert [c.shadow_run_id for c in comparisons] == [shadows[0].id]
    lines = log.read_text().split()
    assert "slow:shadow-x" not in lines  # the side effect never ran in the shadow
    assert lines.count("slow:a-x") >= 1 and lines.count("shadow-x") >= 1


async def _shadows(app: ip.App) -> list[ip.Run]:
    page = await app.list_runs(RunFilter(function_id=SHADOW_FUNCTION_ID), limit=100)
    return list(page.items)


@pytest.mark.timeout(90 * LOOPS)
async def test_a_crash_between_primary_and_shadow_loses_neither(tmp_path: Path) -> None:
    for index in range(LOOPS):
        await _one_pass(tmp_path, index)
