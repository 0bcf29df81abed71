"""The Python client of the inferpipe HTTP API: `Client` (sync) and `AsyncClient` (async).

Both speak the same calls, described once (`_calls`): each method builds a request and the
parser of its answer, and only the transport differs. Results are the API's own wire models
(`inferpipe.wire.schemas`); errors are `ApiError`s carrying the API's code, message, status
and per-field details. `stream` follows a run's events over server-sent events, resuming by
itself after a dropped connection (`inferpipe._client_stream`).

Example::

    from inferpipe.client import Client

    with Client("http://127.0.0.1:8288", api_key="ip_acme_...") as client:
        sent = client.send({"name": "support/ticket.created", "data": {"id": "tk_1"}})
        run = client.wait_for_run(sent.runs_created[0], timeout_s=30)
        for step in client.steps(run.id).items:
            print(step.name, step.status, step.duration_ms)
        for event in client.stream(run.id):          # replayed, then live, until the end
            print(event.index, event.data)
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import httpx
from httpx_sse import aconnect_sse, connect_sse

from inferpipe._client_errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTooLargeError,
    ServerError,
    raise_for,
)
from inferpipe._client_stream import RETRY_FOR_S, Reconnect, RunStreamReader, stream_timeout
from inferpipe.core.events import Event
from inferpipe.core.records import RunStatus
from inferpipe.core.topics import StreamEvent
from inferpipe.wire.schemas import (
    MAX_WAIT_S,
    EventInfo,
    FunctionInfo,
    LogInfo,
    Page,
    RunInfo,
    ScoreInfo,
    SendResult,
    StepInfo,
)

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8288"
DEFAULT_TIMEOUT_S = 30.0
API_KEY_ENV = "INFERPIPE_API_KEY"
"""The environment variable read when no `api_key` is given."""

EventLike = Event | Mapping[str, Any]
TimeLike = int | datetime | str


# calls --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


def _params(**values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value is False:
            continue
        if isinstance(value, datetime):
            out[name] = value.isoformat()
        elif value is True:
            out[name] = "true"
        elif isinstance(value, RunStatus):
            out[name] = value.value
        else:
            out[name] = value
    return out


def _event_body(event: EventLike) -> dict[str, Any]:
    if isinstance(event, Event):
        raw: dict[str, Any] = {
            "name": event.name,
            "data": event.data,
            "user": event.user,
            "id": event.id,
            "ts": event.ts_ms,
        }
        return {k: v for k, v in raw.items() if v is not None}
    return dict(event)


def _page(model: type[T]) -> Callable[[Any], Page[T]]:
    return Page[model].model_validate  # type: ignore[valid-type]


class _calls:  # noqa: N801 - a namespace of request builders, one per API operation
    @staticmethod
    def send(events: EventLike | Sequence[EventLike]) -> _Call[SendResult]:
        if isinstance(events, Event | Mapping):
            body: Any = _event_body(events)
        else:
            body = [_event_body(e) for e in events]
        return _Call("POST", "/v1/events", SendResult.model_validate, json=body)

    @staticmethod
    def list_events(**query: Any) -> _Call[Page[EventInfo]]:
        return _Call("GET", "/v1/events", _page(EventInfo), _params(**query))

    @staticmethod
    def get_event(event_id: str) -> _Call[EventInfo]:
        return _Call("GET", f"/v1/events/{_seg(event_id)}", EventInfo.model_validate)

    @staticmethod
    def event_runs(event_id: str, **query: Any) -> _Call[Page[RunInfo]]:
        path = f"/v1/events/{_seg(event_id)}/runs"
        return _Call("GET", path, _page(RunInfo), _params(**query))

    @staticmethod
    def invoke(function_id: str, data: Mapping[str, Any] | None) -> _Call[str]:
        path = f"/v1/functions/{_seg(function_id)}/invoke"
        return _Call("POST", path, lambda b: str(b["run_id"]), json={"data": dict(data or {})})

    @staticmethod
    def functions() -> _Call[list[FunctionInfo]]:
        return _Call("GET", "/v1/functions", lambda b: _page(FunctionInfo)(b).items)

    @staticmethod
    def list_runs(**query: Any) -> _Call[Page[RunInfo]]:
        return _Call("GET", "/v1/runs", _page(RunInfo), _params(**query))

    @staticmethod
    def get_run(run_id: str, full: bool, wait_s: float = 0) -> _Call[RunInfo]:
        path = f"/v1/runs/{_seg(run_id)}"
        return _Call("GET", path, RunInfo.model_validate, _params(full=full, wait_s=wait_s or None))

    @staticmethod
    def steps(run_id: str, **query: Any) -> _Call[Page[StepInfo]]:
        path = f"/v1/runs/{_seg(run_id)}/steps"
        return _Call("GET", path, _page(StepInfo), _params(**query))

    @staticmethod
    def step(run_id: str, step_key: str) -> _Call[StepInfo]:
        path = f"/v1/runs/{_seg(run_id)}/steps/{_seg(step_key)}"
        return _Call("GET", path, StepInfo.model_validate)

    @staticmethod
    def output(run_id: str, step_key: str | None) -> _Call[Any]:
        step = f"/steps/{_seg(step_key)}" if step_key is not None else ""
        return _Call("GET", f"/v1/runs/{_seg(run_id)}{step}/output", lambda body: body)

    @staticmethod
    def logs(run_id: str, **query: Any) -> _Call[Page[LogInfo]]:
        return _Call("GET", f"/v1/runs/{_seg(run_id)}/logs", _page(LogInfo), _params(**query))

    @staticmethod
    def scores(run_id: str) -> _Call[list[ScoreInfo]]:
        path = f"/v1/runs/{_seg(run_id)}/scores"
        return _Call("GET", path, lambda b: _page(ScoreInfo)(b).items)

    @staticmethod
    def score(
        run_id: str,
        name: str,
        value: float | bool,
        reason: str | None,
        metadata: Mapping[str, Any] | None,
        score_id: str | None,
    ) -> _Call[ScoreInfo]:
        body = {"name": name, "value": value, "reason": reason, "metadata": dict(metadata or {})}
        path = f"/v1/runs/{_seg(run_id)}/scores"
        return _Call("POST", path, ScoreInfo.model_validate, json={**body, "id": score_id})

    @staticmethod
    def cancel(run_id: str, reason: str | None) -> _Call[RunInfo]:
        body = {"reason": reason} if reason else None
        path = f"/v1/runs/{_seg(run_id)}/cancel"
        return _Call("POST", path, RunInfo.model_validate, json=body)

    @staticmethod
    def rerun(run_id: str, start: Literal["start", "failed_step"]) -> _Call[RunInfo]:
        path = f"/v1/runs/{_seg(run_id)}/rerun"
        return _Call("POST", path, RunInfo.model_validate, json={"from": start})

    @staticmethod
    def ready() -> _Call[bool]:
        return _Call("GET", "/readyz", lambda b: b.get("status") == "ready")


def _seg(value: str) -> str:
    """A path segment, escaped so an id cannot change the route."""
    return urllib.parse.quote(str(value), safe="")


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    headers = {"User-Agent": "inferpipe-client"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _rerun_from(from_failed_step: bool) -> Literal["start", "failed_step"]:
    return "failed_step" if from_failed_step else "start"


POLL_START_S = 0.05
POLL_MAX_S = 1.0


class _RunWait:
    """One `wait_for_run`: a wait for the run's finish is a long poll (the server answers when
    the run finishes), a wait for other statuses polls with backoff."""

    def __init__(
        self,
        run_id: str,
        timeout_s: float,
        statuses: Sequence[RunStatus | str] | None,
        request_timeout_s: float,
    ) -> None:
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.wanted = frozenset(RunStatus(s) for s in statuses) if statuses is not None else None
        self.long_poll = self.wanted is None or all(s.finished for s in self.wanted)
        self.deadline = time.monotonic() + timeout_s
        # Each read must end well within the client's own timeout.
        self.hold_s = min(MAX_WAIT_S, request_timeout_s / 2)
        self.delay_s = POLL_START_S

    def call(self) -> _Call[RunInfo]:
        remaining = self.deadline - time.monotonic()
        wait_s = max(0.0, min(remaining, self.hold_s)) if self.long_poll else 0
        return _calls.get_run(self.run_id, False, wait_s)

    def done(self, run: RunInfo) -> bool:
        """Whether `run` is what is waited for; TimeoutError once the time is up."""
        if run.status in self.wanted if self.wanted is not None else run.status.finished:
            return True
        if time.monotonic() >= self.deadline:
            raise TimeoutError(
                f"run {self.run_id} is still {run.status.value} after {self.timeout_s} s"
            )
        return False

    def pause_s(self) -> float:
        if self.long_poll:
            return 0.0
        pause, self.delay_s = self.delay_s, min(POLL_MAX_S, self.delay_s * 2)
        return pause


# clients ------------------------------------------------------------------------------------
class Client:
    """A synchronous client of the inferpipe API.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8288``.
        api_key: an ``ip_...`` key; defaults to $INFERPIPE_API_KEY (none: a keyless dev server).
        timeout_s: per-request timeout.
        transport: an httpx transport (tests, proxies).

    Raises (from every method): `ApiError` subclasses; see `ApiError`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: _Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.json
            )
        except httpx.TransportError as exc:
            raise ApiConnectionError("connection_error", str(exc), None) from exc
        raise_for(response)
        return call.parse(response.json())

    def send(self, events: EventLike | Sequence[EventLike]) -> SendResult:
        """Send one event or a list; durable when this returns. Events are `inferpipe.Event`s
        or dicts with `name`, `data`, and optionally `user`, `id`, `ts` (Unix ms)."""
        return self._do(_calls.send(events))

    def list_events(
        self,
        *,
        name: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[EventInfo]:
        """Events newest first; pass `page.next_cursor` as `cursor` for the next page."""
        return self._do(
            _calls.list_events(name=name, since=since, until=until, limit=limit, cursor=cursor)
        )

    def get_event(self, event_id: str) -> EventInfo:
        return self._do(_calls.get_event(event_id))

    def event_runs(
        self, event_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[RunInfo]:
        """The runs an event started."""
        return self._do(_calls.event_runs(event_id, limit=limit, cursor=cursor))

    def invoke(self, function_id: str, data: Mapping[str, Any] | None = None) -> str:
        """Start a run of a function directly; returns its id."""
        return self._do(_calls.invoke(function_id, data))

    def functions(self) -> list[FunctionInfo]:
        """The registered functions with their configuration."""
        return self._do(_calls.functions())

    def list_runs(
        self,
        *,
        function: str | None = None,
        status: RunStatus | str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        workflow: str | None = None,
        version: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
        full: bool = False,
    ) -> Page[RunInfo]:
        """Runs newest first, by function, status, creation time and workflow graph (and
        version), each with its `tokens` and `cost_usd`."""
        return self._do(
            _calls.list_runs(
                function=function,
                status=status,
                since=since,
                until=until,
                workflow=workflow,
                version=version,
                limit=limit,
                cursor=cursor,
                full=full,
            )
        )

    def get_run(self, run_id: str, *, full: bool = False) -> RunInfo:
        """A run; `full` returns large inputs and outputs whole instead of a preview."""
        return self._do(_calls.get_run(run_id, full))

    def steps(
        self, run_id: str, *, full: bool = False, limit: int = 200, cursor: str | None = None
    ) -> Page[StepInfo]:
        """The run's steps in journal order (a timeline)."""
        return self._do(_calls.steps(run_id, full=full, limit=limit, cursor=cursor))

    def step(self, run_id: str, step_key: str) -> StepInfo:
        """One step by its journal key, with its whole output (what a stream event's
        `output_ref` points to)."""
        return self._do(_calls.step(run_id, step_key))

    def output(self, run_id: str, step_key: str | None = None) -> Any:
        """The whole output of a run, or of its step `step_key`, however large (what an
        `output_url` points to when the output was offloaded to the blob store)."""
        return self._do(_calls.output(run_id, step_key))

    def logs(self, run_id: str, *, limit: int = 200, cursor: str | None = None) -> Page[LogInfo]:
        return self._do(_calls.logs(run_id, limit=limit, cursor=cursor))

    def scores(self, run_id: str) -> list[ScoreInfo]:
        return self._do(_calls.scores(run_id))

    def score(
        self,
        run_id: str,
        name: str,
        value: float | bool,
        *,
        reason: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        score_id: str | None = None,
    ) -> ScoreInfo:
        """Attach a feedback score to a run; the same `score_id` again updates that score."""
        return self._do(_calls.score(run_id, name, value, reason, metadata, score_id))

    def cancel(self, run_id: str, reason: str | None = None) -> RunInfo:
        """Request cancellation; the run reaches `cancelled` once a worker stops it."""
        return self._do(_calls.cancel(run_id, reason))

    def rerun(self, run_id: str, *, from_failed_step: bool = False) -> RunInfo:
        """Run a finished run again; returns the new run."""
        return self._do(_calls.rerun(run_id, _rerun_from(from_failed_step)))

    def ready(self) -> bool:
        """Whether the server and its store answer."""
        try:
            return self._do(_calls.ready())
        except ApiError:
            return False

    def stream(
        self,
        run_id: str,
        after: int | None = None,
        *,
        attempts: Literal["final", "all"] = "final",
        retry_for_s: float = RETRY_FOR_S,
    ) -> Iterator[StreamEvent]:
        """Follow the run's stream: its lifecycle and user events after index `after`, each
        once and in order, until its final event.

        A dropped connection is resumed by itself from the last index seen (`Last-Event-ID`),
        so nothing is missed or repeated; after `retry_for_s` without receiving anything it
        raises `ApiConnectionError`. A cursor the server cannot honour raises `ApiError`
        (`cursor_ahead`, or `cursor_expired` once retention dropped the events after it).

        With `attempts="final"` (the default) each step's output comes once, the final
        attempt's: output of an attempt abandoned by a retry or a crash is left out, and if
        some of it was already delivered, a `step.abandoned` event names the attempt so it can
        be taken back (docs/streams.md). `attempts="all"` delivers every event.

        Example::

            for event in client.stream(run_id):
                if event.data["type"] == "token":
                    print(event.data["data"], end="")
        """
        reader = RunStreamReader(run_id, after, retry_for_s=retry_for_s, attempts=attempts)
        while not reader.done:
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    reader.path(),
                    headers=reader.headers(),
                    timeout=stream_timeout(self._timeout_s),
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                    reader.check(source.response)
                    for sse in source.iter_sse():
                        event = reader.message(sse)
                        if event is not None:
                            yield event
                        if reader.done:
                            return
                raise Reconnect("the server closed the stream before its end")
            except (httpx.TransportError, Reconnect) as exc:
                time.sleep(reader.lost(exc))

    def wait_for_run(
        self,
        run_id: str,
        *,
        timeout_s: float = 60.0,
        statuses: Sequence[RunStatus | str] | None = None,
    ) -> RunInfo:
        """Wait until a run finishes (the server answers as it does), or reaches one of
        `statuses` (polled); TimeoutError after `timeout_s`."""
        waiting = _RunWait(run_id, timeout_s, statuses, self._timeout_s)
        while True:
            run = self._do(waiting.call())
            if waiting.done(run):
                return run
            time.sleep(waiting.pause_s())


class AsyncClient:
    """The asynchronous twin of `Client`: the same methods, awaited."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json
            )
        except httpx.TransportError as exc:
            raise ApiConnectionError("connection_error", str(exc), None) from exc
        raise_for(response)
        return call.parse(response.json())

    async def send(self, events: EventLike | Sequence[EventLike]) -> SendResult:
        return await self._do(_calls.send(events))

    async def list_events(
        self,
        *,
        name: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[EventInfo]:
        return await self._do(
            _calls.list_events(name=name, since=since, until=until, limit=limit, cursor=cursor)
        )

    async def get_event(self, event_id: str) -> EventInfo:
        return await self._do(_calls.get_event(event_id))

    async def event_runs(
        self, event_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[RunInfo]:
        return await self._do(_calls.event_runs(event_id, limit=limit, cursor=cursor))

    async def invoke(self, function_id: str, data: Mapping[str, Any] | None = None) -> str:
        return await self._do(_calls.invoke(function_id, data))

    async def functions(self) -> list[FunctionInfo]:
        return await self._do(_calls.functions())

    async def list_runs(
        self,
        *,
        function: str | None = None,
        status: RunStatus | str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        workflow: str | None = None,
        version: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
        full: bool = False,
    ) -> Page[RunInfo]:
        return await self._do(
            _calls.list_runs(
                function=function,
                status=status,
                since=since,
                until=until,
                workflow=workflow,
                version=version,
                limit=limit,
                cursor=cursor,
                full=full,
            )
        )

    async def get_run(self, run_id: str, *, full: bool = False) -> RunInfo:
        return await self._do(_calls.get_run(run_id, full))

    async def steps(
        self, run_id: str, *, full: bool = False, limit: int = 200, cursor: str | None = None
    ) -> Page[StepInfo]:
        return await self._do(_calls.steps(run_id, full=full, limit=limit, cursor=cursor))

    async def step(self, run_id: str, step_key: str) -> StepInfo:
        return await self._do(_calls.step(run_id, step_key))

    async def output(self, run_id: str, step_key: str | None = None) -> Any:
        return await self._do(_calls.output(run_id, step_key))

    async def logs(
        self, run_id: str, *, limit: int = 200, cursor: str | None = None
    ) -> Page[LogInfo]:
        return await self._do(_calls.logs(run_id, limit=limit, cursor=cursor))

    async def scores(self, run_id: str) -> list[ScoreInfo]:
        return await self._do(_calls.scores(run_id))

    async def score(
        self,
        run_id: str,
        name: str,
        value: float | bool,
        *,
        reason: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        score_id: str | None = None,
    ) -> ScoreInfo:
        return await self._do(_calls.score(run_id, name, value, reason, metadata, score_id))

    async def cancel(self, run_id: str, reason: str | None = None) -> RunInfo:
        return await self._do(_calls.cancel(run_id, reason))

    async def rerun(self, run_id: str, *, from_failed_step: bool = False) -> RunInfo:
        return await self._do(_calls.rerun(run_id, _rerun_from(from_failed_step)))

    async def ready(self) -> bool:
        try:
            return await self._do(_calls.ready())
        except ApiError:
            return False

    async def stream(
        self,
        run_id: str,
        after: int | None = None,
        *,
        attempts: Literal["final", "all"] = "final",
        retry_for_s: float = RETRY_FOR_S,
    ) -> AsyncIterator[StreamEvent]:
        """Follow the run's stream, resuming by itself after a dropped connection (see
        `Client.stream`)."""
        reader = RunStreamReader(run_id, after, retry_for_s=retry_for_s, attempts=attempts)
        while not reader.done:
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    reader.path(),
                    headers=reader.headers(),
                    timeout=stream_timeout(self._timeout_s),
                ) as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                    reader.check(source.response)
                    async for sse in source.aiter_sse():
                        event = reader.message(sse)
                        if event is not None:
                            yield event
                        if reader.done:
                            return
                raise Reconnect("the server closed the stream before its end")
            except (httpx.TransportError, Reconnect) as exc:
                await asyncio.sleep(reader.lost(exc))

    async def wait_for_run(
        self,
        run_id: str,
        *,
        timeout_s: float = 60.0,
        statuses: Sequence[RunStatus | str] | None = None,
    ) -> RunInfo:
        waiting = _RunWait(run_id, timeout_s, statuses, self._timeout_s)
        while True:
            run = await self._do(waiting.call())
            if waiting.done(run):
                return run
            await asyncio.sleep(waiting.pause_s())


__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTooLargeError",
    "ServerError",
]
