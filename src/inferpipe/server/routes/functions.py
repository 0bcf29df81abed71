"""`/v1/functions`: the app's functions with their configuration, and direct invocation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request

from inferpipe.core import json as jsonc
from inferpipe.server import trace_headers, views
from inferpipe.server.deps import RequestScope
from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.wire import schemas

router = APIRouter(prefix="/v1/functions", tags=["functions"], responses=ERROR_RESPONSES)


@router.get("", response_model=schemas.Page[schemas.FunctionInfo], summary="List functions")
async def list_functions(scope: RequestScope) -> schemas.Page[schemas.FunctionInfo]:
    """Every registered function: triggers, retries and backoff, cancel_on, timeouts."""
    functions = sorted(scope.engine.registry.all(), key=lambda f: f.id)
    return schemas.Page[schemas.FunctionInfo](
        items=[views.function_info(f) for f in functions], next_cursor=None
    )


@router.post(
    "/{function_id}/invoke",
    status_code=202,
    response_model=schemas.Invoked,
    summary="Start a run of a function",
)
async def invoke_function(
    function_id: str,
    request: Request,
    scope: RequestScope,
    body: Annotated[schemas.InvokeIn | None, Body()] = None,
) -> schemas.Invoked:
    """Start a run directly (no event); `data` becomes the run's `ctx.event.data`. The run is
    durably queued when this answers; it continues the trace of the request's W3C
    `traceparent` header when valid."""
    data = body.data if body is not None else {}
    # Same limits as an event's data: refuse what the store could not keep (too large, or
    # integers beyond 64 bits) with 413 / 422 instead of failing later.
    jsonc.dumps(data, what="invocation data", limit_bytes=scope.engine.limits.event_bytes)
    run_id = await scope.runs.invoke(function_id, data, trace=trace_headers.request_trace(request))
    return schemas.Invoked(run_id=run_id)
