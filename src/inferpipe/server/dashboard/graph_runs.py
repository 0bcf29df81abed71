"""The runs of one saved graph, newest first, each with the version it runs.

A graph's runs live under two functions: `workflow-run` (started through the API, the CLI or
`WorkflowRuntime.run`, the graph named in the event's data) and `workflow:<graph id>` (started
by the graph's own trigger). Both lists are read newest first and merged by run id, so a page
and its cursor cover them as one list. The version comes from the run's first step, which
resolved it (`resolve-graph`), or, before that step ran, from the version the run asked for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from inferpipe.core.records import Run, StepRecord
from inferpipe.store.base import RunFilter, Store
from inferpipe.workflows.runtime import RESOLVE_STEP, TRIGGER_FUNCTION_PREFIX, WORKFLOW_FUNCTION_ID

BATCH = 100
"""Runs read from the store at a time, per function."""


@dataclass
class _Source:
    flt: RunFilter
    cursor: str | None
    buffer: deque[Run] = field(default_factory=deque)
    exhausted: bool = False


class MergedRuns:
    """The runs of several filters as one list, newest first (run ids descending), after
    `before` (a run id; None for the newest)."""

    def __init__(self, store: Store, filters: list[RunFilter], before: str | None) -> None:
        self.store = store
        self.sources = [_Source(flt, before) for flt in filters]

    async def next(self) -> Run | None:
        for source in self.sources:
            if not source.buffer and not source.exhausted:
                page = await self.store.list_runs(source.flt, limit=BATCH, cursor=source.cursor)
                source.buffer.extend(page.items)
                source.cursor = page.next_cursor
                source.exhausted = page.next_cursor is None
        ready = [source for source in self.sources if source.buffer]
        if not ready:
            return None
        newest = max(ready, key=lambda source: source.buffer[0].id)
        return newest.buffer.popleft()


def graph_filters(graph_id: str) -> list[RunFilter]:
    """The functions whose runs may be runs of `graph_id`."""
    return [
        RunFilter(function_id=WORKFLOW_FUNCTION_ID),
        RunFilter(function_id=TRIGGER_FUNCTION_PREFIX + graph_id),
    ]


def runs_graph(run: Run, graph_id: str) -> bool:
    """Whether `run` (of one of `graph_filters`) runs `graph_id`."""
    if run.function_id != WORKFLOW_FUNCTION_ID:
        return run.function_id == TRIGGER_FUNCTION_PREFIX + graph_id
    return _requested(run).get("graph_id") == graph_id


def graph_version(run: Run, steps: list[StepRecord]) -> int | None:
    """The version `run` executes: the one its first step resolved, else the one it asked for."""
    for step in steps:
        if step.name == RESOLVE_STEP and isinstance(step.output, dict):
            version = step.output.get("version")
            if isinstance(version, int):
                return version
    asked = _requested(run).get("version")
    return asked if isinstance(asked, int) and run.function_id == WORKFLOW_FUNCTION_ID else None


def _requested(run: Run) -> dict[str, object]:
    """The data of the event that started `run`."""
    events = run.input if isinstance(run.input, list) else []
    event = events[0] if events and isinstance(events[0], dict) else {}
    data = event.get("data")
    return data if isinstance(data, dict) else {}
