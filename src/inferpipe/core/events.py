"""Events: the things that happen, which trigger functions and resume waiting runs."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from inferpipe.core import json
from inferpipe.core.errors import InvalidEventError
from inferpipe.core.ids import new_id
from inferpipe.core.records import StepKind, StepRecord, StepStatus
from inferpipe.core.trace_context import check_trace

MAX_EVENT_NAME_BYTES = 256

RESERVED_PREFIX = "inferpipe/"
"""Names the engine's own events (run lifecycle, scores, cron ticks, webhook deliveries): only
the engine sends them, since functions and webhook subscribers act on them as facts."""

FUNCTION_FINISHED = "inferpipe/function.finished"
"""Sent when any run finalizes; `invoke` waits on it."""
FUNCTION_FAILED = "inferpipe/function.failed"
"""Sent when a run fails; `on_failure` handlers are triggered by it."""
QUIET_FINISHED = "inferpipe/function.finished.quiet"
"""Stored instead of `function.finished` when a quiet function's run (a shadow run) ends with
deferred runs or scorers to start: those are its only runs; no trigger, `invoke` or webhook
sees it."""


def invoke_outcome(finished: dict[str, Any]) -> tuple[bool, Any, dict[str, Any] | None]:
    """What an `invoke` step records when its child's `function.finished` event comes:
    (completed, the child's return value, the child's error). A child that did not complete
    (failed, cancelled, skipped) fails the step with its error (every field of it, e.g. a
    traceback), its message prefixed with the child's function and status, or its reason."""
    data = finished.get("data") or {}
    status = data.get("status")
    if status == "completed":
        return True, data.get("output"), None
    err = data.get("error") or {}
    detail = err.get("message") or data.get("reason") or ""
    return (
        False,
        None,
        {
            **err,
            "code": err.get("code", "invoke_failed"),
            "type": err.get("type", ""),
            "message": f"invoked {data.get('function_id')} {status}: {detail}",
            "run_id": data.get("run_id"),
        },
    )


def read_invoke_step(step: StepRecord) -> StepRecord:
    """An `invoke` step as steps record it now. One recorded before they kept the child's
    return value holds the child's whole `function.finished` event as its output (or None,
    completed, after its timeout): it reads as completed with the child's value, or failed
    with the child's error or the timeout, so old runs replay and show what new ones do."""
    if step.kind is not StepKind.INVOKE or step.status is not StepStatus.COMPLETED:
        return step
    old = step.output
    if isinstance(old, dict) and old.get("name") == FUNCTION_FINISHED and _finished(old):
        completed, output, error = invoke_outcome(old)
        status = StepStatus.COMPLETED if completed else StepStatus.FAILED
        return dataclasses.replace(step, status=status, output=output, error=error)
    timed_out = step.wake_at_ms is not None and (step.finished_at_ms or 0) >= step.wake_at_ms
    if old is None and timed_out:
        function_id = step.input.get("function_id") if isinstance(step.input, dict) else None
        error = {
            "code": "invoke_timeout",
            "type": "InvokeTimeout",
            "message": f"{function_id} did not finish in time",
        }
        return dataclasses.replace(step, status=StepStatus.FAILED, error=error)
    return step


def _finished(event: dict[str, Any]) -> bool:
    data = event.get("data")
    return isinstance(data, dict) and "run_id" in data and "status" in data


FUNCTION_INVOKED = "inferpipe/function.invoked"
"""The trigger event of a run started by direct invocation."""
DEFERRED = "inferpipe/deferred"
"""The trigger event of a deferred run (`ctx.defer`) or an attached scorer's run."""
CRON_TICK = "inferpipe/scheduled.tick"
"""The trigger event of a run started by a cron schedule."""
SCORE_RECORDED = "inferpipe/score.recorded"
"""Sent when a score is attached to a run (inline, by a scorer, or as feedback)."""


MAX_TS_MS = 253_402_300_799_999
"""The last millisecond of year 9999: a larger `ts` is a mistake (and overflows storage)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened.

    Args:
        name: what happened, e.g. ``"support/ticket.created"``.
        data: a JSON object describing it.
        user: optional JSON object about who caused it.
        id: optional producer-set id; a second event with the same id within 24 h is a
            duplicate and starts nothing. A ULID is assigned when omitted.
        ts_ms: when it happened (Unix milliseconds); defaults to when it is sent.
        trace: optional W3C trace context of what sent it (``{"traceparent": ...}``, with
            ``"tracestate"`` when there is one): the runs it starts continue that trace. Set
            from the request's headers by the HTTP API, and by the engine on the events a run
            sends and the runs it starts.
    """

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] | None = None
    id: str | None = None
    ts_ms: int | None = None
    trace: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The event as CEL and user code see it (and as it is stored)."""
        body = {
            "id": self.id,
            "name": self.name,
            "data": self.data,
            "user": self.user or {},
            "ts": self.ts_ms,
        }
        if self.trace is not None:
            body["trace"] = self.trace
        return body

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(
            name=raw["name"],
            data=raw.get("data") or {},
            user=raw.get("user") or None,
            id=raw.get("id"),
            ts_ms=raw.get("ts"),
            trace=raw.get("trace"),
        )


def validate_event(
    event: object, *, limit_bytes: int, now_ms: int | None = None, engine: bool = False
) -> Event:
    """Check an event and fill in its id and timestamp; raise InvalidEventError naming the field.

    A name under `RESERVED_PREFIX` is refused unless `engine` (the engine's own senders): a
    forged ``inferpipe/function.finished`` would otherwise resume `invoke` waits and go out as a
    signed webhook of a run that never finished."""
    if not isinstance(event, Event):
        raise InvalidEventError(f"expected an inferpipe Event, got {type(event).__name__}")
    if not isinstance(event.name, str) or not event.name.strip():
        raise InvalidEventError("event has no name: 'name' must be a non-empty string")
    if not engine and event.name.startswith(RESERVED_PREFIX):
        raise InvalidEventError(
            f"event {event.name!r}: names starting with {RESERVED_PREFIX!r} are reserved for"
            " the engine's own events"
        )
    if len(event.name.encode()) > MAX_EVENT_NAME_BYTES:
        raise InvalidEventError(f"event name is longer than {MAX_EVENT_NAME_BYTES} bytes")
    if not isinstance(event.data, dict):
        raise InvalidEventError(
            f"event {event.name!r}: 'data' must be a JSON object, got {type(event.data).__name__}"
        )
    if event.user is not None and not isinstance(event.user, dict):
        raise InvalidEventError(f"event {event.name!r}: 'user' must be a JSON object")
    if event.id is not None and (not isinstance(event.id, str) or not event.id):
        raise InvalidEventError(f"event {event.name!r}: 'id' must be a non-empty string")
    if event.ts_ms is not None and (
        isinstance(event.ts_ms, bool)
        or not isinstance(event.ts_ms, int)
        or not 0 <= event.ts_ms <= MAX_TS_MS
    ):
        raise InvalidEventError(
            f"event {event.name!r}: 'ts' must be integer Unix milliseconds"
            f" between 0 and {MAX_TS_MS}"
        )
    trace = None
    if event.trace is not None:
        try:
            trace = check_trace(event.trace)
        except ValueError as exc:
            raise InvalidEventError(f"event {event.name!r}: {exc}") from None
    json.dumps(event.as_dict(), what=f"event {event.name!r}", limit_bytes=limit_bytes)
    return Event(
        name=event.name,
        data=event.data,
        user=event.user,
        id=event.id or new_id(),
        ts_ms=event.ts_ms if event.ts_ms is not None else (now_ms or int(time.time() * 1000)),
        trace=trace,
    )
