"""The reference scheduler: ordering, branch skipping, resume, and random DAGs (hypothesis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpipe.workflows import spec
from inferpipe.workflows.compile import ExecutionPlan, compile_graph
from inferpipe.workflows.schedule import NodeOutcome, PlanCursor
from tests.workflows import wf_build as b

TRIAGE = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "ticket_triage.json"


def drive(plan: ExecutionPlan, arms: dict[str, int] | None = None) -> list[str]:
    """Run the plan to the end in ready order; returns the nodes run, in order."""
    cursor = PlanCursor(plan)
    ran = []
    while not cursor.finished:
        ready = cursor.ready()
        assert ready, "not finished, yet nothing is ready"
        node_id = ready[0]
        cursor.start(node_id)
        ran.append(node_id)
        cursor.complete(node_id, arm=(arms or {}).get(node_id))
    return ran


def test_branch_skips_the_arm_not_chosen() -> None:
    plan = compile_graph(spec.load_graph_file(TRIAGE))
    escalate = PlanCursor(plan)
    for node_id, arm in (("classify", None), ("route", 0)):
        escalate.start(node_id)
        escalate.complete(node_id, arm=arm)
    assert escalate.ready() == ("escalate",)
    assert escalate.outcomes["reply"] is NodeOutcome.SKIPPED
    assert drive(plan, {"route": 1}) == ["classify", "route", "reply"]


def test_skips_cascade_and_joins_run_after_either_arm() -> None:
    branch = {
        "id": "r",
        "type": "branch",
        "cases": [{"when": "true", "then": ["yes"]}],
        "else": ["no"],
    }
    graph = b.graph(
        [
            b.llm("a"),
            branch,
            b.llm("yes"),
            b.llm("no"),
            b.transform("after_no", "nodes.no.output"),
            b.transform("join", "[nodes.yes.output, nodes.after_no.output]"),
        ],
        edges=[b.edge("a", "r")],
    )
    plan = compile_graph(graph)
    assert drive(plan, {"r": 0}) == ["a", "r", "yes", "join"]
    cursor = PlanCursor(plan)
    for node_id, arm in (("a", None), ("r", 0), ("yes", None), ("join", None)):
        cursor.start(node_id)
        cursor.complete(node_id, arm=arm)
    assert cursor.outcomes["after_no"] is NodeOutcome.SKIPPED
    assert cursor.finished


def test_independent_nodes_are_ready_together() -> None:
    plan = compile_graph(
        b.graph([b.llm("a"), b.llm("b"), b.transform("c", "[nodes.a.output, nodes.b.output]")])
    )
    cursor = PlanCursor(plan)
    assert cursor.ready() == ("a", "b")
    cursor.start("a")
    assert cursor.ready() == ("b",)
    assert cursor.running == frozenset({"a"})


def test_a_failure_stops_the_run_and_resume_skips_what_completed() -> None:
    plan = compile_graph(
        b.graph(
            [b.llm("a"), b.transform("b", "nodes.a.output"), b.transform("c", "nodes.b.output")]
        )
    )
    cursor = PlanCursor(plan)
    cursor.start("a")
    cursor.complete("a")
    cursor.start("b")
    cursor.fail("b")
    assert cursor.failed == ("b",) and cursor.finished and cursor.ready() == ()
    resumed = PlanCursor(plan, completed={"a"})
    assert resumed.ready() == ("b",)
    assert resumed.outcomes == {"a": NodeOutcome.COMPLETED}


def test_resume_replays_branch_choices() -> None:
    plan = compile_graph(spec.load_graph_file(TRIAGE))
    resumed = PlanCursor(plan, completed={"classify", "route"}, choices={"route": 1})
    assert resumed.ready() == ("reply",)
    assert resumed.outcomes["escalate"] is NodeOutcome.SKIPPED
    with pytest.raises(ValueError, match="inconsistent"):
        PlanCursor(plan, completed={"reply"})
    with pytest.raises(ValueError, match="must report an arm"):
        PlanCursor(plan, completed={"classify", "route"})


# --- hypothesis: random DAGs ------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(document=b.random_dags(), data=st.data())
def test_random_dags_run_every_node_after_its_dependencies(
    document: dict[str, Any], data: st.DataObject
) -> None:
    plan = compile_graph(spec.parse_graph(document))
    assert compile_graph(spec.parse_graph(document)).content_hash == plan.content_hash
    cursor = PlanCursor(plan)
    finished_at: dict[str, int] = {}
    clock = 0
    while not cursor.finished:
        ready = cursor.ready()
        idle = not cursor.running
        assert ready or not idle, "deadlock: nothing ready and nothing running"
        # Start a random subset of the ready nodes, then finish a random running one.
        for node_id in ready:
            if idle or data.draw(st.booleans()):
                node = cursor.start(node_id)
                assert all(dep in cursor.outcomes for dep in node.depends_on)
                assert all(
                    cursor.outcomes[dep] is not NodeOutcome.FAILED for dep in node.depends_on
                )
                idle = False
        node_id = data.draw(st.sampled_from(sorted(cursor.running)))
        branch = plan.branches.get(node_id)
        arm = data.draw(st.integers(0, len(branch.arms) - 1)) if branch else None
        clock += 1
        finished_at[node_id] = clock
        cursor.complete(node_id, arm=arm)
    outcomes = cursor.outcomes
    assert set(outcomes) == set(plan.nodes)
    for node_id, outcome in outcomes.items():
        node = plan.nodes[node_id]
        if outcome is NodeOutcome.COMPLETED:
            for dep in node.depends_on:
                if outcomes[dep] is NodeOutcome.COMPLETED:
                    assert finished_at[dep] < finished_at[node_id]
        elif node.branch is None:
            assert node.depends_on and all(
                outcomes[d] is NodeOutcome.SKIPPED for d in node.depends_on
            )
    # A branch's owned nodes ran only if the chosen arm owns them.
    for branch_id, branch_plan in plan.branches.items():
        if outcomes[branch_id] is not NodeOutcome.COMPLETED:
            continue
        chosen = cursor.choices[branch_id]
        for position, other in enumerate(branch_plan.arms):
            if position != chosen:
                assert all(
                    outcomes[n] is NodeOutcome.SKIPPED
                    for n in other.owned
                    if n not in branch_plan.arms[chosen].owned
                )
    assert plan.ready_nodes(set(outcomes)) == ()
