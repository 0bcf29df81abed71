"""Property: any valid DAG compiles, and executing it on the offline runtime completes, records
every node once, in an order that respects dependencies, with the reference skip semantics."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings

import inferpipe as ip
from inferpipe.testing import Harness
from inferpipe.workflows import PlanCursor, compile_graph, spec
from inferpipe.workflows.compile import ExecutionPlan
from inferpipe.workflows.schedule import NodeOutcome
from tests.workflows import wf_build as b
from tests.workflows.wf_run import runtime


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=b.runnable_dags())
def test_generated_dags_execute_in_dependency_order(case: dict[str, Any]) -> None:
    asyncio.run(_check(case["document"], case["q"]))


async def _check(document: dict[str, Any], q: str) -> None:
    plan = compile_graph(spec.parse_graph(document))
    app, rt = runtime(retries=0)
    async with Harness(app) as h:
        await rt.save(document)
        run = await h.settle(await rt.run("g", {"q": q}))
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run and run.error
        records = {s.key: s for s in await h.steps(run.id)}
    nodes = plan.nodes.values()
    assert records.keys() == {"resolve-graph"} | {node.step_name for node in nodes}
    for node in nodes:
        for dep in node.depends_on:
            before, after = records[plan.nodes[dep].step_name], records[node.step_name]
            assert before.seq < after.seq, f"{node.id} was recorded before its dependency {dep}"
    skipped = {n.id for n in nodes if _is_skip_record(records[n.step_name].output)}
    assert skipped == _reference_skips(plan, records)


def _is_skip_record(output: Any) -> bool:
    return isinstance(output, dict) and output.get("skipped") is True


def _reference_skips(plan: ExecutionPlan, records: dict[str, ip.StepRecord]) -> set[str]:
    """Replay the recorded completions and branch choices through the reference scheduler."""
    cursor = PlanCursor(plan)
    while not cursor.finished:
        for node_id in cursor.ready():
            record = records[plan.nodes[node_id].step_name]
            arm = record.output["arm"] if node_id in plan.branches else None
            cursor.start(node_id)
            cursor.complete(node_id, arm=arm)
    return {n for n, outcome in cursor.outcomes.items() if outcome is NodeOutcome.SKIPPED}
