"""The W3C trace context of a request (`traceparent`, `tracestate` headers), which the events
and invocations it sends continue."""

from __future__ import annotations

import logging

from starlette.requests import Request

from inferpipe.core.trace_context import TRACEPARENT, TRACESTATE, TraceContext

_log = logging.getLogger("inferpipe.server")


def request_trace(request: Request) -> TraceContext | None:
    """The request's trace context; None without one. An invalid `traceparent` is ignored, as
    the W3C recommendation says (the runs it starts then begin a trace of their own): a
    malformed header from a proxy must not refuse an event."""
    header = request.headers.get(TRACEPARENT)
    if header is None:
        return None
    try:
        return TraceContext.parse(header, request.headers.get(TRACESTATE))
    except ValueError as exc:
        _log.info("ignoring the request's trace context: %s", exc)
        return None
