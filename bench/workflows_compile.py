"""Validation + compilation time of a generated 500-node workflow graph.

Run: .venv/bin/python -m bench.workflows_compile [--nodes 500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from inferpipe.core import expr
from inferpipe.workflows import spec
from inferpipe.workflows.compile import compile_graph
from inferpipe.workflows.validate import validate_graph

WIDTH = 10
"""Nodes per layer: a 500-node graph is 50 layers deep (under the default depth limit)."""


def _node(node_id: str, kind: int, upstream: list[str]) -> dict[str, Any]:
    refs = " ".join(f"{{{{ nodes.{u}.output }}}}" for u in upstream)
    if kind == 0 or not upstream:
        return {
            "id": node_id,
            "type": "llm",
            "model": "fake/echo",
            "prompt": f"Step {node_id} on {{{{ input.topic }}}}: {refs}",
            "system": "Be brief.",
        }
    if kind == 1:
        expr = " + ".join(f"string(nodes.{u}.output)" for u in upstream)
        return {"id": node_id, "type": "transform", "expression": expr}
    if kind == 2:
        return {
            "id": node_id,
            "type": "http",
            "method": "POST",
            "url": "https://api.example.com/v1/items/{{ input.topic }}",
            "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
            "body": {"text": refs, "id": node_id},
        }
    return {
        "id": node_id,
        "type": "map",
        "over": f"[nodes.{upstream[0]}.output, input.topic]",
        "node": {
            "type": "llm",
            "model": "openai/gpt-4o-mini",
            "prompt": "{{ index }}: {{ item }} about {{ input.topic }}",
        },
    }


def generate(node_count: int, seed: int = 1) -> dict[str, Any]:
    """A layered DAG: each node reads 1-3 nodes of the previous layer; every 7th layer holds a
    branch that owns two nodes of the next layer."""
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    layers: list[list[str]] = []
    for layer in range(-(-node_count // WIDTH)):
        ids = [f"n{layer}_{i}" for i in range(min(WIDTH, node_count - layer * WIDTH))]
        previous = layers[-1] if layers else []
        for position, node_id in enumerate(ids):
            upstream = rng.sample(previous, k=min(len(previous), rng.randint(1, 3)))
            if layer % 7 == 6 and position == 0 and layer * WIDTH + WIDTH < node_count:
                targets = [f"n{layer + 1}_0", f"n{layer + 1}_1"]
                nodes.append(
                    {
                        "id": node_id,
                        "type": "branch",
                        "cases": [
                            {
                                "when": f"size(string(nodes.{upstream[0]}.output)) > 10",
                                "then": targets[:1],
                            }
                        ],
                        "else": targets[1:],
                    }
                )
                continue
            nodes.append(_node(node_id, rng.randrange(4), upstream))
            if upstream and rng.random() < 0.3:
                edges.append({"source": previous[0], "target": node_id})
        layers.append(ids)
    return {
        "id": "bench-graph",
        "name": "generated",
        "nodes": nodes,
        "edges": edges,
        "input_schema": {
            "type": "object",
            "properties": {"topic": {"type": "string"}},
            "required": ["topic"],
        },
        "output": {f"o_{n}": f"nodes.{n}.output" for n in layers[-1]},
    }


def _timed(repeat: int, action: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(repeat):
        expr.compile_expr.cache_clear()  # measure cold: every CEL expression compiled again
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    text = json.dumps(generate(args.nodes))
    graph = spec.load_graph(text)
    assert validate_graph(graph) == [], validate_graph(graph)[:3]
    plan = compile_graph(graph)
    rows = [
        ("parse JSON into models", _timed(args.repeat, lambda: spec.load_graph(text))),
        ("validate", _timed(args.repeat, lambda: validate_graph(spec.load_graph(text)))),
        ("validate + compile", _timed(args.repeat, lambda: compile_graph(spec.load_graph(text)))),
    ]
    print(
        f"graph: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
        f"{len(plan.levels)} levels, {len(plan.branches)} branches; "
        f"plan JSON {len(plan.model_dump_json()) / 1024:.0f} KiB"
    )
    print("(each figure includes parsing the JSON; every template and CEL expression is parsed")
    print(" again on every run: no cache is warm)")
    for label, samples in rows:
        print(
            f"{label:<26} median {statistics.median(samples):7.1f} ms   "
            f"min {min(samples):7.1f} ms   ({args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
