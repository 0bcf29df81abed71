"""Following a run's stream over server-sent events, resuming after a dropped connection.

A private helper of `inferpipe.client`: :class:`RunStreamReader` holds what the sync and the
async client share - the request to (re)send, what each message means, when to reconnect and
when to give up - so each client's `stream` is a short loop over its own transport.

The endpoint (`GET /v1/runs/{id}/stream`) sends each event with `id:` = its index in the run's
topic; a client that lost its connection comes back with `Last-Event-ID` and receives exactly
the events it missed. The stream ends after the event marked `final`, or with an `end` message
(a finished run with nothing left to send); an `error` message carries the API's error body.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import httpx
import orjson
from httpx_sse import ServerSentEvent

from inferpipe._client_errors import ApiConnectionError, ApiError, raise_for, retry_after
from inferpipe.core.run_stream import run_topic
from inferpipe.core.topics import StreamEvent

STREAM_READ_TIMEOUT_S = 45.0
"""A stream silent this long is dead (the server sends a heartbeat every 15 s): reconnect."""

RECONNECT_FIRST_S = 1.0
"""Pause before the first reconnection, unless the server's `retry:` says otherwise."""

RECONNECT_MAX_S = 10.0
"""Longest pause between reconnections (the pause doubles after each failure)."""

RETRY_FOR_S = 60.0
"""How long the client keeps reconnecting without receiving an event before it gives up."""

_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
_PERMANENT_CODES = frozenset({"streams_disabled"})
_RETRYABLE_CODES = frozenset({"stream_unavailable"})


class Reconnect(Exception):  # noqa: N818 - a signal between the reader and its loop
    """The connection is lost or refused for now; reconnect after `delay_s` (None: backoff)."""

    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class RunStreamReader:
    """The state of one followed run stream, across reconnections.

    Args:
        run_id: The run whose stream is followed.
        after: Start after this index (None: from the first retained event).
        attempts: `final` (each step's output once, the final attempt's) or `all`.
        retry_for_s: Give up after reconnecting this long without receiving an event.
    """

    def __init__(
        self, run_id: str, after: int | None, *, retry_for_s: float, attempts: str = "final"
    ) -> None:
        if after is not None and (isinstance(after, bool) or after < 0):
            raise ValueError(f"after must be a non-negative index or None, got {after!r}")
        if attempts not in ("final", "all"):
            raise ValueError(f"attempts must be 'final' or 'all', got {attempts!r}")
        self.run_id = run_id
        self.attempts = attempts
        self.cursor = after
        self.done = False
        self._topic = run_topic(run_id)
        self._retry_for_s = retry_for_s
        self._delay_s = RECONNECT_FIRST_S
        self._first_delay_s = RECONNECT_FIRST_S
        self._failing_since: float | None = None

    def path(self) -> str:
        """The endpoint, with the run id escaped so it cannot change the route."""
        run = urllib.parse.quote(self.run_id, safe="")
        return f"/v1/runs/{run}/stream?attempts={self.attempts}"

    def headers(self) -> dict[str, str]:
        """Headers of the next request: `Last-Event-ID` once an index is known."""
        return {} if self.cursor is None else {"Last-Event-ID": str(self.cursor)}

    def check(self, response: httpx.Response) -> None:
        """Accept a stream response, or raise: `Reconnect` for a passing failure, `ApiError`
        for the others. Error responses must have been read."""
        if response.status_code < 400:
            media_type = response.headers.get("content-type", "").partition(";")[0]
            if media_type.strip() != "text/event-stream":
                raise ApiError("invalid_stream", f"not an event stream: {media_type!r}", None)
            return
        if response.status_code in _RETRYABLE_STATUSES and _code(response) not in _PERMANENT_CODES:
            raise Reconnect(f"HTTP {response.status_code}", retry_after(response))
        raise_for(response)

    def message(self, sse: ServerSentEvent) -> StreamEvent | None:
        """The event a message carries (None for control messages); sets `done` at the end."""
        if sse.retry is not None:
            self._first_delay_s = self._delay_s = max(0.0, sse.retry / 1000)
        if sse.event == "end":
            self.done = True
            return None
        if sse.event == "error":
            code, text = _error_of(sse.data)
            if code in _RETRYABLE_CODES:
                raise Reconnect(text)
            raise ApiError(code, text, None)
        if sse.event != "message" or not sse.data:
            return None  # a retry hint, or a message kind this client does not know
        event = self._event(sse.data)
        if self.cursor is not None and event.index <= self.cursor:
            return None  # already delivered: never hand the caller a duplicate
        self.cursor = event.index
        self._failing_since = None
        self._delay_s = self._first_delay_s
        self.done = event.final
        return event

    def lost(self, cause: BaseException) -> float:
        """After a failure: seconds to wait before reconnecting.

        Raises:
            ApiConnectionError: Nothing was received for `retry_for_s`.
        """
        now_s = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now_s
        if now_s - self._failing_since >= self._retry_for_s:
            raise ApiConnectionError(
                "stream_lost",
                f"the stream of run {self.run_id} could not be resumed for "
                f"{self._retry_for_s:.0f} s: {cause}",
                None,
            ) from cause
        hinted = cause.delay_s if isinstance(cause, Reconnect) else None
        delay_s = hinted if hinted is not None else self._delay_s
        self._delay_s = min(self._delay_s * 2, RECONNECT_MAX_S)
        return delay_s

    def _event(self, data: str) -> StreamEvent:
        try:
            body: Any = orjson.loads(data)
            return StreamEvent(
                self._topic,
                int(body["index"]),
                body["data"],
                int(body["ts_ms"]),
                bool(body["final"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ApiError(
                "invalid_stream", f"malformed stream message: {data[:200]!r}", None
            ) from exc


def stream_timeout(timeout_s: float) -> httpx.Timeout:
    """Timeouts of a stream request: the client's, but reads wait for missed heartbeats."""
    return httpx.Timeout(timeout_s, read=max(timeout_s, STREAM_READ_TIMEOUT_S))


def _error_of(data: str) -> tuple[str, str]:
    try:
        error = orjson.loads(data)["error"]
        return str(error["code"]), str(error["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "stream_error", data[:500] or "the stream failed"


def _code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
