from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from inferpipe.workflows import spec
from inferpipe.workflows.compile import ExecutionPlan, compile_graph
from inferpipe.workflows.errors import GraphInvalidError, PlanIntegrityError
from tests.workflows import wf_build as b

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"
TRIAGE = EXAMPLES / "ticket_triage.json"


def triage() -> spec.Graph:
    return spec.load_graph_file(TRIAGE)


def test_compiling_twice_gives_the_same_plan_and_hash() -> None:
    first, second = compile_graph(triage()), compile_graph(triage())
    assert first == second
    assert first.canonical_json() == second.canonical_json()
    assert len(first.content_hash) == 64


def test_whitespace_only_changes_do_not_change_the_hash() -> None:
    text = TRIAGE.read_text(encoding="utf-8")
    compact = json.dumps(json.loads(text), separators=(",", ":"))
    spread = json.dumps(json.loads(text), indent=8)
    hashes = {compile_graph(spec.load_graph(t)).content_hash for t in (text, compact, spread)}
    assert len(hashes) == 1


def test_node_and_edge_order_and_version_do_not_change_the_hash() -> None:
    document = json.loads(TRIAGE.read_text(encoding="utf-8"))
    shuffled = dict(document, nodes=list(reversed(document["nodes"])), version=7)
    assert (
        compile_graph(spec.parse_graph(shuffled)).content_hash
        == compile_graph(spec.parse_graph(document)).content_hash
    )


def test_any_content_change_changes_the_hash() -> None:
    document = json.loads(TRIAGE.read_text(encoding="utf-8"))
    changed = json.loads(json.dumps(document))
    changed["nodes"][2]["prompt"] += "!"
    assert (
        compile_graph(spec.parse_graph(changed)).content_hash
        != compile_graph(spec.parse_graph(document)).content_hash
    )


def test_step_names_levels_and_dependencies() -> None:
    plan = compile_graph(triage())
    assert {n.id: n.step_name for n in plan.nodes.values()} == {
        "classify": "node-classify-llm",
        "route": "node-route-branch",
        "escalate": "node-escalate-http",
        "reply": "node-reply-llm",
    }
    assert plan.levels == (("classify",), ("route",), ("escalate", "reply"))
    # reply depends on classify through its template, on route as its branch target.
    assert plan.nodes["reply"].depends_on == ("classify", "route")
    assert plan.nodes["reply"].branch == "route"
    assert plan.nodes["classify"].dependents == ("escalate", "reply", "route")
    assert plan.nodes["classify"].inputs == ("body", "subject")


def test_dependencies_come_from_references_without_edges() -> None:
    plan = compile_graph(
        b.graph([b.llm("a"), b.llm("b"), b.transform("c", "[nodes.a.output, nodes.b.output]")])
    )
    assert plan.nodes["c"].depends_on == ("a", "b")
    assert plan.levels == (("a", "b"), ("c",))
    assert plan.ready_nodes(set()) == ("a", "b")
    assert plan.ready_nodes({"a"}) == ("b",)
    assert plan.ready_nodes({"a", "b"}) == ("c",)


def test_branch_ownership() -> None:
    branch = {
        "id": "r",
        "type": "branch",
        "cases": [{"when": "nodes.a.output == 'x'", "then": ["yes"]}],
        "else": ["no"],
    }
    graph = b.graph(
        [
            b.llm("a"),
            branch,
            b.llm("yes"),
            b.llm("no"),
            b.transform("after_yes", "nodes.yes.output"),
            b.transform("join", "[nodes.yes.output, nodes.no.output]"),
            b.transform("mixed", "[nodes.yes.output, nodes.a.output]"),
        ],
        edges=[b.edge("a", "r")],
        output={"j": "nodes.join.output", "m": "nodes.mixed.output", "y": "nodes.after_yes.output"},
    )
    plan = compile_graph(graph).branches["r"]
    assert [arm.when for arm in plan.arms] == ["nodes.a.output == 'x'", None]
    assert plan.arms[0].owned == ("yes", "after_yes")
    assert plan.arms[1].owned == ("no",)
    # join runs whichever arm is chosen; mixed also depends on a, so it always runs.
    assert plan.controlled == ("no", "yes", "after_yes")

    async def never(when: str) -> bool:
        return False

    async def always(when: str) -> bool:
        return True

    assert asyncio.run(plan.choose(never)) == 1
    assert asyncio.run(plan.choose(always)) == 0


def test_secrets_stay_references_in_the_plan() -> None:
    plan = compile_graph(triage())
    assert plan.secrets == ("HELPDESK_TOKEN",)
    assert plan.nodes["escalate"].secrets == ("HELPDESK_TOKEN",)
    payload = plan.model_dump_json()
    assert "{{ secrets.HELPDESK_TOKEN }}" in payload


def test_stored_plans_are_verified_on_load() -> None:
    plan = compile_graph(triage())
    assert ExecutionPlan.from_json(plan.model_dump_json()) == plan
    tampered = json.loads(plan.model_dump_json())
    tampered["nodes"]["escalate"]["definition"]["url"] = "https://attacker.example/"
    with pytest.raises(PlanIntegrityError):
        ExecutionPlan.from_json(json.dumps(tampered))


def test_invalid_graphs_do_not_compile() -> None:
    with pytest.raises(GraphInvalidError) as info:
        compile_graph(
            b.graph([b.transform("a", "nodes.b.output"), b.transform("b", "nodes.a.output")])
        )
    assert "cycle: a -> b -> a" in str(info.value)


def test_map_items_get_their_own_step_names() -> None:
    plan = compile_graph(spec.load_graph_file(EXAMPLES / "document_pipeline.json"))
    summaries = plan.nodes["summaries"]
    assert summaries.step_name == "node-summaries-map"
    assert summaries.item_step_name(3) == "node-summaries-llm-3"
    with pytest.raises(ValueError, match="not a map"):
        plan.nodes["combine"].item_step_name(0)


def test_levels_are_a_topological_order() -> None:
    rng = random.Random(7)
    nodes = [b.transform("n0", "input.q")]
    for i in range(1, 60):
        deps = rng.sample(range(i), k=min(i, rng.randint(1, 3)))
        nodes.append(b.transform(f"n{i}", " + ".join(f"nodes.n{d}.output" for d in deps)))
    rng.shuffle(nodes)
    sinks = {f"s{i}": f"nodes.n{i}.output" for i in range(60)}
    plan = compile_graph(b.graph(nodes, output=sinks))
    seen: set[str] = set()
    for level in plan.levels:
        for node_id in level:
            assert set(plan.nodes[node_id].depends_on) <= seen
        seen |= set(level)
    assert list(plan.order) == [n for level in plan.levels for n in level]
