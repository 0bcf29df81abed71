"""`/v1/workflows`: save graphs (every problem listed), versions, diff, roll back, start runs.

The routes serve the `WorkflowRuntime` registered on the app (`WorkflowRuntime(app)`); without
one they answer 404 `workflows_not_enabled`. Graphs are kept per workspace, in the app's
database: a caller sees, versions and runs the graphs of its own workspace only, and a run
started here runs in that workspace, as `workflow-run`, one step per node
(`node-<id>-<type>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from inferpipe.core import json as jsonc
from inferpipe.server.deps import RequestScope, Scope
from inferpipe.server.errors import FieldProblem, InvalidRequestError, NotFoundError, field_path
from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.store.graphs import VersionInfo
from inferpipe.wire import schemas
from inferpipe.workflows.errors import GraphInvalidError, Problem, WorkflowInputError
from inferpipe.workflows.graphstore import GraphStore, GraphVersion
from inferpipe.workflows.runtime import WorkflowRuntime, runtime_of
from inferpipe.workflows.spec import GRAPH_ID_PATTERN
from inferpipe.workflows.versions import FieldChange, GraphDiff

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], responses=ERROR_RESPONSES)

GraphId = Annotated[
    str, Path(pattern=GRAPH_ID_PATTERN, description="The graph's `id`, e.g. `ticket-triage`.")
]
Version = Annotated[
    int, Path(ge=1, le=schemas.MAX_WORKFLOW_VERSION, description="A saved version number.")
]

_GRAPH_BODY = (
    "A workflow graph document (JSON): `id`, `name`, `input_schema`, `nodes`, `edges`, "
    "`output`, optional `trigger`. Its JSON Schema is `inferpipe/workflows/graph.schema.json`."
)


class WorkflowsNotEnabledError(NotFoundError):
    code = "workflows_not_enabled"

    def __init__(self) -> None:
        super().__init__(
            "workflow graphs are not enabled on this server: the application registers no "
            "WorkflowRuntime (see docs/workflows.md)"
        )


class GraphRejectedError(InvalidRequestError):
    """A graph that failed validation: one detail per problem, with its node and path."""

    code = "graph_invalid"


class WorkflowInputRejectedError(InvalidRequestError):
    code = "workflow_input_invalid"


@dataclass(frozen=True, slots=True)
class WorkflowScope:
    """A request's workflow runtime and its workspace's graph store."""

    runtime: WorkflowRuntime
    scope: Scope

    @property
    def graphs(self) -> GraphStore:
        return self.runtime.graphs_for(self.scope.store.workspace)


def workflow_scope(scope: RequestScope) -> WorkflowScope:
    runtime = runtime_of(scope.services.workspaces.app)
    if runtime is None:
        raise WorkflowsNotEnabledError()
    return WorkflowScope(runtime, scope)


Workflows = Annotated[WorkflowScope, Depends(workflow_scope)]


@router.post(
    "",
    status_code=201,
    response_model=schemas.WorkflowSaved,
    responses={200: {"model": schemas.WorkflowSaved, "description": "Unchanged: not saved."}},
    summary="Save a graph as its next version",
)
async def save_workflow(
    wf: Workflows,
    response: Response,
    document: Annotated[dict[str, Any], Body(description=_GRAPH_BODY)],
) -> schemas.WorkflowSaved:
    """Validate, compile and save a graph (201). A graph equal to the current version saves
    nothing (200). An invalid graph answers 422 `graph_invalid` listing every problem, each
    with its node id and its path in the document."""
    jsonc.dumps(document, what="graph document")  # 422 for what JSON storage cannot keep
    try:
        saved = await wf.runtime.save(document, workspace=wf.scope.store.workspace)
    except GraphInvalidError as exc:
        raise _rejected(exc) from None
    if not saved.created:
        response.status_code = 200
    return schemas.WorkflowSaved(
        **version_info(saved.version.info).model_dump(), created=saved.created
    )


@router.get(
    "", response_model=schemas.Page[schemas.WorkflowVersionInfo], summary="List saved graphs"
)
async def list_workflows(wf: Workflows) -> schemas.Page[schemas.WorkflowVersionInfo]:
    """The current version of every graph saved in this workspace, by graph id."""
    heads = await wf.graphs.graphs()
    return schemas.Page[schemas.WorkflowVersionInfo](
        items=[version_info(info) for info in heads], next_cursor=None
    )


@router.get(
    "/{graph_id}/versions",
    response_model=schemas.Page[schemas.WorkflowVersionInfo],
    summary="A graph's versions",
)
async def list_versions(
    graph_id: GraphId, wf: Workflows
) -> schemas.Page[schemas.WorkflowVersionInfo]:
    """Every version of the graph, oldest first; `current` marks the one runs use."""
    infos = await wf.graphs.versions(graph_id)
    return schemas.Page[schemas.WorkflowVersionInfo](
        items=[version_info(info) for info in infos], next_cursor=None
    )


@router.get(
    "/{graph_id}/versions/{version}",
    response_model=schemas.WorkflowVersionDetail,
    summary="A saved version",
)
async def get_version(
    graph_id: GraphId, version: Version, wf: Workflows
) -> schemas.WorkflowVersionDetail:
    """The graph document as saved, and its compiled nodes with their step names."""
    return _detail(await wf.graphs.get(graph_id, version))


@router.get("/{graph_id}/diff", response_model=schemas.WorkflowDiff, summary="Diff two versions")
async def diff_versions(
    graph_id: GraphId,
    wf: Workflows,
    from_: Annotated[
        int,
        Query(alias="from", ge=1, le=schemas.MAX_WORKFLOW_VERSION, description="Older version."),
    ],
    to: Annotated[
        int, Query(ge=1, le=schemas.MAX_WORKFLOW_VERSION, description="The newer version.")
    ],
) -> schemas.WorkflowDiff:
    """Nodes added, removed and changed (field by field), edges, and graph fields."""
    return _diff(await wf.graphs.diff(graph_id, from_, to), from_, to)


@router.post(
    "/{graph_id}/rollback",
    response_model=schemas.WorkflowVersionInfo,
    summary="Make an older version current again",
)
async def rollback(
    graph_id: GraphId, body: schemas.RollbackIn, wf: Workflows
) -> schemas.WorkflowVersionInfo:
    """Runs that name no version use it from now on; history is kept, and the next save
    continues the numbering."""
    return version_info(await wf.graphs.rollback(graph_id, body.version))


@router.post(
    "/{graph_id}/runs",
    status_code=202,
    response_model=schemas.WorkflowRunStarted,
    summary="Start a run of a graph",
)
async def start_run(
    graph_id: GraphId,
    wf: Workflows,
    body: Annotated[schemas.WorkflowRunIn | None, Body()] = None,
) -> schemas.WorkflowRunStarted:
    """Run the current version (or `version`) with `input`, checked against the graph's input
    schema (422 `workflow_input_invalid`). The run is durably queued when this answers; each
    node is a step named `node-<id>-<type>` in `/v1/runs/{run_id}/steps`."""
    request = body or schemas.WorkflowRunIn()
    engine = wf.scope.engine
    # Same limit as invocation data: refuse what the store could not keep now, not later.
    jsonc.dumps(request.input, what="workflow input", limit_bytes=engine.limits.event_bytes)
    version = (await wf.graphs.get(graph_id, request.version)).info.version
    try:
        run_id = await wf.runtime.run(graph_id, request.input, version=version, engine=engine)
    except WorkflowInputError as exc:
        details = [FieldProblem("body.input", problem) for problem in exc.problems]
        raise WorkflowInputRejectedError(str(exc), details) from None
    return schemas.WorkflowRunStarted(run_id=run_id, graph_id=graph_id, version=version)


def _rejected(exc: GraphInvalidError) -> GraphRejectedError:
    details = [FieldProblem(_problem_field(p), str(p)) for p in exc.problems]
    count = len(exc.problems)
    name = f"graph {exc.graph_id!r}" if exc.graph_id else "the graph"
    noun = "problem" if count == 1 else "problems"
    return GraphRejectedError(f"{name} is invalid ({count} {noun}): see details", details)


def _problem_field(problem: Problem) -> str:
    """A problem's JSON Pointer as a field path: ``/nodes/2/prompt`` -> ``body.nodes[2].prompt``."""
    parts: list[Any] = ["body"]
    for token in problem.path.split("/")[1:]:
        text = token.replace("~1", "/").replace("~0", "~")
        # isdigit() also takes superscripts ("¹"), which int() refuses: ASCII digits only.
        parts.append(int(text) if text.isascii() and text.isdigit() else text)
    return field_path(parts)


