"""Server-sent events: a run's stream, resumable exactly, and a live tail of events.

`GET /v1/runs/{id}/stream` relays the run's topic (`inferpipe.engine.streaming`): each message's
`id:` is the event's index in the topic, so a client that lost its connection comes back with
`Last-Event-ID` (browsers' `EventSource` does it by itself) or `?after=` and receives exactly the
events it missed, then the live ones. With `?attempts=final` each step's output is sent once,
the final attempt's (`inferpipe.core.run_stream`): ids then skip what was left out, and a
message says how many events it skipped (`omitted`). The stream ends after the run's final
event. Comments (`: ping`) every `HEARTBEAT_S` keep proxies from closing an idle connection.

A cursor the topic cannot honour is refused before the stream starts, in the API's JSON error
shape: malformed (400 `invalid_cursor`), ahead of the topic (400 `cursor_ahead`), or older than
the retained history (410 `cursor_expired`). A failure once the stream has started (a subscriber
that fell too far behind, a Redis outage) is sent as an `event: error` message before closing.

`GET /v1/events/stream` tails the workspace's events by polling the store every `TAIL_POLL_S`:
best effort (a client deduplicates by event id), good enough for a dashboard's live tail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from inferpipe.core.errors import RunNotFoundError
from inferpipe.core.run_stream import run_topic
from inferpipe.engine.streaming import FinalAttemptStream, resolved
from inferpipe.server import query, views
from inferpipe.server.deps import RequestScope
from inferpipe.server.errors import error_body
from inferpipe.store import payloads
from inferpipe.store.base import Store
from inferpipe.streams.errors import (
    CursorExpiredError,
    FutureCursorError,
    InvalidCursorError,
    StreamError,
)
from inferpipe.streams.pubsub import StreamEvent, Subscription, parse_cursor

router = APIRouter(prefix="/v1", tags=["streams"])

HEARTBEAT_S = 15.0
"""Seconds between keep-alive comments on an idle stream."""

RETRY_MS = 1000
"""Sent as `retry:`: how long a browser waits before reconnecting after a dropped connection."""

FINAL_GRACE_S = 2.0
"""A finished run whose topic has nothing more to replay: how long to wait for a final event
still being published (the store records the end just before the stream hears of it)."""

SEND_TIMEOUT_S = 30.0
"""A client that accepts no bytes for this long is disconnected."""

TAIL_POLL_S = 0.5
"""How often the events tail asks the store for new events."""

TAIL_PAGE = 200

_STATUS_BY_STREAM_CODE = {"invalid_cursor": 400, "cursor_ahead": 400, "cursor_expired": 410}
_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

AfterQuery = Annotated[
    str | None,
    Query(
        max_length=32,
        description="Resume after this index (the `id:` of the last message seen); the "
        "`Last-Event-ID` header wins when both are sent.",
    ),
]


AttemptsQuery = Annotated[
    Literal["all", "final"],
    Query(
        description="`final`: each step's output once, the final attempt's (output of "
        "abandoned attempts is left out; a `step.abandoned` event takes back what was already "
        "sent). `all` (default): every event of the topic.",
    ),
]


@router.get("/runs/{run_id}/stream", include_in_schema=False)
async def run_stream(
    run_id: str,
    request: Request,
    scope: RequestScope,
    after: AfterQuery = None,
    attempts: AttemptsQuery = "all",
) -> Any:
    """The run's lifecycle and user events as server-sent events (see the module docstring)."""
    run = await scope.store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(run_id)
    pubsub = scope.engine.pubsub
    if pubsub is None:
        return JSONResponse(error_body("streams_disabled", "run streams are disabled"), 503)
    raw = request.headers.get("last-event-id") or after
    subscription: Subscription | FinalAttemptStream
    try:
        cursor = parse_cursor(raw)
        if attempts == "final":
            subscription = await FinalAttemptStream.open(pubsub, run_topic(run_id), cursor)
        else:
            subscription = await pubsub.subscribe_with_replay(run_topic(run_id), cursor)
    except (InvalidCursorError, FutureCursorError, CursorExpiredError) as exc:
        status = _STATUS_BY_STREAM_CODE.get(exc.code, 400)
        return JSONResponse(error_body(exc.code, str(exc)), status)
    except StreamError as exc:  # the backend failed, or holds an entry it cannot read
        return JSONResponse(error_body(exc.code, str(exc)), 503 if exc.retryable else 500)
    grace_s = FINAL_GRACE_S if run.status.finished else None
    readers = payloads.Payloads(scope.store.blobs, scope.store.workspace, 0)
    return EventSourceResponse(
        _relay(subscription, grace_s, readers),
        ping=HEARTBEAT_S,
        send_timeout=SEND_TIMEOUT_S,
        headers=_HEADERS,
    )


