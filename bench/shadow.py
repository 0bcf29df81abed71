"""Does a shadow policy slow the primary runs? Latency of a graph run (start to result) with
no policy, with a policy that samples no run (the policy lookup only) and with one that
shadows every run (the shadows execute on the same worker, between and beside the primaries).

A graph of one LLM call (the fake provider) and a transform, on the embedded SQLite store in
/dev/shm (no fsync: what remains is the engine's CPU), one worker in the same process, runs
started one after another; each mode prints the median and p95 of the primaries' latency.

Run: .venv/bin/python -m bench.shadow [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import inferpipe as ip
from inferpipe.workflows.runtime import WorkflowRuntime

GRAPH: dict[str, Any] = {
    "id": "bench-shadow",
    "name": "bench",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    "nodes": [
        {"id": "answer", "type": "llm", "model": "fake/echo", "prompt": "{{ input.q }}"},
        {"id": "shape", "type": "transform", "expression": "size(nodes.answer.output)"},
    ],
    "output": {"answer": "nodes.answer.output", "size": "nodes.shape.output"},
}


async def measure(mode: str, runs: int, folder: str) -> list[float]:
    app = ip.App("bench-shadow", database=f"sqlite:///{folder}/{mode}.db")
    rt = WorkflowRuntime(app, retries=0)
    async with app:
        await rt.save(GRAPH)
        if mode != "none":
            rate = 0.0 if mode == "lookup" else 1.0
            await rt.shadow_policies().create(
                GRAPH["id"], overrides={"answer.model": "fake/summarize"}, rate=rate
            )
        worker = app.worker()
        running = asyncio.create_task(worker.run())
        latencies = []
        for i in range(runs):
            start = time.perf_counter()
            run_id = await rt.run(GRAPH["id"], {"q": f"Question {i}. More."})
            await app.engine.runs.result(run_id)
            latencies.append((time.perf_counter() - start) * 1000)
        worker.notify_shutdown()
        await worker.drain()
        running.cancel()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        for mode in ("none", "lookup", "shadow-all"):
            found = asyncio.run(measure(mode, args.runs, folder))
            p95 = statistics.quantiles(found, n=20)[-1]
            print(f"{mode:>10}: median {statistics.median(found):6.2f} ms  p95 {p95:6.2f} ms")


if __name__ == "__main__":
    main()
