"""W3C trace context carried by events and runs, and the span ids of runs and their steps.

An event may carry the trace context of what sent it (`Event.trace`: the W3C `traceparent`,
optionally `tracestate`); a run takes its trigger event's. The ids of a run's span and of its
durable steps' spans (sleeps, waits, invocations, sent events) are derived from the run id and
the step key, so every process that executes part of a run, and every child run or event it
causes, names the same spans without storing anything more than that context. A run with no
context starts a trace of its own, whose id is derived from the run id too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

MAX_TRACESTATE_CHARS = 512
"""Longest `tracestate` kept (W3C: at most 32 members; 512 characters is what a vendor must
propagate)."""

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A span to continue: its trace and span ids (lowercase hex), sampled flag and the
    vendors' `tracestate`."""

    trace_id: str
    span_id: str
    sampled: bool = True
    state: str | None = None

    @classmethod
    def parse(cls, traceparent: object, tracestate: object = None) -> TraceContext:
        """Parse W3C headers; raise ValueError saying what is wrong."""
        if not isinstance(traceparent, str):
            raise ValueError("traceparent must be a string")
        found = _TRACEPARENT.fullmatch(traceparent.strip())
        if found is None:
            raise ValueError(
                f"traceparent {traceparent[:80]!r} is not 'version-traceid-parentid-flags'"
                " (2, 32, 16 and 2 lowercase hex digits)"
            )
        version, trace_id, span_id, flags, rest = found.groups()
        if version == "ff" or (version == "00" and rest):
            raise ValueError(f"traceparent {traceparent!r}: invalid for version {version}")
        if trace_id == _INVALID_TRACE_ID or span_id == _INVALID_SPAN_ID:
            raise ValueError(f"traceparent {traceparent!r}: an all-zero id is invalid")
        if tracestate is not None and not isinstance(tracestate, str):
            raise ValueError("tracestate must be a string")
        state = tracestate.strip()[:MAX_TRACESTATE_CHARS] if tracestate else None
        return cls(trace_id, span_id, bool(int(flags, 16) & 1), state or None)

    @classmethod
    def from_dict(cls, raw: object) -> TraceContext | None:
        """The context stored as `{"traceparent": ..., "tracestate": ...}`; None when absent
        or unreadable (stored contexts were checked when they were accepted)."""
        if not isinstance(raw, dict) or TRACEPARENT not in raw:
            return None
        try:
            return cls.parse(raw[TRACEPARENT], raw.get(TRACESTATE))
        except ValueError:
            return None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def as_dict(self) -> dict[str, str]:
        """The W3C headers of this context."""
        headers = {TRACEPARENT: self.traceparent}
        if self.state:
            headers[TRACESTATE] = self.state
        return headers

    def child(self, span_id: str) -> TraceContext:
        """The context of span `span_id` in this trace."""
        return TraceContext(self.trace_id, span_id, self.sampled, self.state)


def check_trace(raw: object) -> dict[str, str]:
    """An event's `trace` as stored; raise ValueError when it is not W3C trace context."""
    if not isinstance(raw, dict):
        raise ValueError("'trace' must be an object with 'traceparent' (and 'tracestate')")
    unknown = set(raw) - {TRACEPARENT, TRACESTATE}
    if unknown:
        raise ValueError(f"'trace' has unknown fields {sorted(unknown)}")
    if TRACEPARENT not in raw:
        raise ValueError("'trace' has no 'traceparent'")
    return TraceContext.parse(raw[TRACEPARENT], raw.get(TRACESTATE)).as_dict()


def _hex_digest(*parts: str, size: int) -> str:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=size).hexdigest()
    if digest.strip("0") == "":  # all zeros is not a valid id
        return digest[:-1] + "1"
    return digest


def parent_of_run(events: list[dict[str, Any]]) -> TraceContext | None:
    """The context a run continues: its (first) trigger event's, if any."""
    return TraceContext.from_dict(events[0].get("trace")) if events else None


def run_span(run_id: str, events: list[dict[str, Any]]) -> TraceContext:
    """The context of run `run_id`'s span: in its trigger's trace, or in a trace of its own."""
    parent = parent_of_run(events)
    span_id = _hex_digest("run", run_id, size=8)
    if parent is not None:
        return parent.child(span_id)
    return TraceContext(_hex_digest("trace", run_id, size=16), span_id)


def step_span(run: TraceContext, run_id: str, key: str) -> TraceContext:
    """The context of the span of durable step `key` (a sleep, wait, invocation or sent
    event) in run `run_id` whose span is `run`."""
    return run.child(_hex_digest("step", run_id, key, size=8))
