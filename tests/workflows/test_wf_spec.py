from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferpipe.workflows import spec
from inferpipe.workflows.errors import GraphInvalidError, ProblemCode
from inferpipe.workflows.validate import validate_graph
from tests.workflows import wf_build as b

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def test_published_schema_file_is_current() -> None:
    assert spec.SCHEMA_PATH.read_text(encoding="utf-8") == spec.render_graph_schema(), (
        "graph.schema.json is stale: run `python -m inferpipe.workflows.spec`"
    )


def test_schema_describes_every_node_type() -> None:
    schema = spec.graph_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    mapping = schema["properties"]["nodes"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == {"llm", "transform", "http", "branch", "map", "wait", "task"}
    assert "else" in schema["$defs"]["BranchNode"]["properties"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_examples_validate(path: Path) -> None:
    graph = spec.load_graph_file(path)
    assert validate_graph(graph) == []


def test_examples_exist() -> None:
    names = {path.stem for path in EXAMPLES.glob("*.json")}
    assert {"ticket_triage", "document_pipeline"} <= names


def test_json_and_yaml_load_to_the_same_graph() -> None:
    document = b.document([b.llm("a"), b.transform("t", "nodes.a.output")])
    yaml_text = """
id: g
name: test graph
input_schema:
  type: object
  properties: {q: {type: string}}
  required: [q]
nodes:
  - id: a
    type: llm
    model: fake/echo
    prompt: "Hello {{ input.q }}"
  - {id: t, type: transform, expression: nodes.a.output}
output:
  result: nodes.t.output
"""
    assert spec.load_graph(yaml_text) == spec.load_graph(json.dumps(document))


def test_every_schema_problem_is_listed_with_its_path_and_node() -> None:
    document = b.document(
        [
            {"id": "a", "type": "llm", "prompt": 3},
            {"id": "b", "type": "nope"},
            {"id": "c", "type": "transform", "expression": "1", "colour": "red"},
        ]
    )
    with pytest.raises(GraphInvalidError) as info:
        spec.parse_graph(document)
    found = {(p.node_id, p.path) for p in info.value.problems}
    assert found == {
        ("a", "/nodes/0/model"),
        ("a", "/nodes/0/prompt"),
        ("b", "/nodes/1"),
        ("c", "/nodes/2/colour"),
    }
    assert all(p.code is ProblemCode.SCHEMA for p in info.value.problems)
    assert "4 problems" in str(info.value)


def test_syntax_errors_are_problems_not_tracebacks() -> None:
    with pytest.raises(GraphInvalidError) as info:
        spec.load_graph('{"id": "g",')
    assert info.value.problems[0].code is ProblemCode.SYNTAX
    assert "line 1" in info.value.problems[0].message
    with pytest.raises(GraphInvalidError) as yaml_info:
        spec.load_graph("id: [unclosed")
    assert yaml_info.value.problems[0].code is ProblemCode.SYNTAX


def test_branch_else_round_trips_under_its_alias() -> None:
    node = {"id": "r", "type": "branch", "cases": [{"when": "true", "then": ["x"]}], "else": ["y"]}
    parsed = spec.parse_graph(b.document([b.llm("x"), b.llm("y"), node]))
    branch = parsed.nodes[2]
    assert isinstance(branch, spec.BranchNode)
    assert branch.else_ == ["y"]
    assert branch.model_dump()["else"] == ["y"]


def test_wait_timeout_accepts_durations_and_refuses_garbage() -> None:
    wait = {"id": "w", "type": "wait", "event": "review/done", "timeout": "7d"}
    parsed = spec.parse_graph(b.document([wait]))
    node = parsed.nodes[0]
    assert isinstance(node, spec.WaitNode)
    assert node.timeout_ms == 7 * 86_400_000
    with pytest.raises(GraphInvalidError) as info:
        spec.parse_graph(b.document([{**wait, "timeout": "soon"}]))
    assert info.value.problems[0].path == "/nodes/0/timeout"


def test_map_item_node_has_no_id() -> None:
    node = {"id": "m", "type": "map", "over": "input.xs", "node": b.transform("inner", "item")}
    with pytest.raises(GraphInvalidError) as info:
        spec.parse_graph(b.document([node]))
    assert info.value.problems[0].path == "/nodes/0/node/id"


def test_node_ids_must_be_identifiers() -> None:
    with pytest.raises(GraphInvalidError) as info:
        spec.parse_graph(b.document([b.llm("has-dash")]))
    assert info.value.problems[0].path == "/nodes/0/id"
