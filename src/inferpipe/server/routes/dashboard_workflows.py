"""What the dashboard's workflows section reads beyond `/v1/workflows`: each saved graph with
its version count, and a graph's runs (all, or one version's) with their totals. Scoped to the
caller's workspace; 404 `workflows_not_enabled` without a `WorkflowRuntime`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from inferpipe.server import query
from inferpipe.server.dashboard import graph_runs, summaries
from inferpipe.server.dashboard import schemas as ds
from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.server.routes.dashboard import reject_repeated_query
from inferpipe.server.routes.workflows import GraphId, Workflows, version_info
from inferpipe.store.base import ScoreFilter
from inferpipe.wire import schemas

router = APIRouter(
    prefix="/v1/dashboard/workflows",
    tags=["dashboard"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(reject_repeated_query)],
)


@router.get(
    "", response_model=schemas.Page[ds.WorkflowSummary], summary="Saved graphs with versions"
)
async def list_graphs(wf: Workflows) -> schemas.Page[ds.WorkflowSummary]:
    """Every graph saved in this workspace, by id: its current version, how many versions it
    has and when the latest was saved."""
    items = []
    for head in await wf.graphs.graphs():
        versions = await wf.graphs.versions(head.graph_id)
        items.append(
            ds.WorkflowSummary(
                current=version_info(head),
                versions=len(versions),
                latest_version=versions[-1].version,
                updated_at_ms=versions[-1].created_at_ms,
            )
        )
    return schemas.Page[ds.WorkflowSummary](items=items, next_cursor=None)


@router.get("/{graph_id}/runs", response_model=ds.WorkflowRunsPage, summary="A graph's runs")
async def list_graph_runs(
    graph_id: GraphId,
    wf: Workflows,
    version: Annotated[
        int | None,
        Query(ge=1, le=schemas.MAX_WORKFLOW_VERSION, description="Only runs of this version."),
    ] = None,
    limit: query.Limit = query.DEFAULT_PAGE_SIZE,
    cursor: query.Cursor = None,
) -> ds.WorkflowRunsPage:
    """Runs of the graph newest first, started by id (`workflow-run`) or by the graph's
    trigger (`workflow:<id>`), each with the version it runs and its totals."""
    await wf.graphs.versions(graph_id)  # 404 for a graph never saved
    store = wf.scope.store
    page = await graph_runs.find_graph_runs(
        store, graph_id, version=version, limit=limit, before=query.decode_cursor("runs", cursor)
    )
    found: list[ds.WorkflowRunRow] = []
    for run, steps, ran in page.items:
        scores = await store.list_scores(ScoreFilter(run_id=run.id))
        row = summaries.run_row(run, steps, scores)
        found.append(ds.WorkflowRunRow(**row.model_dump(), graph_version=ran))
    return ds.WorkflowRunsPage(
        items=found,
        next_cursor=query.encode_cursor("runs", page.next_cursor),
        scanned=page.scanned,
    )
