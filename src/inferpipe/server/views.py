"""Records as the API shows them: wire models, large values cut to a flagged preview."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import orjson

from inferpipe.core.durations import to_ms
from inferpipe.core.records import LogRecord, Run, StepRecord
from inferpipe.core.scores import ScoreRecord
from inferpipe.core.trace_context import run_span
from inferpipe.engine.functions import CronTrigger, FunctionDef
from inferpipe.store import payloads
from inferpipe.wire import schemas
from inferpipe.workflows.runtime import run_cost

PREVIEW_SUFFIX = "…"


def preview(value: Any, limit_bytes: int | None) -> tuple[Any, bool]:
    """`value`, or when its JSON is over `limit_bytes` (None: no limit) a string preview (the
    start of the text, or of the JSON of a structure), and whether it was cut."""
    if limit_bytes is None or value is None or isinstance(value, bool | int | float):
        return value, False
    blob = payloads.ref_of(value)
    if blob is not None:  # offloaded: its reference keeps the start of its JSON
        return blob.preview[:limit_bytes] + PREVIEW_SUFFIX, True
    if payloads.has_refs(value):  # members offloaded: each shown by the start of its JSON
        raw = orjson.dumps(_previewed(value), option=orjson.OPT_NON_STR_KEYS)
        return raw[:limit_bytes].decode("utf-8", errors="ignore") + PREVIEW_SUFFIX, True
    if isinstance(value, str):  # cut the text itself, not its quoted JSON form
        raw_text = value.encode()
        if len(raw_text) <= limit_bytes:
            return value, False
        return raw_text[:limit_bytes].decode("utf-8", errors="ignore") + PREVIEW_SUFFIX, True
    try:
        raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return repr(value)[:limit_bytes], True
    if len(raw) <= limit_bytes:
        return value, False
    return raw[:limit_bytes].decode("utf-8", errors="ignore") + PREVIEW_SUFFIX, True


def _previewed(value: Any) -> Any:
    blob = payloads.ref_of(value)
    if blob is not None:
        return blob.preview + PREVIEW_SUFFIX
    if isinstance(value, dict):
        return {k: _previewed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_previewed(v) for v in value]
    return value


def error_out(error: dict[str, Any] | None) -> schemas.ErrorOut | None:
    if not error:
        return None
    return schemas.ErrorOut(
        code=str(error.get("code", "error")),
        message=str(error.get("message", "")),
        type=error.get("type"),
        traceback=error.get("traceback") if isinstance(error.get("traceback"), str) else None,
    )


def output_url(run_id: str, value: Any, step_key: str | None = None) -> str | None:
    """The download route of an offloaded output (None when the row holds it whole)."""
    if payloads.ref_of(value) is None:
        return None
    step = f"/steps/{quote(step_key, safe='')}" if step_key is not None else ""
    return f"/v1/runs/{quote(run_id, safe='')}{step}/output"


def input_url(run_id: str, value: Any, step_key: str | None = None) -> str | None:
    """The download route of an input with offloaded members (None when the row holds it
    whole)."""
    if not payloads.has_refs(value):
        return None
    step = f"/steps/{quote(step_key, safe='')}" if step_key is not None else ""
    return f"/v1/runs/{quote(run_id, safe='')}{step}/input"


def run_info(run: Run, limit_bytes: int | None, steps: Iterable[StepRecord]) -> schemas.RunInfo:
    """`run` as the API shows it, with the totals of its model-call `steps`."""
    run_input, input_cut = preview(run.input, limit_bytes)
    output, output_cut = preview(run.output, limit_bytes)
    cost = run_cost(steps)
    return schemas.RunInfo(
        id=run.id,
        function_id=run.function_id,
        status=run.status,
        status_reason=run.status_reason,
        created_at_ms=run.created_at_ms,
        started_at_ms=run.started_at_ms,
        finished_at_ms=run.finished_at_ms,
        input=run_input,
        input_truncated=input_cut,
        input_url=input_url(run.id, run.input),
        output=output,
        output_truncated=output_cut,
        output_url=output_url(run.id, run.output),
        error=error_out(run.error),
        executions=run.executions,
        parent_run_id=run.parent_run_id,
        rerun_of=run.rerun_of,
        event_ids=list(run.event_ids or []),
        cancel_requested=run.cancel_requested,
        trace_id=run_span(run.id, run.events).trace_id,
        tokens=schemas.RunTokens(
            input=cost.input_tokens, output=cost.output_tokens, total=cost.total_tokens
        ),
        cost_usd=cost.cost_usd,
    )


def step_info(step: StepRecord, limit_bytes: int | None) -> schemas.StepInfo:
    step_input, input_cut = preview(step.input, limit_bytes)
    output, output_cut = preview(step.output, limit_bytes)
    return schemas.StepInfo(
        key=step.key,
        name=step.name,
        kind=step.kind,
        status=step.status,
        seq=step.seq,
        attempt=step.attempt,
        input=step_input,
        input_truncated=input_cut,
        input_url=input_url(step.run_id, step.input, step.key),
        output=output,
        output_truncated=output_cut,
        output_url=output_url(step.run_id, step.output, step.key),
        started_at_ms=step.started_at_ms,
        finished_at_ms=step.finished_at_ms,
        wake_at_ms=step.wake_at_ms,
        duration_ms=step.duration_ms,
        error=error_out(step.error),
        meta=dict(step.meta or {}),
    )


def log_info(log: LogRecord) -> schemas.LogInfo:
    return schemas.LogInfo(
        seq=log.seq,
        level=log.level,
        message=log.message,
        step=log.step_key,
        ts_ms=log.ts_ms,
        meta=dict(log.meta or {}),
    )


def score_info(score: ScoreRecord) -> schemas.ScoreInfo:
    return schemas.ScoreInfo(
        id=score.id,
        name=score.name,
        value=score.value,
        source=str(score.source),
        reason=score.reason,
        function_id=score.function_id,
        scorer_id=score.scorer_id,
        scorer_run_id=score.scorer_run_id,
        experiment=score.experiment,
        variant=score.variant,
        created_at_ms=score.created_at_ms,
        updated_at_ms=score.updated_at_ms,
        metadata=dict(score.metadata or {}),
    )


def event_info(event: dict[str, Any]) -> schemas.EventInfo:
    data = event.get("data") or {}
    offloaded = payloads.has_refs(data)
    return schemas.EventInfo(
        id=event["id"],
        name=event["name"],
        data=data,
        data_url=f"/v1/events/{quote(event['id'], safe='')}/data" if offloaded else None,
        user=event.get("user") or {},
        ts=event.get("ts"),
        received_at_ms=event["received_at"],
    )


def function_info(fn: FunctionDef) -> schemas.FunctionInfo:
    triggers = [
        schemas.TriggerInfo(type="cron", cron=t.cron)
        if isinstance(t, CronTrigger)
        else schemas.TriggerInfo(type="event", event=t.event, if_exp=t.if_exp)
        for t in fn.triggers
    ]
    return schemas.FunctionInfo(
        id=fn.id,
        description=fn.description,
        triggers=triggers,
        retries=fn.retries,
        backoff=schemas.BackoffInfo(
            base_s=fn.backoff.base_s, max_s=fn.backoff.max_s, jitter=fn.backoff.jitter
        ),
        cancel_on=[
            schemas.CancelOnInfo(
                event=c.event,
                if_exp=c.if_exp,
                timeout_ms=to_ms(c.timeout) if c.timeout is not None else None,
            )
            for c in fn.cancel_on
        ],
        timeouts=schemas.TimeoutsInfo(
            start_ms=to_ms(fn.timeouts.start) if fn.timeouts.start is not None else None,
            finish_ms=to_ms(fn.timeouts.finish) if fn.timeouts.finish is not None else None,
        ),
    )
