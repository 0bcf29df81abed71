"""Bulk cancel and re-run: which runs an action targets (listed ids, or every run matching a
filter, at most `MAX_BULK_RUNS`), and applying it to one run."""

from __future__ import annotations

from inferpipe.core.errors import InferpipeError
from inferpipe.core.records import Run, RunStatus
from inferpipe.server import query
from inferpipe.server.dashboard import schemas as ds
from inferpipe.server.deps import Scope
from inferpipe.server.errors import FieldProblem, InvalidRequestError
from inferpipe.store.base import RunFilter
from inferpipe.wire import schemas

MAX_BULK_RUNS = 500


async def targets(scope: Scope, body: ds.BulkIn) -> list[Run]:
    """The runs `body` names (unknown ids: RunNotFoundError), or those matching its filter."""
    if (body.run_ids is None) == (body.filter is None):
        raise InvalidRequestError(
            "give either `run_ids` or `filter`",
            [FieldProblem("body.run_ids", "exactly one of run_ids and filter is required")],
        )
    if body.run_ids is not None:
        runs = []
        for run_id in dict.fromkeys(body.run_ids):
            runs.append(await scope.runs.get(run_id))
        return runs
    assert body.filter is not None
    flt = RunFilter(
        function_id=body.filter.function,
        status=RunStatus(body.filter.status) if body.filter.status else None,
        since_ms=query.parse_time(body.filter.since, "since"),
        until_ms=query.parse_time(body.filter.until, "until"),
    )
    page = await scope.store.list_runs(flt, limit=MAX_BULK_RUNS)
    if page.next_cursor is not None:
        raise InvalidRequestError(
            f"more than {MAX_BULK_RUNS} runs match: narrow the filter",
            [FieldProblem("body.filter", f"at most {MAX_BULK_RUNS} runs per bulk action")],
        )
    return page.items


async def apply(scope: Scope, body: ds.BulkIn, run: Run) -> ds.BulkItem:
    """Cancel or re-run one run; a failure is reported on its item, not raised."""
    try:
        if body.action == "cancel":
            await scope.runs.cancel(run.id, body.reason)
            return ds.BulkItem(run_id=run.id, ok=True)
        new = await scope.runs.rerun(run.id, from_failed_step=body.rerun_from == "failed_step")
        return ds.BulkItem(run_id=run.id, ok=True, new_run_id=new.id)
    except InferpipeError as exc:
        return ds.BulkItem(
            run_id=run.id, ok=False, error=schemas.ErrorOut(code=exc.code, message=str(exc))
        )
