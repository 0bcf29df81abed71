"""Mapping between SQLite rows and records."""

from __future__ import annotations

import sqlite3
from typing import Any

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


def enc(value: Any) -> bytes:
    return orjson.dumps(value)


def enc_opt(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def dec(raw: bytes | str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


def run_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Run:
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


def step_from_row(row: tuple[Any, ...]) -> StepRecord:
    return read_invoke_step(
        StepRecord(
            run_id=row[0],
            key=row[1],
            seq=row[2],
            name=row[3],
            kind=StepKind(row[4]),
            status=StepStatus(row[5]),
            attempt=row[6],
            input=dec(row[7]),
            output=dec(row[8]),
            error=dec(row[9]),
            started_at_ms=row[10],
            finished_at_ms=row[11],
            wake_at_ms=row[12],
            meta=dec(row[13]) or {},
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


def log_from_row(row: tuple[Any, ...]) -> LogRecord:
    return LogRecord(
        run_id=row[0],
        seq=row[1],
        level=row[2],
        message=row[3],
        ts_ms=row[4],
        step_key=row[5],
        meta=dec(row[6]) or {},
    )
