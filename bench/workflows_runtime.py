"""Per-node overhead of running a graph: 50 no-op transform nodes vs. 50 plain steps.

Both run on the embedded SQLite store in one process, on a virtual clock, twice: with the file
on disk (every commit is fsync'd, which dominates and varies with the machine) and on tmpfs
(/dev/shm: fsync costs nothing, so what remains is the engine's and the interpreter's CPU).
The graph run also has its `resolve-graph` step and plan load; a chain makes every node wait
for the previous one (as the plain steps do), a wide graph runs them all at once.

Run: .venv/bin/python -m bench.workflows_runtime [--nodes 50] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import inferpipe as ip
from inferpipe.testing import Harness
from inferpipe.workflows.graphstore import MemoryGraphStore
from inferpipe.workflows.runtime import WorkflowRuntime

TMPFS = "/dev/shm"


def chain_graph(count: int) -> dict[str, Any]:
    nodes = [{"id": "n0", "type": "transform", "expression": "input.q"}]
    nodes += [
        {"id": f"n{i}", "type": "transform", "expression": f"nodes.n{i - 1}.output"}
        for i in range(1, count)
    ]
    return _graph("chain", nodes, {"last": f"nodes.n{count - 1}.output"})


def wide_graph(count: int) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": "transform", "expression": "input.q"} for i in range(count)]
    return _graph("wide", nodes, {f"o{i}": f"nodes.n{i}.output" for i in range(count)})


def _graph(graph_id: str, nodes: list[dict[str, Any]], output: dict[str, str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    return {"id": graph_id, "name": graph_id, "input_schema": schema, "nodes": nodes,
            "output": output}  # fmt: skip


def build_app(count: int) -> tuple[ip.App, WorkflowRuntime]:
    app = ip.App("bench-workflows")

    async def noop(i: int) -> int:
        return i

    @app.function(id="plain-steps")
    async def plain_steps(ctx: ip.Context) -> int:
        total = 0
        for i in range(count):
            total += await ctx.step.run(f"step-{i}", noop, i)
        return total

    return app, WorkflowRuntime(app, MemoryGraphStore())


async def timed(h: Harness, start: Any) -> float:
    began = time.perf_counter()
    run = await h.settle(await start())
    elapsed = time.perf_counter() - began
    assert run is not None and run.status is ip.RunStatus.COMPLETED, run and run.error
    return elapsed


async def measure(count: int, repeat: int, folder: str | None) -> dict[str, float]:
    """Median seconds per run of each kind, with the database in `folder`."""
    app, runtime = build_app(count)
    results: dict[str, list[float]] = {"plain": [], "chain": [], "wide": []}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        async with Harness(app, path=Path(tmp) / "bench.db") as h:
            await runtime.save(chain_graph(count))
            await runtime.save(wide_graph(count))
            starts = {
                "plain": lambda: h.invoke("plain-steps"),
                "chain": lambda: runtime.run("chain", {"q": "x"}),
                "wide": lambda: runtime.run("wide", {"q": "x"}),
            }
            for start in starts.values():  # warm-up: imports, plan cache, SQLite pages
                await timed(h, start)
            for _ in range(repeat):
                for name, start in starts.items():
                    results[name].append(await timed(h, start))
    return {name: statistics.median(values) for name, values in results.items()}


def report(title: str, n: int, medians: dict[str, float]) -> None:
    plain = medians["plain"]
    print(f"{title}")
    print(f"  {n} plain steps:        {plain * 1000:8.1f} ms  ({plain / n * 1000:.3f} ms/step)")
    for name in ("chain", "wide"):
        total = medians[name]
        extra_ms = (total - plain) / n * 1000
        print(
            f"  {n}-node graph ({name}): {total * 1000:8.1f} ms  "
            f"({total / n * 1000:.3f} ms/node, {extra_ms:+.3f} ms/node vs. a step, "
            f"ratio {total / plain:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    places: list[tuple[str, str | None]] = [("SQLite on disk (fsync per commit)", None)]
    if Path(TMPFS).is_dir():
        places.append(("SQLite on tmpfs (CPU overhead only)", TMPFS))
    for title, folder in places:
        report(title, args.nodes, asyncio.run(measure(args.nodes, args.repeat, folder)))


if __name__ == "__main__":
    main()
