"""Small builders for workflow graph documents used across the workflow tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from inferpipe.workflows import spec


def llm(node_id: str, prompt: str = "Hello {{ input.q }}", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "llm", "model": "fake/echo", "prompt": prompt, **extra}


def transform(node_id: str, expression: str = "input.q", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "expression": expression, **extra}


def edge(source: str, target: str) -> dict[str, str]:
    return {"source": source, "target": target}


def document(
    nodes: list[dict[str, Any]],
    edges: list[dict[str, str]] | None = None,
    output: dict[str, str] | None = None,
    inputs: tuple[str, ...] = ("q",),
    **extra: Any,
) -> dict[str, Any]:
    """A graph document; by default the output maps the last node."""
    return {
        "id": "g",
        "name": "test graph",
        "input_schema": {
            "type": "object",
            "properties": {name: {"type": "string"} for name in inputs},
            "required": list(inputs),
        },
        "nodes": nodes,
        "edges": edges or [],
        "output": output if output is not None else {"result": f"nodes.{nodes[-1]['id']}.output"},
        **extra,
    }


def graph(*args: Any, **kwargs: Any) -> spec.Graph:
    return spec.parse_graph(document(*args, **kwargs))


@st.composite
def random_dags(draw: st.DrawFn) -> dict[str, Any]:
    """A random DAG over n0..n{k}: deps point to lower numbers, by edge or by reference; some
    nodes are branches targeting later nodes (each target owned by one branch)."""
    count = draw(st.integers(min_value=1, max_value=25))
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    owned: set[int] = set()
    for i in range(count):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        by_ref = {d for d in deps if draw(st.booleans())}
        edges += [edge(f"n{d}", f"n{i}") for d in sorted(deps - by_ref)]
        refs = [f"nodes.n{d}.output" for d in sorted(by_ref)] or ["input.q"]
        free = [j for j in range(i + 1, count) if j not in owned]
        if free and draw(st.integers(0, 3)) == 0:
            targets = draw(st.lists(st.sampled_from(free), min_size=1, max_size=3, unique=True))
            owned |= set(targets)
            split = draw(st.integers(0, len(targets)))
            cases = [
                {"when": f"size(string({refs[0]})) > 0", "then": [f"n{t}" for t in targets[:split]]}
            ]
            nodes.append(
                {
                    "id": f"n{i}",
                    "type": "branch",
                    "cases": cases,
                    "else": [f"n{t}" for t in targets[split:]],
                }
            )
        else:
            nodes.append(transform(f"n{i}", "[" + ", ".join(refs) + "]"))
    order = draw(st.permutations(nodes))
    output = {f"o{i}": f"nodes.n{i}.output" for i in range(count)}
    return document(list(order), edges=edges, output=output)


@st.composite
def runnable_dags(draw: st.DrawFn) -> dict[str, Any]:
    """Like `random_dags`, with branch conditions that evaluate on any data (a skipped node's
    output is null, so conditions test for null or read the input) and a drawn input `q`."""
    count = draw(st.integers(min_value=1, max_value=20))
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    owned: set[int] = set()
    for i in range(count):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        by_ref = {d for d in deps if draw(st.booleans())}
        edges += [edge(f"n{d}", f"n{i}") for d in sorted(deps - by_ref)]
        refs = [f"nodes.n{d}.output" for d in sorted(by_ref)]
        free = [j for j in range(i + 1, count) if j not in owned]
        if free and draw(st.integers(0, 2)) == 0:
            targets = draw(st.lists(st.sampled_from(free), min_size=1, max_size=3, unique=True))
            owned |= set(targets)
            split = draw(st.integers(0, len(targets)))
            when = f"{refs[0]} != null" if refs else f"size(input.q) > {draw(st.integers(0, 3))}"
            cases = [{"when": when, "then": [f"n{t}" for t in targets[:split]]}]
            else_ = [f"n{t}" for t in targets[split:]]
            nodes.append({"id": f"n{i}", "type": "branch", "cases": cases, "else": else_})
        else:
            nodes.append(transform(f"n{i}", "[" + ", ".join([*refs, "input.q"]) + "]"))
    order = draw(st.permutations(nodes))
    output = {f"o{i}": f"nodes.n{i}.output" for i in range(count)}
    document_ = document(list(order), edges=edges, output=output)
    return {"document": document_, "q": draw(st.text(max_size=5))}