async def _relay(
    subscription: Subscription | FinalAttemptStream,
    grace_s: float | None,
    readers: payloads.Payloads,
) -> AsyncIterator[Any]:
    """The subscription's events as SSE messages (offloaded user data read back), closing it
    however the stream ends."""
    async with subscription:
        yield ServerSentEvent(retry=RETRY_MS, comment="inferpipe run stream")
        try:
            async for event in _events(subscription, grace_s):
                message = _message(await resolved(event, readers))
                if isinstance(subscription, FinalAttemptStream) and subscription.omitted:
                    message["omitted"] = subscription.omitted
                yield ServerSentEvent(data=_json(message), id=str(event.index))
                if event.final:
                    break
            yield ServerSentEvent(data=_json({"reason": "the run's stream has ended"}), event="end")
        except StreamError as exc:
            body = error_body(exc.code, str(exc))
            yield ServerSentEvent(data=_json(body), event="error")


async def _events(
    subscription: Subscription | FinalAttemptStream, grace_s: float | None
) -> AsyncIterator[StreamEvent]:
    """The subscription's events; for a finished run, none after `grace_s` of silence means
    there is nothing left (the final event was replayed before, or the topic expired)."""
    iterator = subscription.__aiter__()
    while True:
        try:
            if grace_s is None:
                event = await iterator.__anext__()
            else:
                async with asyncio.timeout(grace_s):  # wait_for could drop a cancel
                    event = await iterator.__anext__()
        except (StopAsyncIteration, TimeoutError):
            return
        yield event


def _message(event: StreamEvent) -> dict[str, Any]:
    return {"index": event.index, "ts_ms": event.ts_ms, "final": event.final, "data": event.data}


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@router.get("/events/stream", include_in_schema=False)
async def events_stream(
    scope: RequestScope,
    name: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    since: query.TimeBound = None,
) -> EventSourceResponse:
    """New events of the workspace (optionally of one name) as they are received, from now or
    from `since`; each message's `id:` is the event's received time in ms."""
    since_ms = query.parse_time(since, "since")
    if since_ms is None:
        since_ms = scope.engine.clock.now_ms()
    return EventSourceResponse(
        _tail(scope.store, name, since_ms),
        ping=HEARTBEAT_S,
        send_timeout=SEND_TIMEOUT_S,
        headers=_HEADERS,
    )


async def _tail(store: Store, name: str | None, since_ms: int) -> AsyncIterator[Any]:
    yield ServerSentEvent(retry=RETRY_MS, comment="inferpipe events tail")
    mark_ms, seen = since_ms, set[str]()
    while True:
        fresh = await _new_events(store, name, mark_ms, seen)
        for event in fresh:
            info = views.event_info(event).model_dump(mode="json")
            yield ServerSentEvent(data=_json(info), id=str(info["received_at_ms"]))
        if fresh:
            newest = max(int(e["received_at"]) for e in fresh)
            if newest > mark_ms:
                mark_ms, seen = newest, set()
            seen |= {str(e["id"]) for e in fresh if int(e["received_at"]) == mark_ms}
        await asyncio.sleep(TAIL_POLL_S)


async def _new_events(
    store: Store, name: str | None, mark_ms: int, seen: set[str]
) -> list[dict[str, Any]]:
    """Events received at or after `mark_ms` not already sent, oldest first."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await store.list_events(name=name, since_ms=mark_ms, limit=TAIL_PAGE, cursor=cursor)
        found += [e for e in page.items if str(e["id"]) not in seen]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    found.reverse()
    return found
