"""Runs as traces: a span per run, a child span per step attempt executed, and spans for the
durable steps (sleeps, waits, invocations, sent events) with the ids children continue.

Each span is made once, by the execution that did the work: an attempt's span when its record
is committed, a sent event's when it is recorded, the run's span and its sleeps', waits' and
invocations' when the run's finish is committed (they span executions, so only the finish
knows them whole). Replayed steps are not executed, so they make no span; a run resumed in
another process continues the same trace, since the run's span id is derived from its id.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from inferpipe.core.records import Run, RunStatus, StepKind, StepRecord, StepStatus
from inferpipe.core.scores import ScoreRecord
from inferpipe.core.trace_context import TraceContext, parent_of_run, run_span, step_span
from inferpipe.engine.clock import Clock
from inferpipe.engine.lifecycle import RunListener, StepStart
from inferpipe.store.base import Outcome
from inferpipe.telemetry import genai
from inferpipe.telemetry.ids import ForcedIds

_ATTEMPT_KINDS = (StepKind.RUN, StepKind.LLM)
_ATTEMPT_ENDS = (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.RETRYING)
_DURABLE_KINDS = (StepKind.SLEEP, StepKind.WAIT_FOR_EVENT, StepKind.INVOKE)

Attributes = dict[str, AttributeValue]


def span_context(ctx: TraceContext) -> SpanContext:
    state = TraceState.from_header([ctx.state]) if ctx.state else None
    return SpanContext(
        int(ctx.trace_id, 16),
        int(ctx.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if ctx.sampled else TraceFlags.DEFAULT),
        trace_state=state,
    )


def _parent(ctx: TraceContext | None) -> otel_context.Context:
    """The context a span starts in: `ctx` as its remote parent, or none (a new trace; never
    the caller's current span)."""
    if ctx is None:
        return otel_context.Context()
    return trace.set_span_in_context(NonRecordingSpan(span_context(ctx)), otel_context.Context())


def _ns(ms: int | None, fallback_ms: int) -> int:
    return (ms if ms is not None else fallback_ms) * 1_000_000


def run_attributes(run: Run) -> Attributes:
    attrs: Attributes = {"inferpipe.run.id": run.id, "inferpipe.function.id": run.function_id}
    if run.events:
        attrs["inferpipe.event.name"] = str(run.events[0].get("name", ""))
    if run.parent_run_id:
        attrs["inferpipe.run.parent_id"] = run.parent_run_id
    return attrs


def step_attributes(run: Run, rec: StepRecord) -> Attributes:
    # Few attributes: the SDK checks each one, and this is per step (the rest is on the run).
    return {
        "inferpipe.run.id": run.id,
        "inferpipe.function.id": run.function_id,
        "inferpipe.step.id": rec.name,
        "inferpipe.step.key": rec.key,
        "inferpipe.step.kind": rec.kind.value,
        "inferpipe.step.attempt": rec.attempt,
        "inferpipe.step.status": rec.status.value,
        "inferpipe.execution": run.executions,
    }


@dataclass(frozen=True, slots=True)
class _InFlight:
    perf_ns: int  #: when it started (perf counter)
    span_id: str  #: the id its span will have
    token: contextvars.Token[
        otel_context.Context
    ]  #: what restores the current span of the step's task when it ends


class RunTraces(RunListener):
    """Makes the spans of runs as their executions report them."""

    def __init__(
        self, provider: TracerProvider, ids: ForcedIds, clock: Clock, *, capture: bool
    ) -> None:
        self._tracer = provider.get_tracer("inferpipe")
        self._ids = ids
        self._clock = clock
        self._capture = capture
        self._started: dict[str, dict[tuple[str, int], _InFlight]] = {}
        """Per run in execution: its attempts in flight."""

    def step_started(self, run: Run, step: StepStart) -> None:
        """The attempt's span id is chosen now and made the current span while the step's
        code runs, so the spans of the application's own instrumentation (an HTTP client's)
        inside the step are children of the attempt's span, made when it is recorded."""
        span_id = format(self._ids.generate_span_id(), "016x")
        current = NonRecordingSpan(span_context(run_span(run.id, run.events).child(span_id)))
        token = otel_context.attach(trace.set_span_in_context(current))
        attempt = _InFlight(time.perf_counter_ns(), span_id, token)
        self._started.setdefault(run.id, {})[(step.key, step.attempt)] = attempt

    def execution_ended(self, run: Run) -> None:
        self._started.pop(run.id, None)

    def steps_recorded(self, run: Run, steps: Sequence[StepRecord]) -> None:
        for rec in steps:
            if rec.kind in _ATTEMPT_KINDS and rec.status in _ATTEMPT_ENDS:
                self._attempt(run, rec)
            elif rec.kind is StepKind.SEND_EVENT:
                self._durable(run, rec, rec.finished_at_ms or self._clock.now_ms())

    def run_finished(self, run: Run, outcome: Outcome, journal: Mapping[str, StepRecord]) -> None:
        now = self._clock.now_ms()
        for rec in sorted(journal.values(), key=lambda r: r.seq):
            if rec.kind in _DURABLE_KINDS:
                self._durable(run, rec, now)
        ctx = run_span(run.id, run.events)
        attrs = {
            **run_attributes(run),
            "inferpipe.run.status": outcome.status.value,
            "inferpipe.run.executions": run.executions,
        }
        if outcome.reason:
            attrs["inferpipe.run.reason"] = outcome.reason
        links = [
            Link(span_context(linked))
            for event in run.events[1:]
            if (linked := TraceContext.from_dict(event.get("trace"))) is not None
        ]
        with self._ids.forced(ctx.trace_id, ctx.span_id):
            span = self._tracer.start_span(
                f"run {run.function_id}",
                context=_parent(parent_of_run(run.events)),
                kind=SpanKind.CONSUMER if run.events else SpanKind.INTERNAL,
                attributes=attrs,
                links=links,
                start_time=_ns(run.started_at_ms, run.created_at_ms),
            )
        for rec in sorted(journal.values(), key=lambda r: r.seq):
            if rec.kind is StepKind.SCORE and isinstance(rec.output, int | float):
                reason = (rec.input or {}).get("reason") if isinstance(rec.input, dict) else None
                genai.add_score(span, rec.name, float(rec.output), reason, rec.finished_at_ms)
            elif rec.kind is StepKind.EXPERIMENT and isinstance(rec.output, dict):
                span.set_attribute(
                    f"inferpipe.experiment.{rec.name}", str(rec.output.get("variant"))
                )
        score = genai.scorer_score(outcome.output) if run.parent_run_id else None
        if score is not None:
            genai.add_score(span, *score, now)
        if outcome.status is RunStatus.FAILED:
            _set_error(span, outcome.error)
        span.end(end_time=now * 1_000_000)

    def score_recorded(self, run: Run, score: ScoreRecord) -> None:
        """Feedback posted later: a short span in the run's trace, under the run's span."""
        at_ns = (score.updated_at_ms or score.created_at_ms) * 1_000_000
        span = self._tracer.start_span(
            f"score {score.name}",
            context=_parent(run_span(run.id, run.events)),
            attributes={
                **run_attributes(run),
                "inferpipe.score.id": score.id,
                "inferpipe.score.source": score.source.value,
            },
            start_time=at_ns,
        )
        genai.add_score(span, score.name, score.value, score.reason, at_ns // 1_000_000)
        span.end(end_time=at_ns)

    def _attempt(self, run: Run, rec: StepRecord) -> None:
        started = self._started.get(run.id, {}).pop((rec.key, rec.attempt), None)
        start_ns = _ns(rec.started_at_ms, self._clock.now_ms())
        run_ctx = run_span(run.id, run.events)
        if started is not None:
            otel_context.detach(started.token)  # in the step's task, as it was attached
            end_ns = start_ns + time.perf_counter_ns() - started.perf_ns
            span_id = started.span_id
        else:
            end_ns = _ns(rec.finished_at_ms, self._clock.now_ms())
            span_id = format(self._ids.generate_span_id(), "016x")
        attrs = step_attributes(run, rec)
        name, kind = f"step {rec.name}", SpanKind.INTERNAL
        if rec.kind is StepKind.LLM:
            extra, name = genai.chat_attributes(rec, capture=self._capture)
            attrs.update(extra)
            kind = SpanKind.CLIENT
        elif (tool := genai.tool_attributes(rec)) is not None:
            attrs.update(tool)
            name = f"execute_tool {genai.tool_name(rec)}"
        if rec.status is StepStatus.RETRYING and rec.wake_at_ms is not None:
            attrs["inferpipe.step.retry_at_ms"] = rec.wake_at_ms
        with self._ids.forced(run_ctx.trace_id, span_id):
            span = self._tracer.start_span(
                name, context=_parent(run_ctx), kind=kind, attributes=attrs, start_time=start_ns
            )
        if rec.status is not StepStatus.COMPLETED:
            _set_error(span, rec.error)
        span.end(end_time=max(end_ns, start_ns))

    def _durable(self, run: Run, rec: StepRecord, now_ms: int) -> None:
        """The span of a sleep, wait, invocation or sent event, with the id its children
        continue; it ends when the step did, or now for a step the run's end left open."""
        ctx = step_span(run_span(run.id, run.events), run.id, rec.key)
        attrs = step_attributes(run, rec)
        attrs.pop("inferpipe.step.attempt")
        attrs.pop("inferpipe.execution")
        info = rec.input if isinstance(rec.input, dict) else {}
        links: list[Link] = []
        kind = SpanKind.INTERNAL
        if rec.kind is StepKind.SLEEP:
            name = f"sleep {rec.name}"
            if rec.wake_at_ms is not None:
                attrs["inferpipe.sleep.until_ms"] = rec.wake_at_ms
        elif rec.kind is StepKind.WAIT_FOR_EVENT:
            name = f"wait {rec.name}"
            attrs["inferpipe.wait.event"] = str(info.get("event", ""))
            attrs["inferpipe.wait.timed_out"] = (
                rec.status is StepStatus.COMPLETED and rec.output is None
            )
            if (
                isinstance(rec.output, dict)
                and (cause := TraceContext.from_dict(rec.output.get("trace"))) is not None
            ):
                links.append(Link(span_context(cause), {"inferpipe.link": "resolved_by"}))
        elif rec.kind is StepKind.INVOKE:
            name = f"invoke {info.get('function_id', rec.name)!s}"
            attrs["inferpipe.invoke.function_id"] = str(info.get("function_id", ""))
            attrs["inferpipe.invoke.run_id"] = str(info.get("run_id", ""))
        else:
            name, kind = f"send {rec.name}", SpanKind.PRODUCER
            sent = rec.input if isinstance(rec.input, list) else []
            attrs["inferpipe.send.events"] = [str(e.get("name", "")) for e in sent]
        with self._ids.forced(ctx.trace_id, ctx.span_id):
            span = self._tracer.start_span(
                name,
                context=_parent(run_span(run.id, run.events)),
                kind=kind,
                attributes=attrs,
                links=links,
                start_time=_ns(rec.started_at_ms, now_ms),
            )
        if rec.status is StepStatus.FAILED:
            _set_error(span, rec.error)
        span.end(end_time=_ns(rec.finished_at_ms, now_ms))


def _set_error(span: trace.Span, error: Any) -> None:
    err = error if isinstance(error, dict) else {}
    message = str(err.get("message", ""))
    span.set_status(Status(StatusCode.ERROR, message or None))
    span.set_attribute("error.type", str(err.get("type") or err.get("code") or "error"))
    span.add_event(
        "exception",
        {"exception.type": str(err.get("type", "")), "exception.message": message},
    )