def version_info(info: VersionInfo) -> schemas.WorkflowVersionInfo:
    """A saved version as the API answers it."""
    return schemas.WorkflowVersionInfo(
        graph_id=info.graph_id,
        version=info.version,
        name=info.name,
        content_hash=info.content_hash,
        created_at_ms=info.created_at_ms,
        current=info.current,
    )


def _detail(saved: GraphVersion) -> schemas.WorkflowVersionDetail:
    nodes = [
        schemas.WorkflowNodeInfo(
            id=node.id,
            type=node.type,
            step_name=node.step_name,
            depends_on=list(node.depends_on),
            level=node.level,
        )
        for node in (saved.plan.nodes[node_id] for node_id in saved.plan.order)
    ]
    graph = saved.graph.model_dump(mode="json", by_alias=True)
    return schemas.WorkflowVersionDetail(
        **version_info(saved.info).model_dump(), graph=graph, nodes=nodes
    )


def _diff(diff: GraphDiff, from_version: int, to_version: int) -> schemas.WorkflowDiff:
    def changes(found: tuple[FieldChange, ...]) -> list[schemas.FieldChangeInfo]:
        return [schemas.FieldChangeInfo(**change.model_dump()) for change in found]

    return schemas.WorkflowDiff(
        graph_id=diff.graph_id,
        from_version=from_version,
        to_version=to_version,
        added_nodes=list(diff.added_nodes),
        removed_nodes=list(diff.removed_nodes),
        changed_nodes=[
            schemas.NodeChangeInfo(node_id=node.node_id, fields=changes(node.fields))
            for node in diff.changed_nodes
        ],
        added_edges=[schemas.EdgeInfo(source=s, target=t) for s, t in diff.added_edges],
        removed_edges=[schemas.EdgeInfo(source=s, target=t) for s, t in diff.removed_edges],
        graph_fields=changes(diff.graph_fields),
        text=diff.render(),
    )
