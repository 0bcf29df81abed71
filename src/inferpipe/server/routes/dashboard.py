"""What the dashboard reads and does beyond the plain API: runs with their totals, why a run is
waiting, what a re-run would redo, costs, score distributions and experiments, function stats,
and bulk cancel / re-run. Every endpoint is scoped to the caller's workspace like the rest."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from inferpipe.core import expr
from inferpipe.core.errors import RunNotFoundError
from inferpipe.core.records import Run, RunStatus
from inferpipe.engine import sandbox
from inferpipe.scoring.experiments import compare
from inferpipe.server import outputs, query, views
from inferpipe.server.dashboard import bulk, explain, summaries
from inferpipe.server.dashboard import schemas as ds
from inferpipe.server.dashboard.session import Session, SessionSigner
from inferpipe.server.deps import RequestScope, Scope
from inferpipe.server.errors import ConflictError, FieldProblem, InvalidRequestError, NotFoundError
from inferpipe.server.routes import CONFLICT_RESPONSE, ERROR_RESPONSES
from inferpipe.store.base import RunFilter, ScoreFilter
from inferpipe.wire import schemas


def reject_repeated_query(request: Request) -> None:
    """Refuse a query parameter given twice (`?group=a&group=b`): every parameter here takes
    one value, and silently keeping the last one would hide the mistake."""
    params = request.query_params
    repeated = sorted({name for name in params if len(params.getlist(name)) > 1})
    if repeated:
        raise InvalidRequestError(
            f"query parameter(s) given more than once: {', '.join(map(repr, repeated))}",
            [FieldProblem(f"query.{name}", "give this parameter once") for name in repeated],
        )


router = APIRouter(
    prefix="/v1",
    tags=["dashboard"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(reject_repeated_query)],
)

MAX_WHERE_SCAN = 1000
"""Runs read at most to fill one page of a `where`-filtered list (the cursor goes on from there)."""
MAX_COST_RUNS = 2000
"""Runs read at most for a cost report (`truncated` says when more matched)."""

RECENT_EVENTS = 20
"""Recent events of an awaited name shown under a waiting run."""
FUNCTION_WINDOW = 100
"""Recent runs per function behind its volume, p95 duration and cost."""
MAX_SCORES = 20_000

Full = Annotated[bool, Query(description="Return large values whole, not cut.")]
Where = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=2000,
        description="A CEL filter over `run` (id, function_id, status, executions, output, "
        "error, ...) and `event` (the trigger: name, data, user), e.g. "
        "`event.data.plan == 'pro'`.",
    ),
]


@router.get("/dashboard/session", response_model=ds.SessionInfo, summary="Who is calling")
async def session_info(request: Request, scope: RequestScope) -> ds.SessionInfo:
    """The caller's workspace and role, how it authenticated, and (for a dashboard session)
    the CSRF token its writes must send as `X-CSRF-Token`."""
    principal = scope.principal
    session = getattr(request.state, "session", None)
    signer = getattr(request.state, "session_signer", None)
    csrf = None
    if isinstance(session, Session) and isinstance(signer, SessionSigner):
        csrf = signer.csrf_token(session)
    auth: Literal["none", "key", "session"] = (
        "session" if csrf else ("key" if principal.key_id else "none")
    )
    return ds.SessionInfo(
        workspace=principal.workspace,
        role=principal.role.value,
        can_write=principal.can_write,
        auth=auth,
        csrf_token=csrf,
        require_keys=bool(getattr(request.state, "require_keys", True)),
    )


@router.get("/dashboard/runs", response_model=ds.RunsPage, summary="Runs with their totals")
async def list_run_rows(
    scope: RequestScope,
    function: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    status: RunStatus | None = None,
    since: query.TimeBound = None,
    until: query.TimeBound = None,
    where: Where = None,
    limit: query.Limit = query.DEFAULT_PAGE_SIZE,
    cursor: query.Cursor = None,
) -> ds.RunsPage:
    """Runs newest first, each with its trigger, step count, tokens, cost and scores."""
    if where is not None:
        expr.check_variables(where, {"run", "event"}, where="query.where")
    flt = RunFilter(
        function_id=function,
        status=status,
        since_ms=query.parse_time(since, "since"),
        until_ms=query.parse_time(until, "until"),
    )
    position = query.decode_cursor("runs", cursor)
    found: list[Run] = []
    scanned, exhausted = 0, False
    while len(found) < limit and scanned < MAX_WHERE_SCAN and not exhausted:
        page = await scope.store.list_runs(flt, limit=limit, cursor=position)
        consumed = len(page.items)
        kept = await _filtered(where, page.items)
        for index, run in enumerate(page.items):
            scanned += 1
            position = run.id
            if kept[index]:
                found.append(run)
            if len(found) == limit or scanned >= MAX_WHERE_SCAN:
                consumed = index + 1
                break
        exhausted = page.next_cursor is None and consumed == len(page.items)
    rows = [await _row(scope, run) for run in found]
    return ds.RunsPage(
        items=rows,
        next_cursor=query.encode_cursor("runs", None if exhausted else position),
        scanned=scanned,
    )


async def _filtered(where: str | None, runs: list[Run]) -> list[bool]:
    """Which runs match a tenant's filter, evaluated in the sandbox's worker processes (a slow
    filter must not stop this process: CEL holds the GIL while it evaluates)."""
    if where is None:
        return [True] * len(runs)
    views = [summaries.cel_view(run) for run in runs]
    return await sandbox.default_sandbox().matches_many(where, views)


@router.get(
    "/dashboard/runs/{run_id}", response_model=ds.RunOverview, summary="A run's page header"
)
async def run_overview(run_id: str, scope: RequestScope, full: Full = False) -> ds.RunOverview:
    """The run, its totals, the events that triggered it and its child runs."""
    run = await _run(scope, run_id)
    triggers = []
    for event_id in run.event_ids or []:
        event = await scope.store.get_event(event_id)
        if event is not None:
            triggers.append(views.event_info(event))
    children = await scope.store.list_runs(RunFilter(parent_run_id=run_id), limit=100)
    return ds.RunOverview(
        run=await outputs.run_view(scope, run, scope.preview_limit(full)),
        summary=await _row(scope, run),
        trigger_events=triggers,
        children=[await _row(scope, child) for child in children.items],
    )


@router.get(
    "/dashboard/runs/{run_id}/steps/{step_key}",
    response_model=schemas.StepInfo,
    summary="One step of a run",
)
async def run_step(
    run_id: str, step_key: str, scope: RequestScope, full: Full = False
) -> schemas.StepInfo:
    """One step by its journal key (`?full=true`: its input and output whole)."""
    await _run(scope, run_id)
    for step in await scope.store.get_steps(run_id):
        if step.key == step_key:
            return await outputs.step_view(scope, step, scope.preview_limit(full))
    raise NotFoundError(f"run {run_id} has no step {step_key!r}")


@router.get("/runs/{run_id}/waiting", response_model=ds.WaitingInfo, summary="Why a run is waiting")
async def run_waiting(run_id: str, scope: RequestScope) -> ds.WaitingInfo:
    """The run's open waits, sleeps and retries. For a wait for an event: the event name, the
    match expression, timeout and lookback, and the recent events of that name with the
    expression's result on each (or its error), and the clause that failed."""
    run = await _run(scope, run_id)
    steps = await scope.store.get_steps(run_id)
    recent = {}
    for name in explain.awaited_events(steps):
        page = await scope.store.list_events(name=name, limit=RECENT_EVENTS)
        recent[name] = page.items
    return explain.explain_waits(run, steps, recent, scope.settings.preview_bytes)


