"""Explanations the dashboard gives: why a run is still waiting, and what a re-run would redo.

A wait's expression is stored with `event.` references already bound to the trigger's values,
so it only mentions `async.` (the candidate event). Each recent event of the awaited name is
evaluated against the whole expression and against each top-level `&&` clause, so the page can
say which clause failed (or raised: a missing field, a type mismatch).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from inferpipe.core import expr
from inferpipe.core.records import Run, RunStatus, StepKind, StepRecord, StepStatus
from inferpipe.server import views
from inferpipe.server.dashboard import schemas as ds

OPEN_WAIT_STATUSES = (StepStatus.WAITING, StepStatus.SLEEPING, StepStatus.RETRYING)

SIDE_EFFECT_KINDS = {
    StepKind.LLM: "llm",
    StepKind.SEND_EVENT: "send_event",
    StepKind.INVOKE: "invoke",
}
"""Step kinds whose execution reaches outside the run (an `http` step is recognised by name)."""


def explain_waits(
    run: Run,
    steps: list[StepRecord],
    recent: dict[str, list[dict[str, Any]]],
    preview_bytes: int,
) -> ds.WaitingInfo:
    """Why `run` is not progressing: its open waits, sleeps and retries; for a wait, the recent
    events of its name (`recent`, newest first) with what its expression made of each."""
    open_steps = [s for s in steps if s.status in OPEN_WAIT_STATUSES]
    waits = [
        _explain(step, recent.get(str(_input(step).get("event")), []), preview_bytes)
        for step in open_steps
    ]
    waiting = run.status in (RunStatus.WAITING, RunStatus.SLEEPING) and bool(waits)
    if waiting:
        message = "; ".join(w.summary for w in waits)
    elif run.status is RunStatus.QUEUED:
        message = run.status_reason or "queued: waiting for a worker to claim it"
    elif run.status.finished:
        message = f"the run has finished ({run.status.value})"
    else:
        message = f"the run is {run.status.value}"
    return ds.WaitingInfo(
        run_id=run.id,
        status=run.status,
        status_reason=run.status_reason,
        waiting=waiting,
        message=message,
        waits=waits,
    )


def awaited_events(steps: list[StepRecord]) -> set[str]:
    """The event names the run's open waits are for."""
    return {
        str(_input(s)["event"])
        for s in steps
        if s.kind is StepKind.WAIT_FOR_EVENT
        and s.status is StepStatus.WAITING
        and _input(s).get("event")
    }


def _explain(
    step: StepRecord, recent: list[dict[str, Any]], preview_bytes: int
) -> ds.WaitExplanation:
    info = _input(step)
    base: dict[str, Any] = {
        "step_key": step.key,
        "step_name": step.name,
        "kind": step.kind,
        "status": step.status,
        "started_at_ms": step.started_at_ms,
        "expires_at_ms": step.wake_at_ms,
    }
    if step.kind is StepKind.INVOKE:
        child = info.get("run_id")
        return ds.WaitExplanation(
            **base,
            event="inferpipe/function.finished",
            child_run_id=str(child) if child else None,
            summary=f"step {step.name!r} waits for child run {child} "
            f"({info.get('function_id')}) to finish",
        )
    if step.kind is not StepKind.WAIT_FOR_EVENT:
        what = "retries" if step.status is StepStatus.RETRYING else "sleeps"
        return ds.WaitExplanation(
            **base, summary=f"step {step.name!r} {what} until {_at(step.wake_at_ms)}"
        )
    event = str(info.get("event") or "")
    expression = info.get("if") if isinstance(info.get("if"), str) else None
    lookback_ms = _opt_int(info.get("lookback_ms"))
    opened_ms = (step.started_at_ms or 0) - (lookback_ms or 0)
    candidates = [_candidate(e, expression, opened_ms, preview_bytes) for e in recent]
    condition = f" where {expression}" if expression else ""
    return ds.WaitExplanation(
        **base,
        event=event,
        expression=expression,
        timeout_ms=_opt_int(info.get("timeout_ms")),
        lookback_ms=lookback_ms,
        candidates=candidates,
        summary=f"step {step.name!r} waits for an event {event!r}{condition}, "
        f"until {_at(step.wake_at_ms)}",
    )


