"""What a run's end produces: lifecycle events, deferred runs, and a scorer's score."""

from __future__ import annotations

import dataclasses
from typing import Any

from inferpipe.core.errors import InvalidScoreError, error_payload
from inferpipe.core.events import (
    DEFERRED,
    FUNCTION_FAILED,
    FUNCTION_FINISHED,
    QUIET_FINISHED,
    Event,
)
from inferpipe.core.records import NewRun, Run, RunStatus, StepKind, StepRecord
from inferpipe.core.scores import (
    ScoreRecord,
    ScoreSource,
    score_event,
    score_from_output,
    validate_score,
)
from inferpipe.core.trace_context import run_span
from inferpipe.engine.functions import FunctionDef, Registry
from inferpipe.store.base import Outcome, PlannedEvent


def lifecycle_events(run: Run, outcome: Outcome, now_ms: int) -> list[Event]:
    """`inferpipe/function.finished` always; `inferpipe/function.failed` on failure."""
    trace = run_span(run.id, run.events).as_dict()
    finished = Event(
        FUNCTION_FINISHED,
        {
            "run_id": run.id,
            "function_id": run.function_id,
            "status": outcome.status.value,
            "output": outcome.output,
            "error": outcome.error,
            "reason": outcome.reason,
        },
        ts_ms=now_ms,
        id=f"finished-{run.id}",
        trace=trace,
    )
    if outcome.status is not RunStatus.FAILED:
        return [finished]
    failed = Event(
        FUNCTION_FAILED,
        {
            "run_id": run.id,
            "function_id": run.function_id,
            "error": outcome.error,
            "event": run.events[0] if run.events else None,
        },
        ts_ms=now_ms,
        id=f"failed-{run.id}",
        trace=trace,
    )
    return [finished, failed]


def finished_run(run: Run, outcome: Outcome, now_ms: int) -> Run | None:
    """The run as its accepted finish left the row (`Store.finish`), what a reader would get
    back; `run` is the run as claimed (only claims change its other columns). None for a
    cancel, whose request may have reached the row after the claim: read that one."""
    if outcome.status is RunStatus.CANCELLED:
        return None
    return dataclasses.replace(
        run,
        status=outcome.status,
        output=outcome.output,
        error=outcome.error,
        finished_at_ms=now_ms,
        ready_at_ms=None,
        lease_owner=None,
        lease_expires_at_ms=None,
        status_reason=outcome.reason,
        cancel_requested=None,
    )


def plan_finish(
    registry: Registry,
    fn: FunctionDef,
    run: Run,
    journal: dict[str, StepRecord],
    outcome: Outcome,
    now_ms: int,
) -> list[PlannedEvent]:
    """The events a finish ingests, with the runs they start: triggered functions, deferred
    runs and sampled scorers (those ride on the `function.finished` event), and a
    `score.recorded` event per score the finish writes."""
    parent = (run.events[0].get("data") or {}).get("parent") if run.events else None
    judged = parent.get("function_id", "") if isinstance(parent, dict) else ""
    events = [] if fn.quiet else lifecycle_events(run, outcome, now_ms)
    events += [score_event(score, now_ms, judged) for score in outcome.scores]
    planned = [PlannedEvent(e, registry.plan(e, now_ms, workspace=run.workspace)) for e in events]
    deferred = _deferred(registry, fn, run, journal, outcome, now_ms)
    if fn.quiet and deferred:
        carrier = Event(
            QUIET_FINISHED,
            {"run_id": run.id, "function_id": run.function_id},
            ts_ms=now_ms,
            id=f"finished-{run.id}",
        )
        planned.insert(0, PlannedEvent(carrier))
    if deferred:
        planned[0].runs.extend(deferred)
    return planned


def _parent(run: Run, outcome: Outcome) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "function_id": run.function_id,
        "status": outcome.status.value,
        "output": outcome.output,
        "error": outcome.error,
    }


def _deferred(
    registry: Registry,
    fn: FunctionDef,
    run: Run,
    journal: dict[str, StepRecord],
    outcome: Outcome,
    now_ms: int,
) -> list[NewRun]:
    defers = sorted((r for r in journal.values() if r.kind is StepKind.DEFER), key=lambda r: r.seq)
    scorers = [attached.scorer_id for attached in fn.scorers if attached.samples(run.id)]
    if not defers and not scorers:
        return []
    parent = _parent(run, outcome)
    trace = run_span(run.id, run.events)
    runs = [
        registry.deferred(rec.input["function_id"], rec.input["data"], parent, now_ms, trace)
        for rec in defers
    ]
    trigger = run.events[0]["data"] if run.events else {}
    if run.events and run.events[0].get("name") == DEFERRED:
        trigger = trigger.get("input")  # a deferred run's scorers see its own input
    for scorer_id in scorers:
        data = {"input": trigger, "output": outcome.output}
        runs.append(registry.deferred(scorer_id, data, parent, now_ms, trace))
    return runs


def scorer_outcome(fn: FunctionDef, run: Run, outcome: Outcome, now_ms: int) -> Outcome:
    """A scorer's completed outcome, with its returned Score attached to the judged run."""
    if not fn.is_scorer or outcome.status is not RunStatus.COMPLETED or not run.parent_run_id:
        return outcome
    score = score_from_output(outcome.output)
    if score is None:
        return outcome
    try:
        value = validate_score(score.name, score.value)
    except InvalidScoreError as exc:
        return Outcome(RunStatus.FAILED, error=error_payload(exc))
    record = ScoreRecord(
        id=f"{run.id}/score",
        run_id=run.parent_run_id,
        name=score.name,
        value=value,
        source=ScoreSource.SCORER,
        created_at_ms=now_ms,
        reason=score.reason,
        metadata=score.metadata or {},
        scorer_id=fn.id,
        scorer_run_id=run.id,
    )
    return Outcome(outcome.status, outcome.output, outcome.error, outcome.reason, [record])
