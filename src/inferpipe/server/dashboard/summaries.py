"""What the dashboard adds up from journals: a run's steps, tokens, cost and scores; costs by
model, function or day; score distributions; a function's recent volume and p95 duration."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Iterable
from typing import Any

from inferpipe.core.records import Run, StepKind, StepRecord, StepStatus
from inferpipe.core.scores import ScoreRecord
from inferpipe.server import views
from inferpipe.server.dashboard import schemas as ds

HISTOGRAM_BINS = 10


def trigger_of(run: Run) -> tuple[str | None, str | None]:
    """The name and id of the event that started `run` (the first of a batch)."""
    events = run.input if isinstance(run.input, list) else []
    first = events[0] if events and isinstance(events[0], dict) else {}
    name, event_id = first.get("name"), first.get("id")
    return (str(name) if name else None, str(event_id) if event_id else None)


def llm_usage(step: StepRecord) -> tuple[int, int, int] | None:
    """(input, output, cached) tokens of a model-call step, None for other steps."""
    if step.kind is not StepKind.LLM:
        return None
    usage = (step.meta or {}).get("usage") or {}
    if not isinstance(usage, dict):
        return (0, 0, 0)
    return tuple(_int(usage.get(k)) for k in ("input_tokens", "output_tokens", "cached_tokens"))  # type: ignore[return-value]


def llm_cost(step: StepRecord) -> float | None:
    """The known cost in USD of a model-call step; None when unknown (or not a model call)."""
    value = (step.meta or {}).get("cost_usd")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def run_row(run: Run, steps: list[StepRecord], scores: list[ScoreRecord]) -> ds.RunRow:
    trigger, event_id = trigger_of(run)
    tokens: int | None = None
    cost, cost_known = 0.0, True
    for step in steps:
        usage = llm_usage(step)
        if usage is None:
            continue
        tokens = (tokens or 0) + usage[0] + usage[1]
        price = llm_cost(step)
        if price is None:
            cost_known = False
        else:
            cost += price
    duration = None
    if run.started_at_ms is not None and run.finished_at_ms is not None:
        duration = run.finished_at_ms - run.started_at_ms
    return ds.RunRow(
        id=run.id,
        function_id=run.function_id,
        status=run.status,
        status_reason=run.status_reason,
        created_at_ms=run.created_at_ms,
        started_at_ms=run.started_at_ms,
        finished_at_ms=run.finished_at_ms,
        duration_ms=duration,
        trigger=trigger,
        event_id=event_id,
        steps=len(steps),
        failed_steps=sum(1 for s in steps if s.status is StepStatus.FAILED),
        tokens=tokens,
        cost_usd=round(cost, 8) if tokens is not None else None,
        cost_known=cost_known,
        scores=score_summaries(scores),
        executions=run.executions,
        parent_run_id=run.parent_run_id,
        rerun_of=run.rerun_of,
        cancel_requested=run.cancel_requested,
        error=views.error_out(run.error),
    )


def score_summaries(scores: Iterable[ScoreRecord]) -> list[ds.ScoreSummary]:
    by_name: dict[str, list[float]] = {}
    for score in scores:
        by_name.setdefault(score.name, []).append(score.value)
    return [
        ds.ScoreSummary(name=name, value=sum(values) / len(values), count=len(values))
        for name, values in sorted(by_name.items())
    ]


def cel_view(run: Run) -> dict[str, Any]:
    """A run as a CEL filter sees it: `run` (its fields) and `event` (its trigger)."""
    events = run.input if isinstance(run.input, list) else []
    event = events[0] if events and isinstance(events[0], dict) else {}
    return {
        "run": {
            "id": run.id,
            "function_id": run.function_id,
            "status": run.status.value,
            "status_reason": run.status_reason,
            "executions": run.executions,
            "created_at_ms": run.created_at_ms,
            "started_at_ms": run.started_at_ms,
            "finished_at_ms": run.finished_at_ms,
            "output": run.output,
            "error": run.error or {},
            "parent_run_id": run.parent_run_id,
        },
        "event": event,
    }


# costs --------------------------------------------------------------------------------------
class CostTable:
    """Model calls added up per key (model, function or UTC day)."""

    def __init__(self, group: ds.CostGroup) -> None:
        self.group = group
        self.rows: dict[str, ds.CostRow] = {}
        self.total = ds.CostRow(key="total")

    def add_run(self, run: Run, steps: list[StepRecord]) -> None:
        for step in steps:
            usage = llm_usage(step)
            if usage is not None:
                key = self._key(run, step)
                row = self.rows.setdefault(key, ds.CostRow(key=key))
                for target in (row, self.total):
                    _add_call(target, usage, llm_cost(step))

    def _key(self, run: Run, step: StepRecord) -> str:
        if self.group == "function":
            return run.function_id
        if self.group == "day":
            at_ms = step.started_at_ms or run.created_at_ms
            return dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).date().isoformat()
        meta = step.meta or {}
        return str(meta.get("model") or meta.get("model_ref") or "unknown model")

    def sorted_rows(self) -> list[ds.CostRow]:
        if self.group == "day":
            return [self.rows[k] for k in sorted(self.rows)]
        return sorted(self.rows.values(), key=lambda r: (-r.cost_usd, -r.calls, r.key))


def _add_call(row: ds.CostRow, usage: tuple[int, int, int], cost: float | None) -> None:
    row.calls += 1
    row.input_tokens += usage[0]
    row.output_tokens += usage[1]
    row.cached_tokens += usage[2]
    if cost is None:
        row.unpriced_calls += 1
    else:
        row.cost_usd = round(row.cost_usd + cost, 8)


# scores -------------------------------------------------------------------------------------
def score_stats(scores: list[ScoreRecord]) -> list[ds.ScoreNameStats]:
    """Per score name: count, mean, range and a histogram over [0, 1] (or the values' range
    when they leave it)."""
    by_name: dict[str, list[ScoreRecord]] = {}
    for score in scores:
        by_name.setdefault(score.name, []).append(score)
    stats = []
    for name, found in sorted(by_name.items()):
        values = [s.value for s in found]
        low, high = min(*values, 0.0), max(*values, 1.0)
        width = (high - low) / HISTOGRAM_BINS or 1.0
        bins = [0] * HISTOGRAM_BINS
        for value in values:
            bins[min(HISTOGRAM_BINS - 1, int((value - low) / width))] += 1
        sources: dict[str, int] = {}
        for score in found:
            sources[str(score.source)] = sources.get(str(score.source), 0) + 1
        stats.append(
            ds.ScoreNameStats(
                name=name,
                count=len(values),
                mean=sum(values) / len(values),
                min=min(values),
                max=max(values),
                histogram=bins,
                edges=[round(low + i * width, 6) for i in range(HISTOGRAM_BINS + 1)],
                sources=sources,
            )
        )
    return stats


# functions ----------------------------------------------------------------------------------
def p95(values: list[int]) -> int | None:
    """The 95th percentile (nearest rank) of `values`, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def jsonable(value: Any) -> Any:
    """Flow-control settings (dataclasses, enums, durations) as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
