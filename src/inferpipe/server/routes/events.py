"""`/v1/events`: send (one or a batch, durable before the reply), list, get, and their runs."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from inferpipe.core import json as jsonc
from inferpipe.core.events import Event
from inferpipe.core.ids import new_id
from inferpipe.server import outputs, query, trace_headers, views
from inferpipe.server.deps import RequestScope
from inferpipe.server.errors import (
    EventNotFoundError,
    FieldProblem,
    InvalidJSONError,
    InvalidRequestError,
    validation_problems,
)
from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.store.base import RunFilter
from inferpipe.wire import schemas

router = APIRouter(prefix="/v1", tags=["events"], responses=ERROR_RESPONSES)

_EVENT_REF = {"$ref": "#/components/schemas/EventIn"}

SEND_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [_EVENT_REF, {"type": "array", "items": _EVENT_REF, "minItems": 1}]
                }
            }
        },
        "description": "One event, or an array of events sent together.",
    }
}


@router.post(
    "/events",
    status_code=202,
    response_model=schemas.SendResult,
    openapi_extra=SEND_BODY,
    summary="Send events",
)
async def send_events(request: Request, scope: RequestScope) -> schemas.SendResult:
    """Store events durably, start the runs they trigger and resume the runs waiting for them.

    The answer is sent only once the events are committed. An event whose `id` was already
    received in the last 24 h is a duplicate: it is listed in `duplicates` and starts nothing.
    The W3C trace context headers (`traceparent`, `tracestate`), when valid, are kept with
    each event: the runs they start continue that trace.
    """
    payload = await json_body(request)
    events = parse_events(payload, scope.settings.max_batch_events)
    trace = trace_headers.request_trace(request)
    if trace is not None:
        events = [dataclasses.replace(e, trace=trace.as_dict()) for e in events]
    result = await scope.runs.send(events)
    scope.services.metrics.events_accepted.inc(len(result.accepted))
    return schemas.SendResult(
        ids=[e.id or "" for e in events],
        duplicates=result.duplicates,
        runs_created=result.runs_created,
    )


@router.get("/events", response_model=schemas.Page[schemas.EventInfo], summary="List events")
async def list_events(
    scope: RequestScope,
    name: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    since: query.TimeBound = None,
    until: query.TimeBound = None,
    limit: query.Limit = query.DEFAULT_PAGE_SIZE,
    cursor: query.Cursor = None,
) -> schemas.Page[schemas.EventInfo]:
    """Events newest first, optionally by name and received time (`since` <= t < `until`)."""
    page = await scope.store.list_events(
        name=name,
        since_ms=query.parse_time(since, "since"),
        until_ms=query.parse_time(until, "until"),
        limit=limit,
        cursor=query.decode_cursor("events", cursor),
    )
    return schemas.Page[schemas.EventInfo](
        items=[views.event_info(e) for e in page.items],
        next_cursor=query.encode_cursor("events", page.next_cursor),
    )


@router.get("/events/{event_id}", response_model=schemas.EventInfo, summary="Get an event")
async def get_event(event_id: str, scope: RequestScope) -> schemas.EventInfo:
    event = await scope.store.get_event(event_id)
    if event is None:
        raise EventNotFoundError(event_id)
    return await outputs.event_view(scope, event)


@router.get(
    "/events/{event_id}/data",
    summary="An event's data, whole, as JSON",
    responses={200: {"content": {"application/json": {}}}},
)
async def event_data(event_id: str, scope: RequestScope) -> Response:
    """The event's data as its JSON document: where `data_url` points for data with members
    offloaded to the blob store (read in the caller's workspace only)."""
    event = await scope.store.get_event(event_id)
    if event is None:
        raise EventNotFoundError(event_id)
    return await outputs.download(scope, event.get("data") or {})


@router.get(
    "/events/{event_id}/runs",
    response_model=schemas.Page[schemas.RunInfo],
    summary="List the runs an event started",
)
async def event_runs(
    event_id: str,
    scope: RequestScope,
    limit: query.Limit = query.DEFAULT_PAGE_SIZE,
    cursor: query.Cursor = None,
    full: bool = False,
) -> schemas.Page[schemas.RunInfo]:
    if await scope.store.get_event(event_id) is None:
        raise EventNotFoundError(event_id)
    page = await scope.store.list_runs(
        RunFilter(event_id=event_id), limit=limit, cursor=query.decode_cursor("runs", cursor)
    )
    return schemas.Page[schemas.RunInfo](
        items=await outputs.run_views(scope, page.items, scope.preview_limit(full)),
        next_cursor=query.encode_cursor("runs", page.next_cursor),
    )


async def json_body(request: Request) -> Any:
    """The request's JSON body; InvalidJSONError / InvalidRequestError naming what is wrong."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidRequestError(
            "send the body as JSON with `Content-Type: application/json`",
            [FieldProblem("header.content-type", f"expected application/json, got {media!r}")],
        )
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequestError("the request body is empty", [FieldProblem("body", "required")])
    try:
        return jsonc.loads_exact(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSONError(f"the request body is not valid JSON: {exc}") from None
    except jsonc.IntegerOutOfRangeError as exc:
        raise InvalidRequestError(str(exc), [FieldProblem("body", str(exc))]) from None


def parse_events(payload: Any, max_events: int) -> list[Event]:
    """Events from a JSON object or array, each given an id when it has none."""
    if isinstance(payload, dict):
        items, single = [payload], True
    elif isinstance(payload, list):
        items, single = payload, False
    else:
        raise InvalidRequestError(
            "the body must be an event object or an array of events",
            [FieldProblem("body", f"expected an object or an array, got {_json_type(payload)}")],
        )
    if not items:
        raise InvalidRequestError("no events to send", [FieldProblem("body", "empty array")])
    if len(items) > max_events:
        raise InvalidRequestError(
            f"too many events in one request: {len(items)} > {max_events}",
            [FieldProblem("body", f"at most {max_events} events per request")],
        )
    problems: list[FieldProblem] = []
    events: list[Event] = []
    for index, item in enumerate(items):
        try:
            model = schemas.EventIn.model_validate(item)
        except ValidationError as exc:
            problems += validation_problems(exc.errors(), ("body",) if single else ("body", index))
            continue
        events.append(Event(model.name, model.data, model.user, model.id or new_id(), model.ts))
    if problems:
        fields = ", ".join(dict.fromkeys(p.field for p in problems))
        raise InvalidRequestError(f"invalid event: check {fields}", problems)
    return events


def _json_type(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
