"""Parallel branches of one run share store commits (engine.group_commit), on both stores."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import inferpipe as ip
from inferpipe.core.records import Lease
from inferpipe.engine.group_commit import MAX_WRITES
from inferpipe.store.base import Progress
from tests.engine.conftest import HarnessFactory

CHILDREN = 600


def count_commits(store: Any) -> Counter[str]:
    """Counts the store commits of each run (patched on the store instance)."""
    commits: Counter[str] = Counter()
    commit = store.commit

    async def counted(lease: Lease, progress: Progress, now_ms: int) -> Any:
        commits[lease.run_id] += 1
        return await commit(lease, progress, now_ms)

    store.commit = counted
    return commits


async def test_a_gather_of_invokes_starts_its_children_in_a_few_commits(
    harness: HarnessFactory,
) -> None:
    app = ip.App("test")

    @app.function(id="child")
    async def child(ctx: ip.Context) -> int:
        return int(ctx.input["i"]) * 2

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> list[int]:
        calls = (ctx.step.invoke(f"c{i}", "child", {"i": i}) for i in range(CHILDREN))
        return list(await asyncio.gather(*calls))

    async with harness(app) as h:
        commits = count_commits(h.engine.store)
        run_id = await h.invoke("parent")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run
        assert run.output == [i * 2 for i in range(CHILDREN)]
        # Every child and its wait are written, but in commits of up to MAX_WRITES branches.
        assert commits[run_id] <= 2 * -(-CHILDREN // MAX_WRITES)
        steps = await h.steps(run_id)
        assert len(steps) == CHILDREN and {s.status for s in steps} == {ip.StepStatus.COMPLETED}


async def test_parallel_steps_share_commits_and_each_returns_its_own_result(
    harness: HarnessFactory,
) -> None:
    app = ip.App("test")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> list[Any]:
        async def value(v: int) -> int:
            return v

        async def branch(i: int) -> Any:
            first = await ctx.step.run(f"s{i}", value, i)
            return [first, await ctx.step.run(f"t{i}", value, -i)]

        return list(await asyncio.gather(*(branch(i) for i in range(300))))

    async with harness(app) as h:
        commits = count_commits(h.engine.store)
        run_id = await h.invoke("f")
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run
        assert run.output == [[i, -i] for i in range(300)]
        assert commits[run_id] < 60  # 600 steps
