"""Helpers to run workflow graphs on a Harness in tests."""

from __future__ import annotations

from typing import Any

import inferpipe as ip
from inferpipe.testing import Harness
from inferpipe.workflows.runtime import WorkflowRuntime


def task(node_id: str, task_name: str, /, **args: str) -> dict[str, Any]:
    """A task node calling `task_name` with keyword arguments given as CEL expressions."""
    return {"id": node_id, "type": "task", "task": task_name, "args": args}


def runtime(**options: Any) -> tuple[ip.App, WorkflowRuntime]:
    """A fresh app with a workflow runtime (fast retries unless told otherwise)."""
    app = ip.App("wf-test")
    options.setdefault("backoff", ip.Backoff(base_s=0.01, jitter=0))
    return app, WorkflowRuntime(app, **options)


async def run_graph(
    h: Harness, rt: WorkflowRuntime, document: dict[str, Any], data: dict[str, Any]
) -> ip.Run:
    """Save `document`, run it with `data` and settle; returns the finished run."""
    await rt.save(document)
    run = await h.settle(await rt.run(document["id"], data))
    assert run is not None
    return run


async def steps_by_key(h: Harness, run_id: str) -> dict[str, ip.StepRecord]:
    return {step.key: step for step in await h.steps(run_id)}
