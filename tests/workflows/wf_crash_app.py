"""An app for the workflow crash test: every task execution is appended to a log file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import inferpipe as ip
from inferpipe.workflows.runtime import WorkflowRuntime

LOG = Path(os.environ.get("WF_CRASH_LOG", "/tmp/inferpipe-wf-crash.log"))
HOLD = Path(os.environ.get("WF_CRASH_HOLD", "/tmp/inferpipe-wf-crash.hold"))

app = ip.App("wf-crash", database=os.environ.get("INFERPIPE_DATABASE_URL"))
runtime = WorkflowRuntime(app, retries=2, backoff=ip.Backoff(base_s=0.05, jitter=0))

GRAPH = {
    "id": "crashy",
    "name": "crash test",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    "nodes": [
        {"id": "a", "type": "task", "task": "mark", "args": {"name": "'a-' + input.q"}},
        {"id": "b", "type": "task", "task": "mark", "args": {"name": "'b'"}},
        {"id": "slow", "type": "task", "task": "slow"},
        {"id": "c", "type": "task", "task": "mark", "args": {"name": "'c'"}},
    ],
    "edges": [
        {"source": "a", "target": "slow"},
        {"source": "b", "target": "slow"},
        {"source": "slow", "target": "c"},
    ],
    "output": {"a": "nodes.a.output", "c": "nodes.c.output", "slow": "nodes.slow.output"},
}


def _log(name: str) -> None:
    with LOG.open("a") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())


@runtime.task("mark")
def mark(name: str) -> str:
    _log(name)
    return name


@runtime.task("slow")
def slow() -> str:
    _log("slow")
    while HOLD.exists():  # the test kills the worker while this node is in flight
        time.sleep(0.05)
    return "slow"