@router.get(
    "/runs/{run_id}/rerun-preview",
    response_model=ds.RerunPreview,
    summary="What a re-run would reuse and execute",
)
async def run_rerun_preview(
    run_id: str,
    scope: RequestScope,
    mode: Annotated[ds.RerunFrom, Query(alias="from")] = "start",
) -> ds.RerunPreview:
    """Each step of the journal: reused (from the failed step, completed steps are kept) or
    executed again, and whether executing it repeats an effect (model call, sent event,
    invoked run, HTTP)."""
    run = await _run(scope, run_id)
    return explain.rerun_preview(run, await scope.store.get_steps(run_id), mode)


@router.get("/costs", response_model=ds.CostReport, summary="Model costs")
async def costs(
    scope: RequestScope,
    group: ds.CostGroup = "model",
    function: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    since: query.TimeBound = None,
    until: query.TimeBound = None,
) -> ds.CostReport:
    """Tokens and cost of model calls (`llm` steps) by model, function or UTC day, over runs
    created in [`since`, `until`). Calls without a price are counted, never priced at zero."""
    flt = RunFilter(
        function_id=function,
        since_ms=query.parse_time(since, "since"),
        until_ms=query.parse_time(until, "until"),
    )
    table = summaries.CostTable(group)
    cursor: str | None = None
    scanned = 0
    truncated = False
    while True:
        page = await scope.store.list_runs(flt, limit=query.MAX_PAGE_SIZE, cursor=cursor)
        for run in page.items:
            table.add_run(run, await scope.store.get_steps(run.id))
        scanned += len(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
        if scanned >= MAX_COST_RUNS:
            truncated = True
            break
    return ds.CostReport(
        group=group,
        rows=table.sorted_rows(),
        total=table.total,
        runs_scanned=scanned,
        truncated=truncated,
    )


@router.get("/dashboard/scores", response_model=ds.ScoresReport, summary="Score distributions")
async def scores_report(
    scope: RequestScope,
    name: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    function: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    since: query.TimeBound = None,
    until: query.TimeBound = None,
) -> ds.ScoresReport:
    """Per score name: count, mean, range, histogram and sources; and the experiments seen."""
    found = await scope.store.list_scores(
        ScoreFilter(
            name=name,
            function_id=function,
            since_ms=query.parse_time(since, "since"),
            until_ms=query.parse_time(until, "until"),
        ),
        limit=MAX_SCORES,
    )
    experiments = sorted({s.experiment for s in found if s.experiment})
    return ds.ScoresReport(
        names=summaries.score_stats(found), experiments=experiments, scanned=len(found)
    )


@router.get(
    "/dashboard/experiments/{experiment}",
    response_model=ds.ExperimentReport,
    summary="Compare an experiment's variants",
)
async def experiment_report(experiment: str, scope: RequestScope) -> ds.ExperimentReport:
    """Per variant and score: count, mean, stdev, 95% confidence interval, and Welch's p-value
    against the baseline variant (the alphabetically first)."""
    found = await scope.store.list_scores(ScoreFilter(experiment=experiment), limit=MAX_SCORES)
    stats = compare(experiment, found)
    return ds.ExperimentReport(
        experiment=experiment,
        baseline=stats[0].baseline if stats else None,
        variants=[
            ds.VariantOut(
                variant=s.variant,
                score=s.score,
                count=s.count,
                mean=s.mean,
                stdev=s.stdev,
                ci_low=s.ci_low,
                ci_high=s.ci_high,
                p_value=s.p_value,
                significant=s.significant,
            )
            for s in stats
        ],
    )


@router.get(
    "/dashboard/functions",
    response_model=schemas.Page[ds.FunctionStats],
    summary="Functions with recent volume, p95 duration and cost",
)
async def function_stats(scope: RequestScope) -> schemas.Page[ds.FunctionStats]:
    """Each function's configuration (triggers, retries, flow control) and, over its most
    recent runs, the count by status, the p95 duration and the known model cost."""
    items = []
    for fn in sorted(scope.engine.registry.all(), key=lambda f: f.id):
        page = await scope.store.list_runs(RunFilter(function_id=fn.id), limit=FUNCTION_WINDOW)
        by_status: dict[str, int] = {}
        durations, cost = [], 0.0
        for run in page.items:
            by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
            if run.started_at_ms is not None and run.finished_at_ms is not None:
                durations.append(run.finished_at_ms - run.started_at_ms)
            for step in await scope.store.get_steps(run.id):
                cost += summaries.llm_cost(step) or 0.0
        items.append(
            ds.FunctionStats(
                info=views.function_info(fn),
                flow=summaries.jsonable(fn.flow),
                is_scorer=fn.is_scorer,
                recent_runs=len(page.items),
                by_status=by_status,
                p95_duration_ms=summaries.p95(durations),
                cost_usd=round(cost, 8),
            )
        )
    return schemas.Page[ds.FunctionStats](items=items, next_cursor=None)


@router.post(
    "/dashboard/bulk",
    response_model=ds.BulkResult,
    responses=CONFLICT_RESPONSE,
    summary="Cancel or re-run several runs",
)
async def bulk_action(body: ds.BulkIn, scope: RequestScope) -> ds.BulkResult:
    """Cancel (unfinished runs) or re-run (finished runs) the runs listed in `run_ids`, or
    every run matching `filter`. With `dry_run`, only says which runs would be acted on. With a
    filter, `expected_count` must equal the number of matching runs (the count the preview
    showed): if runs arrived or finished since, the answer is 409 and nothing is done."""
    runs = await bulk.targets(scope, body)
    matched = len(runs)
    if body.filter is not None and not body.dry_run and body.expected_count != matched:
        raise ConflictError(
            f"{matched} runs match the filter now, not {body.expected_count}: "
            "preview the action again"
        )
    eligible, skipped = [], []
    for run in runs:
        if body.action == "cancel" and run.status.finished:
            skipped.append(ds.BulkSkip(run_id=run.id, reason=f"already {run.status.value}"))
        elif body.action == "rerun" and not run.status.finished:
            skipped.append(ds.BulkSkip(run_id=run.id, reason=f"still {run.status.value}"))
        else:
            eligible.append(run)
    result = ds.BulkResult(
        action=body.action,
        dry_run=body.dry_run,
        matched=matched,
        eligible=[r.id for r in eligible],
        ineligible=skipped,
    )
    if not body.dry_run:
        result.results = [await bulk.apply(scope, body, run) for run in eligible]
    return result


async def _row(scope: Scope, run: Run) -> ds.RunRow:
    steps = await scope.store.get_steps(run.id)
    scores = await scope.store.list_scores(ScoreFilter(run_id=run.id))
    return summaries.run_row(run, steps, scores)


async def _run(scope: Scope, run_id: str) -> Run:
    run = await scope.store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(run_id)
    return run
