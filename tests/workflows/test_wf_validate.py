"""One test per failure class, plus 'every problem at once'."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpipe.workflows import spec
from inferpipe.workflows._index import index_graph
from inferpipe.workflows.errors import GraphInvalidError, Problem, ProblemCode
from inferpipe.workflows.validate import (
    Limits,
    PatternModelCatalog,
    ValidationOptions,
    check_graph,
    validate_graph,
)
from tests.workflows import wf_build as b


def problems_of(
    document: dict[str, Any], options: ValidationOptions | None = None
) -> list[Problem]:
    return validate_graph(spec.parse_graph(document), options)


def codes(problems: list[Problem]) -> set[ProblemCode]:
    return {p.code for p in problems}


def test_valid_graph_has_no_problems() -> None:
    document = b.document([b.llm("a"), b.transform("t", "nodes.a.output")])
    assert problems_of(document) == []


def test_cycle_is_reported_with_its_nodes_in_order() -> None:
    document = b.document(
        [b.llm("a", "{{ nodes.c.output }}"), b.llm("b", "{{ nodes.a.output }}"), b.llm("c")],
        edges=[b.edge("b", "c")],
    )
    problems = [p for p in problems_of(document) if p.code is ProblemCode.CYCLE]
    assert len(problems) == 1
    assert problems[0].message == "cycle: a -> b -> c -> a"
    assert problems[0].node_id == "a"
    assert problems[0].path == "/nodes/0"


def test_self_reference_is_a_cycle_of_one() -> None:
    problems = problems_of(b.document([b.transform("a", "nodes.a.output")]))
    assert [p.message for p in problems if p.code is ProblemCode.CYCLE] == ["cycle: a -> a"]


def test_unknown_references_everywhere_are_reported() -> None:
    branch = {"id": "r", "type": "branch", "cases": [{"when": "true", "then": ["ghost"]}]}
    document = b.document(
        [
            b.llm("a", "{{ nodes.missing.output }}"),
            b.transform("t", "nodes.nowhere.output + 1"),
            branch,
            b.transform("z", "nodes.a.output"),
        ],
        edges=[b.edge("a", "phantom"), b.edge("r", "z")],
    )
    unknown = [
        (p.node_id, p.path) for p in problems_of(document) if p.code is ProblemCode.UNKNOWN_NODE
    ]
    assert unknown == [
        (None, "/edges/0/target"),
        ("r", "/nodes/2/cases/0/then/0"),
        ("a", "/nodes/0/prompt"),
        ("t", "/nodes/1/expression"),
    ]


def test_dynamic_and_malformed_node_references_are_refused() -> None:
    document = b.document(
        [b.llm("a"), b.llm("b", "{{ nodes[input.q].output }}"), b.transform("c", "nodes.a.result")],
        output={"r": "nodes.b.output", "s": "nodes.c.output"},
    )
    bad = [p.node_id for p in problems_of(document) if p.code is ProblemCode.BAD_REFERENCE]
    assert bad == ["b", "c"]


def test_unreachable_nodes_are_reported() -> None:
    document = b.document(
        [
            b.llm("a"),
            b.transform("b", "nodes.a.output"),
            b.transform("lonely", "1"),
            b.transform("also", "nodes.lonely.output"),
        ],
        output={"result": "nodes.b.output"},
    )
    unreachable = [p.node_id for p in problems_of(document) if p.code is ProblemCode.UNREACHABLE]
    assert unreachable == ["lonely", "also"]


def test_parts_that_read_the_input_are_connected_to_the_flow() -> None:
    notify: dict[str, Any] = {"id": "notify", "type": "http", "url": "https://hooks.example/x"}
    notify["body"] = {"q": "{{ input.q }}"}
    document = b.document([b.llm("a"), notify], output={"result": "nodes.a.output"})
    assert problems_of(document) == []


@settings(max_examples=60, deadline=None)
@given(document=b.random_dags(), data=st.data())
def test_a_back_edge_closes_a_cycle_exactly_when_a_path_exists(
    document: dict[str, Any], data: st.DataObject
) -> None:
    count = len(document["nodes"])
    if count < 2:
        return
    late = f"n{data.draw(st.integers(1, count - 1))}"
    early = f"n{data.draw(st.integers(0, int(late[1:]) - 1))}"
    path_exists = _depends(index_graph(spec.parse_graph(document)).deps, late, early)
    document["edges"].append(b.edge(late, early))
    graph = spec.parse_graph(document)
    cycles = [p for p in validate_graph(graph) if p.code is ProblemCode.CYCLE]
    assert bool(cycles) == path_exists
    deps = index_graph(graph).deps
    for problem in cycles:
        chain = problem.message.removeprefix("cycle: ").split(" -> ")
        assert chain[0] == chain[-1]
        for before, after in itertools.pairwise(chain):
            assert before in deps[after], (before, after)


def _depends(deps: dict[str, set[str]], node: str, on: str) -> bool:
    seen, stack = set(), [node]
    while stack:
        for dep in deps[stack.pop()]:
            if dep == on:
                return True
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return False


def test_nodes_behind_a_cycle_are_unreachable() -> None:
    document = b.document(
        [
            b.transform("a", "nodes.b.output"),
            b.transform("b", "nodes.a.output"),
            b.transform("c", "nodes.b.output"),
        ]
    )
    problems = problems_of(document)
    assert [p.node_id for p in problems if p.code is ProblemCode.UNREACHABLE] == ["c"]
    assert [p.message for p in problems if p.code is ProblemCode.CYCLE] == ["cycle: a -> b -> a"]


def test_missing_inputs_are_reported() -> None:
    document = b.document(
        [
            b.llm("a", "{{ input.q }} {{ input.language }}"),
            b.transform("t", "input.count + size(nodes.a.output)"),
        ],
        inputs=("q",),
    )
    missing = [
        (p.node_id, p.message) for p in problems_of(document) if p.code is ProblemCode.MISSING_INPUT
    ]
    assert missing == [
        ("a", "refers to input.language, which the input schema does not declare"),
        ("t", "refers to input.count, which the input schema does not declare"),
    ]


def test_invalid_templates_are_reported() -> None:
    document = b.document(
        [
            b.llm("a", "{% if input.q %}unclosed"),
            b.llm("b", "{{ nodes.a.output }}", system="{{ oops "),
        ]
    )
    problems = [p for p in problems_of(document) if p.code is ProblemCode.INVALID_TEMPLATE]
    assert [(p.node_id, p.path) for p in problems] == [
        ("a", "/nodes/0/prompt"),
        ("b", "/nodes/1/system"),
    ]
    assert "line 1" in problems[0].message


def test_sandbox_escapes_are_refused_at_save_time() -> None:
    document = b.document([b.llm("a", "{{ ''.__class__.__mro__[1].__subclasses__() }}")])
    problems = [p for p in problems_of(document) if p.code is ProblemCode.INVALID_TEMPLATE]
    assert problems and "'__class__' is not accessible" in problems[0].message


def test_invalid_cel_is_reported() -> None:
    branch = {"id": "r", "type": "branch", "cases": [{"when": "nodes.a.output ==", "then": ["b"]}]}
    document = b.document(
        [b.llm("a"), branch, b.transform("b", "1 +* 2")], edges=[b.edge("a", "r")]
    )
    problems = [p for p in problems_of(document) if p.code is ProblemCode.INVALID_EXPRESSION]
    assert [(p.node_id, p.path) for p in problems] == [
        ("r", "/nodes/1/cases/0/when"),
        ("b", "/nodes/2/expression"),
    ]
    assert all(p.message.startswith("CEL does not compile") for p in problems)


def test_unknown_variables_are_reported() -> None:
    document = b.document([b.transform("a", "item + input.q")])
    problems = [p for p in problems_of(document) if p.code is ProblemCode.UNKNOWN_VARIABLE]
    assert len(problems) == 1 and "'item'" in problems[0].message


def test_unknown_models_and_providers_are_reported() -> None:
    inner = {"type": "llm", "model": "mystery/model-x", "prompt": "{{ item }}"}
    document = b.document(
        [
            b.llm("a", model="anthropic/claude"),
            b.llm("b", "{{ nodes.a.output }}", model="no-slash"),
            {"id": "m", "type": "map", "over": "[nodes.b.output]", "node": inner},
        ]
    )
    problems = [p for p in problems_of(document) if p.code is ProblemCode.UNKNOWN_MODEL]
    assert [(p.node_id, p.path) for p in problems] == [
        ("a", "/nodes/0/model"),
        ("b", "/nodes/1/model"),
        ("m", "/nodes/2/node/model"),
    ]
    assert "unknown provider 'anthropic'" in problems[0].message
    assert "'provider/name'" in problems[1].message


def test_model_catalog_is_injectable() -> None:
    document = b.document([b.llm("a", model="openai/gpt-4o-mini")])
    strict = ValidationOptions(models=PatternModelCatalog(("openai/gpt-4o",)))
    problems = problems_of(document, strict)
    assert [p.message for p in problems] == [
        "unknown model 'openai/gpt-4o-mini' for provider 'openai'"
    ]
    assert problems_of(document) == []


def test_output_mapping_errors_are_reported() -> None:
    document = b.document(
        [b.llm("a")],
        output={"x": "nodes.a.output", "y": "nodes.gone.output", "z": "1 +", "w": "item", " ": "1"},
    )
    problems = [p for p in problems_of(document) if p.code is ProblemCode.OUTPUT_MAPPING]
    assert {p.path for p in problems} == {"/output/y", "/output/z", "/output/w", "/output/ "}
    empty = problems_of(b.document([b.llm("a")], output={}))
    assert [p.code for p in empty] == [ProblemCode.OUTPUT_MAPPING]


def test_graphs_over_the_limits_are_refused() -> None:
    chain = [b.transform("n0", "input.q")] + [
        b.transform(f"n{i}", f"nodes.n{i - 1}.output") for i in range(1, 12)
    ]
    limits = Limits(max_nodes=10, max_depth=5, max_map_fanout=50)
    item_node = {"type": "transform", "expression": "item"}
    big_map = {"id": "m", "type": "map", "over": "[input.q]", "node": item_node, "max_items": 500}
    document = b.document(
        [*chain, big_map], output={"r": "nodes.n11.output", "m": "nodes.m.output"}
    )
    problems = [
        p
        for p in problems_of(document, ValidationOptions(limits=limits))
        if p.code is ProblemCode.TOO_LARGE
    ]
    messages = [p.message for p in problems]
    assert messages == [
        "the graph has 13 nodes; the limit is 10",
        "the longest chain of dependent nodes is 12 long; the limit is 5",
        "max_items is 500; the map fan-out limit is 50",
    ]


def test_duplicate_ids_and_branch_conflicts_are_reported() -> None:
    r1 = {"id": "r1", "type": "branch", "cases": [{"when": "true", "then": ["x"]}]}
    r2 = {"id": "r2", "type": "branch", "cases": [{"when": "true", "then": ["x", "r2"]}]}
    document = b.document(
        [b.llm("a"), b.llm("a"), r1, r2, b.llm("x")], edges=[b.edge("a", "r1"), b.edge("a", "r2")]
    )
    found = codes(problems_of(document))
    assert {ProblemCode.DUPLICATE_ID, ProblemCode.BRANCH_TARGET} <= found


def test_secrets_stay_in_http_nodes_and_never_appear_literally() -> None:
    http = {
        "id": "h",
        "type": "http",
        "url": "https://api.example.com/v1?api_key=abcdef123456",
        "headers": {"Authorization": "Bearer sk-live-0123456789abcdef", "X-Trace": "{{ input.q }}"},
        "body": {"password": "hunter2hunter2", "q": "{{ input.q }}"},
    }
    document = b.document(
        [b.llm("a", "{{ secrets.OPENAI_KEY }}"), {**http, "id": "h"}], edges=[b.edge("a", "h")]
    )
    secrets = [(p.node_id, p.path) for p in problems_of(document) if p.code is ProblemCode.SECRET]
    assert secrets == [
        ("a", "/nodes/0/prompt"),
        ("h", "/nodes/1/headers/Authorization"),
        ("h", "/nodes/1/url"),
        ("h", "/nodes/1/body/password"),
    ]
    good = {
        **http,
        "url": "https://api.example.com/v1",
        "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
        "body": None,
    }
    assert problems_of(b.document([good])) == []


def test_private_http_destinations_are_refused_at_save_time() -> None:
    def http(node_id: str, url: str, **extra: Any) -> dict[str, Any]:
        return {"id": node_id, "type": "http", "url": url, **extra}

    document = b.document(
        [
            http("meta", "http://169.254.169.254/latest/meta-data"),
            http("local", "http://localhost:8080/admin"),
            http("ok", "https://api.example.com/{{ input.q }}"),
            http("allowed", "http://10.0.0.7/hook", allow_private=True),
            http("dynamic", "{{ input.q }}/path"),
        ],
        output={k: f"nodes.{k}.output" for k in ("meta", "local", "ok", "allowed", "dynamic")},
    )
    private = [p.node_id for p in problems_of(document) if p.code is ProblemCode.PRIVATE_ADDRESS]
    assert private == ["meta", "local"]


def test_unknown_tasks_are_reported_when_a_registry_is_given() -> None:
    task = {"id": "t", "type": "task", "task": "billing.refund", "args": {"ticket": "input.q"}}
    document = b.document([task])
    assert problems_of(document) == []
    problems = problems_of(document, ValidationOptions(tasks={"billing.charge"}))
    assert [p.code for p in problems] == [ProblemCode.UNKNOWN_TASK]


def test_every_problem_is_reported_at_once() -> None:
    document = b.document(
        [
            b.llm("a", "{{ nodes.c.output }} {{ input.nope }}", model="acme/x"),
            b.transform("c", "nodes.a.output +"),
            b.llm("d", "{% for %}"),
        ],
        edges=[b.edge("c", "a"), b.edge("a", "c"), b.edge("x", "a")],
        output={"r": "nodes.missing.output"},
    )
    with pytest.raises(GraphInvalidError) as info:
        check_graph(spec.parse_graph(document))
    assert codes(list(info.value.problems)) == {
        ProblemCode.CYCLE,
        ProblemCode.UNKNOWN_NODE,
        ProblemCode.MISSING_INPUT,
        ProblemCode.INVALID_TEMPLATE,
        ProblemCode.INVALID_EXPRESSION,
        ProblemCode.UNKNOWN_MODEL,
        ProblemCode.OUTPUT_MAPPING,
        ProblemCode.UNREACHABLE,  # d: the output names no real node, and d does not read input
    }
    text = str(info.value)
    assert text.splitlines()[0] == f"graph 'g' is invalid ({len(info.value.problems)} problems):"
    assert "[cycle] node 'a' at /nodes/0: cycle: a -> c -> a" in text
