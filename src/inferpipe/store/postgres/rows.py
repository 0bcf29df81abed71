"""Mapping between PostgreSQL rows and records; payloads travel as JSON text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg
import orjson

from inferpipe.core.events import read_invoke_step
from inferpipe.core.records import LogRecord, Run, RunStatus, StepKind, StepRecord, StepStatus

RUN_COLUMNS = (
    "id, workspace, function_id, status, event_ids, input, output, error, created_at_ms, "
    "ready_at_ms, started_at_ms, finished_at_ms, parent_run_id, rerun_of, priority, attempts, "
    "lease_owner, lease_expires_at_ms, lease_token, cancel_requested, start_deadline_ms, "
    "finish_timeout_ms, status_reason"
)
STEP_COLUMNS = (
    "run_id, key, seq, name, kind, status, attempt, input, output, error, started_at_ms, "
    "finished_at_ms, wake_at_ms, meta"
)
STEP_TYPES = (
    "text[]",
    "text[]",
    "int[]",
    "text[]",
    "text[]",
    "text[]",
    "int[]",
    "json[]",
    "json[]",
    "json[]",
    "bigint[]",
    "bigint[]",
    "bigint[]",
    "json[]",
)
"""The array type of each step column, for inserting many rows with one `unnest`."""

Row: TypeAlias = "asyncpg.Record | Sequence[Any]"
"""A result row: indexable by column position."""

LOG_COLUMNS = "run_id, seq, level, message, ts_ms, step_key, meta"
LOG_TYPES = ("text[]", "int[]", "text[]", "text[]", "bigint[]", "text[]", "json[]")


def enc(value: Any) -> str:
    return orjson.dumps(value).decode()


def enc_opt(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def dec(raw: str | bytes | None) -> Any:
    return None if raw is None else orjson.loads(raw)


def unnest_sql(types: Sequence[str], first: int) -> str:
    """`unnest($first::t1, $first+1::t2, ...)`: many rows from column arrays in one statement."""
    args = ", ".join(f"${first + i}::{t}" for i, t in enumerate(types))
    return f"unnest({args})"


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Transpose row tuples into one list per column (the arguments of `unnest_sql`)."""
    return [[row[i] for row in rows] for i in range(width)]


def run_from_row(row: Row) -> Run:
    events = dec(row[5]) or []
    return Run(
        id=row[0],
        workspace=row[1],
        function_id=row[2],
        status=RunStatus(row[3]),
        event_ids=dec(row[4]),
        input=events,
        events=events,
        output=dec(row[6]),
        error=dec(row[7]),
        created_at_ms=row[8],
        ready_at_ms=row[9],
        started_at_ms=row[10],
        finished_at_ms=row[11],
        parent_run_id=row[12],
        rerun_of=row[13],
        priority=row[14],
        executions=row[15],
        lease_owner=row[16],
        lease_expires_at_ms=row[17],
        lease_token=row[18],
        cancel_requested=row[19],
        start_deadline_ms=row[20],
        finish_timeout_ms=row[21],
        status_reason=row[22],
    )


def step_from_row(row: Row) -> StepRecord:
    """A step from a row whose JSON columns are text."""
    return step_from_values([*row[:7], *(dec(v) for v in row[7:10]), *row[10:13], dec(row[13])])


def step_from_values(v: Sequence[Any]) -> StepRecord:
    """A step from values already decoded (as aggregated by `json_agg` in the claim)."""
    return read_invoke_step(
        StepRecord(
            run_id=v[0],
            key=v[1],
            seq=v[2],
            name=v[3],
            kind=StepKind(v[4]),
            status=StepStatus(v[5]),
            attempt=v[6],
            input=v[7],
            output=v[8],
            error=v[9],
            started_at_ms=v[10],
            finished_at_ms=v[11],
            wake_at_ms=v[12],
            meta=v[13] or {},
        )
    )


def step_params(step: StepRecord) -> tuple[Any, ...]:
    return (
        step.run_id,
        step.key,
        step.seq,
        step.name,
        step.kind.value,
        step.status.value,
        step.attempt,
        enc_opt(step.input),
        enc_opt(step.output),
        enc_opt(step.error),
        step.started_at_ms,
        step.finished_at_ms,
        step.wake_at_ms,
        enc(step.meta),
    )


def log_params(log: LogRecord) -> tuple[Any, ...]:
    return (log.run_id, log.seq, log.level, log.message, log.ts_ms, log.step_key, enc(log.meta))


def log_from_row(row: Row) -> LogRecord:
    return LogRecord(
        run_id=row[0],
        seq=row[1],
        level=row[2],
        message=row[3],
        ts_ms=row[4],
        step_key=row[5],
        meta=dec(row[6]) or {},
    )