def _candidate(
    event: dict[str, Any], expression: str | None, opened_ms: int, preview_bytes: int
) -> ds.WaitCandidate:
    received = int(event.get("received_at") or 0)
    body = {k: v for k, v in event.items() if k != "received_at"}
    data, cut = views.preview(body.get("data"), preview_bytes)
    result: Any = True
    error: str | None = None
    clauses: list[ds.ClauseResult] = []
    if expression:
        result, error = _evaluate(expression, body)
        clauses = [_clause(c, body) for c in split_conjuncts(expression)]
    matched = error is None and result is True
    failed = next((c.clause for c in clauses if not c.passed), None)
    if not matched and failed is None and expression:
        failed = expression
    return ds.WaitCandidate(
        event_id=str(body.get("id")),
        received_at_ms=received,
        data=data,
        data_truncated=cut,
        matched=matched,
        result=result if error is None else None,
        error=error,
        failed_clause=failed if not matched else None,
        clauses=clauses,
        before_wait=received < opened_ms,
    )


def _clause(clause: str, event: dict[str, Any]) -> ds.ClauseResult:
    result, error = _evaluate(clause, event)
    return ds.ClauseResult(
        clause=clause, passed=error is None and result is True, result=result, error=error
    )


def _evaluate(expression: str, event: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        value = expr.evaluate(expression, {"async": event})
    except (expr.ExpressionEvalError, ValueError) as exc:
        return None, str(exc)
    except Exception as exc:  # an invalid stored expression must not break the page
        return None, f"{type(exc).__name__}: {exc}"
    return _plain(value), None


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def split_conjuncts(expression: str) -> list[str]:
    """The top-level `&&` clauses of an expression (one clause when it has a top-level `||`)."""
    parts: list[str] = []
    depth, start, index, quote = 0, 0, 0, ""
    while index < len(expression):
        char = expression[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and expression.startswith("||", index):
            return [expression.strip()]
        elif depth == 0 and expression.startswith("&&", index):
            parts.append(expression[start:index])
            start, index = index + 2, index + 1
        index += 1
    parts.append(expression[start:])
    return [p.strip() for p in parts if p.strip()]


# re-run preview -----------------------------------------------------------------------------
def rerun_preview(run: Run, steps: list[StepRecord], mode: ds.RerunFrom) -> ds.RerunPreview:
    """Which steps a re-run keeps (from the failed step: the completed ones, as the store
    copies them) and which execute again, flagging those with effects outside the run."""
    reason = None
    if not run.status.finished:
        reason = f"the run is still {run.status.value}: cancel it or wait for it to finish"
    items = []
    for step in sorted(steps, key=lambda s: s.seq):
        reuse = mode == "failed_step" and step.status is StepStatus.COMPLETED
        effect = None if reuse else side_effect_of(step)
        items.append(
            ds.PreviewStep(
                key=step.key,
                name=step.name,
                kind=step.kind,
                status=step.status,
                action="reuse" if reuse else "execute",
                side_effect=effect,
            )
        )
    executed = sum(1 for i in items if i.action == "execute")
    note = (
        "steps the code reaches after these (not yet in the journal) also execute"
        if mode == "failed_step"
        else "every step executes again from the start, with the same input"
    )
    return ds.RerunPreview(
        run_id=run.id,
        mode=mode,
        allowed=reason is None,
        reason=reason,
        reused=len(items) - executed,
        executed=executed,
        side_effects=sum(1 for i in items if i.side_effect),
        steps=items,
        note=note,
    )


def side_effect_of(step: StepRecord) -> str | None:
    """`llm`, `send_event`, `invoke` or `http` when executing `step` reaches outside the run."""
    if step.kind in SIDE_EFFECT_KINDS:
        return SIDE_EFFECT_KINDS[step.kind]
    name = step.name.lower()
    if name.endswith("-http") or name.startswith("http"):  # workflow nodes: node-<id>-http
        return "http"
    return None


def _input(step: StepRecord) -> dict[str, Any]:
    return step.input if isinstance(step.input, dict) else {}


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _at(when_ms: int | None) -> str:
    if when_ms is None:
        return "an event arrives (no timeout)"
    return dt.datetime.fromtimestamp(when_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
