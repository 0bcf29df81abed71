"""The runs of one saved graph, newest first, each with the version it runs.

A graph's runs live under two functions: `workflow-run` (started through the API, the CLI or
`WorkflowRuntime.run`, the graph named in the event's data) and `workflow:<graph id>` (started
by the graph's own trigger). Both lists are read newest first and merged by run id, so a page
and its cursor cover them as one list. The version comes from the run's first step, which
resolved it (`resolve-graph`), or, before that step ran, from the version the run asked for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from inferpipe.core.records import Run, StepRecord
from inferpipe.store.base import RunFilter, Store
from inferpipe.workflows.runtime import RESOLVE_STEP, TRIGGER_FUNCTION_PREFIX, WORKFLOW_FUNCTION_ID

BATCH = 100
"""Runs read from the store at a time, per function."""

MAX_SCAN = 1000
"""Runs looked at per page at most, so a rare version cannot make one request read them all."""


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


def graph_filters(graph_id: str, base: RunFilter | None = None) -> list[RunFilter]:
    """The functions whose runs may be runs of `graph_id` (narrowed by `base`'s status and
    times; a `base` function other than these leaves none)."""
    base = base or RunFilter()
    functions = [WORKFLOW_FUNCTION_ID, TRIGGER_FUNCTION_PREFIX + graph_id]
    return [
        replace(base, function_id=function)
        for function in functions
        if base.function_id in (None, function)
    ]


@dataclass
class GraphRunsPage:
    """Runs of a graph found by `find_graph_runs`, each with its steps and the version it runs;
    `next_cursor` (a run id) is where the next page starts, None after the last."""

    items: list[tuple[Run, list[StepRecord], int | None]]
    next_cursor: str | None
    scanned: int


async def find_graph_runs(
    store: Store,
    graph_id: str,
    *,
    version: int | None,
    limit: int,
    before: str | None,
    base: RunFilter | None = None,
) -> GraphRunsPage:
    """Up to `limit` runs of `graph_id` (of `version` when given) newest first, after `before`.
    At most MAX_SCAN runs are looked at: a page may be short and still have a next cursor."""
    runs = MergedRuns(store, graph_filters(graph_id, base), before)
    found: list[tuple[Run, list[StepRecord], int | None]] = []
    scanned, position, exhausted = 0, None, False
    while len(found) < limit and scanned < MAX_SCAN:
        run = await runs.next()
        if run is None:
            exhausted = True
            break
        scanned += 1
        position = run.id
        if not runs_graph(run, graph_id):
            continue
        steps = await store.get_steps(run.id)
        ran = graph_version(run, steps)
        if version is not None and ran != version:
            continue
        found.append((run, steps, ran))
    if not exhausted and len(found) == limit:
        exhausted = await runs.next() is None
    return GraphRunsPage(found, None if exhausted else position, scanned)


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
