"""Journaling, parking and finishing runs under a fenced lease (claims are in `claims`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from inferpipe.core import expr
from inferpipe.core.errors import LeaseLost
from inferpipe.core.records import (
    Lease,
    NewWait,
    RunStatus,
    StepRecord,
    StepStatus,
)
from inferpipe.store.base import FinishResult, Outcome, PlannedEvent, Progress, ProgressResult
from inferpipe.store.sqlite import intake, scores
from inferpipe.store.sqlite.rows import (
    STEP_COLUMNS,
    dec,
    enc,
    enc_opt,
    step_from_row,
    step_params,
)

_PARKED = "('queued', 'sleeping', 'waiting')"


def renew(conn: sqlite3.Connection, leases: list[Lease], until_ms: int) -> list[str]:
    lost = []
    for lease in leases:
        cur = conn.execute(
            "UPDATE runs SET lease_expires_at_ms = ? WHERE id = ? AND lease_token = ?"
            " AND lease_owner = ? AND status = 'running'",
            (until_ms, lease.run_id, lease.token, lease.owner),
        )
        if cur.rowcount == 0:
            lost.append(lease.run_id)
    return lost


def fence(conn: sqlite3.Connection, lease: Lease) -> tuple[str | None, int]:
    """Check the lease is still ours; returns (cancel reason, wake_pending)."""
    row = conn.execute(
        "SELECT lease_token, lease_owner, status, cancel_requested, wake_pending FROM runs"
        " WHERE id = ?",
        (lease.run_id,),
    ).fetchone()
    if row is None or row[0] != lease.token or row[1] != lease.owner or row[2] != "running":
        raise LeaseLost(lease.run_id)
    return row[3], row[4]


def commit(
    conn: sqlite3.Connection, ws: str, lease: Lease, progress: Progress, now_ms: int
) -> ProgressResult:
    cancel, _ = fence(conn, lease)
    final = _upsert_steps(conn, progress.steps)
    conn.executemany(
        "INSERT OR IGNORE INTO logs (run_id, seq, level, message, ts_ms, step_key, meta)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (lg.run_id, lg.seq, lg.level, lg.message, lg.ts_ms, lg.step_key, enc(lg.meta))
            for lg in progress.logs
        ],
    )
    inserted = intake.insert_runs(conn, ws, progress.runs, now_ms)
    resolved: dict[str, Any] = {}
    for wait in progress.waits:
        found = _lookback(conn, ws, wait, now_ms)
        if found is not None:
            assert wait.step_key is not None
            intake.resolve_step_wait(conn, wait.run_id, wait.step_key, found, now_ms)
            resolved[wait.step_key] = found
        else:
            intake.insert_wait(conn, ws, wait, now_ms)
    # after the waits: an invoked run skipped by flow control resumes its invoker at once
    intake.announce_skipped(conn, ws, inserted.skipped, now_ms)
    result = intake.ingest(conn, ws, progress.events, now_ms) if progress.events else None
    scores.put(conn, ws, progress.scores, now_ms)
    return ProgressResult(cancel_requested=cancel, resolved=resolved, ingest=result, final=final)


def _upsert_steps(conn: sqlite3.Connection, steps: list[StepRecord]) -> dict[str, StepRecord]:
    """Write steps; a completed or failed step is final and never overwritten (exactly-once
    recording even when a stale replay writes it again). Returns the final records that won."""
    final: dict[str, StepRecord] = {}
    for step in steps:
        cur = conn.execute(
            f"INSERT INTO steps ({STEP_COLUMNS}) VALUES ({', '.join('?' * 14)})"
            " ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status,"
            " attempt = excluded.attempt, output = excluded.output, error = excluded.error,"
            " started_at_ms = COALESCE(steps.started_at_ms, excluded.started_at_ms),"
            " finished_at_ms = excluded.finished_at_ms, wake_at_ms = excluded.wake_at_ms,"
            " meta = excluded.meta WHERE steps.status NOT IN ('completed', 'failed')",
            step_params(step),
        )
        if cur.rowcount == 0:
            row = conn.execute(
                f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? AND key = ?",
                (step.run_id, step.key),
            ).fetchone()
            final[step.key] = step_from_row(row)
    return final


def _lookback(conn: sqlite3.Connection, ws: str, wait: NewWait, now_ms: int) -> Any:
    if not wait.lookback_ms:
        return None
    rows = conn.execute(
        "SELECT body FROM events WHERE workspace = ? AND name = ? AND received_at_ms >= ?"
        " ORDER BY seq",
        (ws, wait.event_name, now_ms - wait.lookback_ms),
    ).fetchall()
    for (body,) in rows:
        event = dec(body)
        if not wait.expression or expr.matches(wait.expression, {"async": event}):
            return event
    return None


def park(
    conn: sqlite3.Connection,
    lease: Lease,
    status: RunStatus,
    ready_at_ms: int | None,
    now_ms: int,
    batch_wakes_ms: int | None = None,
) -> None:
    cancel, wake_pending = fence(conn, lease)
    if wake_pending and not cancel and batch_wakes_ms is not None:
        if intake.has_open_step_waits(conn, lease.run_id, now_ms):
            held = now_ms + batch_wakes_ms
            ready_at_ms = held if ready_at_ms is None else min(ready_at_ms, held)
        else:
            ready_at_ms, status = now_ms, RunStatus.QUEUED
    elif wake_pending or cancel:
        ready_at_ms, status = now_ms, RunStatus.QUEUED
    deadline = conn.execute(
        "SELECT started_at_ms + finish_timeout_ms FROM runs WHERE id = ?", (lease.run_id,)
    ).fetchone()[0]
    if deadline is not None:
        ready_at_ms = deadline if ready_at_ms is None else min(ready_at_ms, deadline)
    conn.execute(
        "UPDATE runs SET status = ?, ready_at_ms = ?, lease_owner = NULL,"
        " lease_expires_at_ms = NULL, wake_pending = 0, wake_batch_ms = ? WHERE id = ?",
        (status.value, ready_at_ms, batch_wakes_ms, lease.run_id),
    )


def finish(
    conn: sqlite3.Connection,
    ws: str,
    lease: Lease,
    outcome: Outcome,
    events: list[PlannedEvent],
    now_ms: int,
) -> FinishResult:
    """Finalize the run; a pending cancel refuses any other outcome (returns its reason)."""
    # The fence is in the update's condition; only a finish it refuses reads why.
    finished = conn.execute(
        "UPDATE runs SET status = ?, output = ?, error = ?, finished_at_ms = ?, ready_at_ms = NULL,"
        " lease_owner = NULL, lease_expires_at_ms = NULL, status_reason = ? WHERE id = ?"
        " AND lease_token = ? AND lease_owner = ? AND status = 'running'"
        " AND (cancel_requested IS NULL OR ?)"
        " RETURNING concurrency_key1 IS NOT NULL OR singleton_key IS NOT NULL",
        (
            outcome.status.value,
            enc_opt(outcome.output),
            enc_opt(outcome.error),
            now_ms,
            outcome.reason,
            lease.run_id,
            lease.token,
            lease.owner,
            outcome.status is RunStatus.CANCELLED,
        ),
    ).fetchone()
    if finished is None:
        cancel, _ = fence(conn, lease)  # LeaseLost, or a cancel that refuses this outcome
        return FinishResult(cancel_requested=cancel)
    (held_slots,) = finished
    conn.execute("DELETE FROM waits WHERE run_id = ?", (lease.run_id,))
    scores.put(conn, ws, outcome.scores, now_ms)
    ingested = intake.ingest(conn, ws, events, now_ms)
    return FinishResult(work_ready=bool(held_slots) or ingested.work_ready)


def rerun(
    conn: sqlite3.Connection,
    ws: str,
    run_id: str,
    new_run_id: str,
    from_failed_step: bool,
    now_ms: int,
) -> None:
    conn.execute(
        "INSERT INTO runs (id, workspace, function_id, status, event_ids, input, created_at_ms,"
        " ready_at_ms, parent_run_id, rerun_of, priority, start_deadline_ms, finish_timeout_ms,"
        " concurrency_key1, concurrency_limit1, concurrency_key2, concurrency_limit2,"
        " singleton_key, throttle)"
        " SELECT ?, workspace, function_id, 'queued', event_ids, input, ?, ?, parent_run_id, id,"
        " priority, NULL, finish_timeout_ms, concurrency_key1, concurrency_limit1,"
        " concurrency_key2, concurrency_limit2, singleton_key, throttle"
        " FROM runs WHERE id = ? AND workspace = ?",
        (new_run_id, now_ms, now_ms, run_id, ws),
    )
    conn.execute(
        "INSERT INTO run_triggers (event_id, run_id) SELECT event_id, ? FROM run_triggers"
        " WHERE run_id = ?",
        (new_run_id, run_id),
    )
    if from_failed_step:
        cols = STEP_COLUMNS.replace("run_id, ", "")
        conn.execute(
            f"INSERT INTO steps (run_id, {cols}) SELECT ?, {cols} FROM steps"
            " WHERE run_id = ? AND status = ?",
            (new_run_id, run_id, StepStatus.COMPLETED.value),
        )
