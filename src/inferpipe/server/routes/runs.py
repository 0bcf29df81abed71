"""`/v1/runs`: list, get, the step timeline and one step, logs, scores; feedback scores, cancel
and re-run (through the engine's `Runs`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from inferpipe.core.records import RunStatus, StepRecord
from inferpipe.server import outputs, query, views
from inferpipe.server.dashboard import graph_runs
from inferpipe.server.deps import RequestScope, Scope
from inferpipe.server.errors import FieldProblem, InvalidRequestError, StepNotFoundError
from inferpipe.server.routes import CONFLICT_RESPONSE, ERROR_RESPONSES
from inferpipe.store.base import RunFilter
from inferpipe.wire import schemas
from inferpipe.workflows.spec import GRAPH_ID_PATTERN

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERROR_RESPONSES)

Full = Annotated[bool, Query(description="Return large inputs and outputs whole, not cut.")]


@router.get("", response_model=schemas.Page[schemas.RunInfo], summary="List runs")
async def list_runs(
    scope: RequestScope,
    function: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    status: RunStatus | None = None,
    since: query.TimeBound = None,
    until: query.TimeBound = None,
    workflow: Annotated[
        str | None,
        Query(pattern=GRAPH_ID_PATTERN, description="Only runs of this saved workflow graph."),
    ] = None,
    version: Annotated[
        int | None,
        Query(
            ge=1,
            le=schemas.MAX_WORKFLOW_VERSION,
            description="Only runs of this version of `workflow` (the version each run resolved).",
        ),
    ] = None,
    limit: query.Limit = query.DEFAULT_PAGE_SIZE,
    cursor: query.Cursor = None,
    full: Full = False,
) -> schemas.Page[schemas.RunInfo]:
    """Runs newest first, optionally by function, status, creation time and workflow graph
    (and version), each with its tokens and cost. With `workflow`, a page may hold fewer than
    `limit` runs and still have a `next_cursor` (at most 1000 runs are looked at per page)."""
    flt = RunFilter(
        function_id=function,
        status=status,
        since_ms=query.parse_time(since, "since"),
        until_ms=query.parse_time(until, "until"),
    )
    before = query.decode_cursor("runs", cursor)
    if workflow is None:
        if version is not None:
            raise InvalidRequestError(
                "`version` filters the runs of a `workflow`: pass both",
                [FieldProblem("query.version", "given without `workflow`")],
            )
        page = await scope.store.list_runs(flt, limit=limit, cursor=before)
        return schemas.Page[schemas.RunInfo](
            items=await outputs.run_views(scope, page.items, scope.preview_limit(full)),
            next_cursor=query.encode_cursor("runs", page.next_cursor),
        )
    found = await graph_runs.find_graph_runs(
        scope.store, workflow, version=version, limit=limit, before=before, base=flt
    )
    return schemas.Page[schemas.RunInfo](
        items=[views.run_info(r, scope.preview_limit(full), steps) for r, steps, _ in found.items],
        next_cursor=query.encode_cursor("runs", found.next_cursor),
    )


WaitS = Annotated[
    float,
    Query(
        ge=0,
        le=schemas.MAX_WAIT_S,
        description="Answer once the run has finished, or after this many seconds (a long poll).",
    ),
]


@router.get("/{run_id}", response_model=schemas.RunInfo, summary="Get a run")
async def get_run(
    run_id: str, scope: RequestScope, full: Full = False, wait_s: WaitS = 0
) -> schemas.RunInfo:
    """Status, timestamps, input, output, error, executions and parent of a run; with `wait_s`,
    once the run has finished (awaited, not polled) or `wait_s` has passed."""
    try:
        run = await scope.runs.result(run_id, timeout=wait_s, resolve=False) if wait_s else None
    except TimeoutError:
        run = None
    if run is None:
        run = await scope.runs.get(run_id)
    return await outputs.run_view(scope, run, scope.preview_limit(full))


@router.get(
    "/{run_id}/steps",
    response_model=schemas.Page[schemas.StepInfo],
    summary="The run's steps, as a timeline",
)
async def run_steps(
    run_id: str,
    scope: RequestScope,
    limit: query.Limit = query.MAX_PAGE_SIZE,
    cursor: query.Cursor = None,
    full: Full = False,
) -> schemas.Page[schemas.StepInfo]:
    """Each step's kind, status, input, output, timing, attempt, error and metadata (retry
    history; provider, model, tokens and cost of model calls), in journal order."""
    await scope.runs.get(run_id)
    steps = await scope.store.get_steps(run_id)
    page, nxt = query.page_by_seq(
        steps, lambda s: s.seq, limit, query.decode_cursor("steps", cursor)
    )
    return schemas.Page[schemas.StepInfo](
        items=[await outputs.step_view(scope, s, scope.preview_limit(full)) for s in page],
        next_cursor=query.encode_cursor("steps", nxt),
    )


@router.get(
    "/{run_id}/steps/{step_key}",
    response_model=schemas.StepInfo,
    summary="One step, with its whole input and output",
)
async def run_step(run_id: str, step_key: str, scope: RequestScope) -> schemas.StepInfo:
    """A step by its journal key, never cut: how a stream client fetches an output that a
    `step.completed` event only references (`output_ref`)."""
    return await outputs.step_view(scope, await _step(scope, run_id, step_key), None)


@router.get(
    "/{run_id}/steps/{step_key}/output",
    summary="A step's output, whole, as JSON",
    responses={200: {"content": {"application/json": {}}}},
)
async def run_step_output(run_id: str, step_key: str, scope: RequestScope) -> Response:
    """The step's output as its JSON document: where `output_url` points for an output
    offloaded to the blob store (read in the caller's workspace only)."""
    return await outputs.download(scope, (await _step(scope, run_id, step_key)).output)


@router.get(
    "/{run_id}/output",
    summary="A run's output, whole, as JSON",
    responses={200: {"content": {"application/json": {}}}},
)
async def run_output(run_id: str, scope: RequestScope) -> Response:
    """The run's output as its JSON document (null until it completes)."""
    return await outputs.download(scope, (await scope.runs.get(run_id)).output)


@router.get(
    "/{run_id}/steps/{step_key}/input",
    summary="A step's input, whole, as JSON",
    responses={200: {"content": {"application/json": {}}}},
)
async def run_step_input(run_id: str, step_key: str, scope: RequestScope) -> Response:
    """The step's input as its JSON document: where `input_url` points for an input with
    members offloaded to the blob store (read in the caller's workspace only)."""
    return await outputs.download(scope, (await _step(scope, run_id, step_key)).input)


@router.get(
    "/{run_id}/input",
    summary="A run's input, whole, as JSON",
    responses={200: {"content": {"application/json": {}}}},
)
async def run_input(run_id: str, scope: RequestScope) -> Response:
    """The run's input (the events that started it) as its JSON document."""
    return await outputs.download(scope, (await scope.runs.get(run_id)).input)


async def _step(scope: Scope, run_id: str, step_key: str) -> StepRecord:
    await scope.runs.get(run_id)
    for step in await scope.store.get_steps(run_id):
        if step.key == step_key:
            return step
    raise StepNotFoundError(run_id, step_key)


@router.get(
    "/{run_id}/logs", response_model=schemas.Page[schemas.LogInfo], summary="The run's logs"
)
async def run_logs(
    run_id: str,
    scope: RequestScope,
    limit: query.Limit = query.MAX_PAGE_SIZE,
    cursor: query.Cursor = None,
) -> schemas.Page[schemas.LogInfo]:
    await scope.runs.get(run_id)
    logs = await scope.store.get_logs(run_id)
    page, nxt = query.page_by_seq(logs, lambda g: g.seq, limit, query.decode_cursor("logs", cursor))
    return schemas.Page[schemas.LogInfo](
        items=[views.log_info(g) for g in page], next_cursor=query.encode_cursor("logs", nxt)
    )


@router.get(
    "/{run_id}/scores", response_model=schemas.Page[schemas.ScoreInfo], summary="The run's scores"
)
async def run_scores(run_id: str, scope: RequestScope) -> schemas.Page[schemas.ScoreInfo]:
    """Scores attached to the run (read through the API's `ScoreReader`)."""
    await scope.runs.get(run_id)
    scores = await scope.services.scores.scores_for_run(scope.store, run_id)
    return schemas.Page[schemas.ScoreInfo](items=scores, next_cursor=None)


@router.post(
    "/{run_id}/scores",
    status_code=201,
    response_model=schemas.ScoreInfo,
    summary="Attach a feedback score to a run",
)
async def score_run(run_id: str, body: schemas.ScoreIn, scope: RequestScope) -> schemas.ScoreInfo:
    """A feedback score (source `feedback`), before or after the run finishes; the same `id`
    again updates that score instead of adding one. `value` is a finite number or a bool."""
    score = await scope.runs.score(
        run_id, body.name, body.value, reason=body.reason, metadata=body.metadata, score_id=body.id
    )
    return views.score_info(score)


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=schemas.RunInfo,
    responses=CONFLICT_RESPONSE,
    summary="Cancel a run",
)
async def cancel_run(
    run_id: str, scope: RequestScope, body: Annotated[schemas.CancelIn | None, Body()] = None
) -> schemas.RunInfo:
    """Request cancellation: a step in flight finishes, nothing after it runs, and the run ends
    `cancelled` even if its code returns meanwhile. The run shows `cancel_requested` at once;
    one that no worker executes (queued, sleeping, waiting) is answered `cancelled` already,
    a running one once its worker has stopped it."""
    reason = body.reason if body is not None else schemas.CancelIn().reason
    cancelled = await scope.runs.cancel(run_id, reason)
    return await outputs.run_view(scope, cancelled, scope.settings.preview_bytes)


@router.post(
    "/{run_id}/rerun",
    status_code=201,
    response_model=schemas.RunInfo,
    responses=CONFLICT_RESPONSE,
    summary="Re-run a finished run",
)
async def rerun_run(
    run_id: str, scope: RequestScope, body: Annotated[schemas.RerunIn | None, Body()] = None
) -> schemas.RunInfo:
    """A new run of the same function with the same input: from the start, or from the failed
    step of a failed run (completed steps are kept and not executed again). Answers the new
    run."""
    from_failed = body is not None and body.from_ == "failed_step"
    new = await scope.runs.rerun(run_id, from_failed_step=from_failed)
    return await outputs.run_view(scope, new, scope.settings.preview_bytes)
