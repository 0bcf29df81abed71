"""An app for the shadow crash test: every task execution is appended to a log file, and
`slow` (a side effect) holds while a file exists."""

from __future__ import annotations

import os
import time
from pathlib import Path

import inferpipe as ip
from inferpipe.workflows.runtime import WorkflowRuntime

LOG = Path(os.environ.get("WF_SHADOW_LOG", "/tmp/inferpipe-wf-shadow.log"))
HOLD = Path(os.environ.get("WF_SHADOW_HOLD", "/tmp/inferpipe-wf-shadow.hold"))

app = ip.App("wf-shadow-crash", database=os.environ.get("INFERPIPE_DATABASE_URL"))
runtime = WorkflowRuntime(app, retries=2, backoff=ip.Backoff(base_s=0.05, jitter=0))

GRAPH = {
    "id": "shadowed",
    "name": "shadow crash test",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    "nodes": [
        {"id": "a", "type": "task", "task": "mark", "args": {"name": "'a-' + input.q"}},
        {"id": "slow", "type": "task", "task": "slow", "args": {"who": "nodes.a.output"}},
    ],
    "edges": [{"source": "a", "target": "slow"}],
    "output": {"a": "nodes.a.output", "slow": "nodes.slow.output"},
}
CANDIDATE = {"a.args": {"name": "'shadow-' + input.q"}}


def _log(line: str) -> None:
    with LOG.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@runtime.task("mark")
def mark(name: str) -> str:
    _log(name)
    return name


@runtime.task("slow", side_effect=True)
def slow(who: str) -> str:
    _log(f"slow:{who}")
    while HOLD.exists():  # the test kills the worker while this node is in flight
        time.sleep(0.05)
    return "slow"
