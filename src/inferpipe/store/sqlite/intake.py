"""Event intake inside a transaction: store, create runs, resume waits, request cancels."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from inferpipe.core import expr
from inferpipe.core.events import invoke_outcome
from inferpipe.core.records import (
    FINISHED_STATUSES,
    IngestResult,
    NewRun,
    NewWait,
    StepKind,
    StepStatus,
    WaitKind,
)
from inferpipe.store.base import DEDUPE_WINDOW_MS, PlannedEvent
from inferpipe.store.flow.admission import RUN_COLUMNS, RUN_WIDTH, Admission, finished_events
from inferpipe.store.sqlite import admission
from inferpipe.store.sqlite.rows import STEP_COLUMNS, enc, enc_opt, step_params
from inferpipe.store.sqlite.slots import running_slots

_FINISHED = tuple(s.value for s in FINISHED_STATUSES)


def ingest(
    conn: sqlite3.Connection, ws: str, planned: list[PlannedEvent], now_ms: int
) -> IngestResult:
    accepted: list[str] = []
    duplicates: list[str] = []
    created: list[str] = []
    resolved: list[str] = []
    cancelled: list[str] = []
    skipped: list[tuple[NewRun, str]] = []
    keyed = any(_holds_slots(r) for item in planned for r in item.runs)
    running = running_slots(conn, ws)[0] if keyed else None
    for item in planned:
        event = item.event
        assert event.id is not None and event.ts_ms is not None
        if _is_duplicate(conn, ws, event.id, now_ms):
            duplicates.append(event.id)
            continue
        body = event.as_dict()
        conn.execute(
            "INSERT INTO events (workspace, id, name, body, ts_ms, received_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (ws, event.id, event.name, enc(body), event.ts_ms, now_ms),
        )
        accepted.append(event.id)
        inserted = insert_runs(conn, ws, item.runs, now_ms, running)
        created.extend(inserted.created)
        skipped.extend(inserted.skipped)
        cancelled.extend(victim for victim, _ in inserted.cancels)  # replaced singletons
        for run_id, kind in match_waits(conn, ws, body, now_ms):
            (resolved if kind is WaitKind.STEP else cancelled).append(run_id)
    announce_skipped(conn, ws, skipped, now_ms)
    return IngestResult(accepted, duplicates, created, resolved, cancelled)


def _is_duplicate(conn: sqlite3.Connection, ws: str, event_id: str, now_ms: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM events WHERE workspace = ? AND id = ? AND received_at_ms > ? LIMIT 1",
        (ws, event_id, now_ms - DEDUPE_WINDOW_MS),
    ).fetchone()
    return row is not None


def create_runs(conn: sqlite3.Connection, ws: str, runs: list[NewRun], now_ms: int) -> None:
    announce_skipped(conn, ws, insert_runs(conn, ws, runs, now_ms).skipped, now_ms)


_INSERT_RUN = (
    f"INSERT INTO runs (workspace, created_at_ms, {RUN_COLUMNS})"
    f" VALUES ({', '.join('?' * (2 + RUN_WIDTH))})"
)


def insert_runs(
    conn: sqlite3.Connection,
    ws: str,
    runs: list[NewRun],
    now_ms: int,
    running: Mapping[str, int] | None = None,
) -> Admission:
    """Insert runs as their flow control admits them (`admission`); the caller announces the
    skipped ones (`announce_skipped`) once the transaction's waits are registered. `running`:
    the running runs per slot key, shared by the calls of one intake (inserting runs does not
    change them)."""
    if running is None and any(_holds_slots(r) for r in runs):
        running = running_slots(conn, ws)[0]
    admitted = admission.decide(conn, ws, runs, now_ms, running)
    for row in admitted.rows:
        conn.execute(_INSERT_RUN, (ws, now_ms, *row.values(now_ms, enc)))
        if row.skipped:
            continue
        for wait in row.run.cancel_waits:
            insert_wait(conn, ws, wait, now_ms)
        if row.run.journal:
            conn.executemany(
                f"INSERT INTO steps ({STEP_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                [step_params(s) for s in row.run.journal],
            )
    conn.executemany(
        "INSERT OR IGNORE INTO run_triggers (event_id, run_id) VALUES (?, ?)", admitted.triggers
    )
    # after the runs they may name: a singleton newcomer asks its predecessors to stop
    for victim, reason in admitted.cancels:
        request_cancel(conn, victim, reason, now_ms)
    return admitted


def _holds_slots(run: NewRun) -> bool:
    return run.flow is not None and bool(run.flow.concurrency or run.flow.singleton_key)


def announce_skipped(
    conn: sqlite3.Connection, ws: str, runs: list[tuple[NewRun, str]], now_ms: int
) -> None:
    """Send the `function.finished` of runs skipped by flow control."""
    if runs:
        ingest(conn, ws, finished_events(runs, now_ms), now_ms)


def insert_wait(conn: sqlite3.Connection, ws: str, wait: NewWait, now_ms: int) -> None:
    pin = expr.find_pin(wait.expression) if wait.expression else None
    conn.execute(
        "INSERT INTO waits (workspace, run_id, kind, event_name, expression, pin_path, pin_value,"
        " step_key, expires_at_ms, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ws,
            wait.run_id,
            wait.kind.value,
            wait.event_name,
            wait.expression,
            pin.path if pin else None,
            pin.value if pin else None,
            wait.step_key,
            wait.expires_at_ms,
            now_ms,
        ),
    )
    if pin:
        conn.execute(
            "INSERT OR IGNORE INTO wait_pins (workspace, event_name, pin_path) VALUES (?, ?, ?)",
            (ws, wait.event_name, pin.path),
        )


def _candidates(
    conn: sqlite3.Connection, ws: str, event: dict[str, Any], now_ms: int
) -> list[tuple[Any, ...]]:
    """The waits the event may satisfy, in wait order; the last column says whether its pin
    selected each."""
    name = event["name"]
    cols = "id, run_id, kind, expression, step_key"
    live = "(expires_at_ms IS NULL OR expires_at_ms > ?)"
    rows = conn.execute(
        f"SELECT {cols}, 0 FROM waits WHERE workspace = ? AND event_name = ?"
        f" AND pin_path IS NULL AND {live}",
        (ws, name, now_ms),
    ).fetchall()
    paths = conn.execute(
        "SELECT pin_path FROM wait_pins WHERE workspace = ? AND event_name = ?", (ws, name)
    ).fetchall()
    for (path,) in paths:
        value = expr.pinned_value_of(event, path)
        if value is None:
            continue
        rows += conn.execute(
            f"SELECT {cols}, 1 FROM waits WHERE workspace = ? AND event_name = ? AND pin_path = ?"
            f" AND pin_value = ? AND {live}",
            (ws, name, path, value, now_ms),
        ).fetchall()
    rows.sort(key=lambda r: int(r[0]))
    return rows


def match_waits(
    conn: sqlite3.Connection, ws: str, event: dict[str, Any], now_ms: int
) -> list[tuple[str, WaitKind]]:
    """Resolve the waits this event satisfies; returns (run id, wait kind) for each."""
    hits: list[tuple[str, WaitKind]] = []
    variables = {"async": event}
    for wait_id, run_id, kind, expression, step_key, by_pin in _candidates(conn, ws, event, now_ms):
        # a wait its pin selected, whose expression is that pin alone, matches as it is
        pinned = by_pin and expr.is_pin_only(expression)
        if expression and not pinned and not expr.matches(expression, variables):
            continue
        if WaitKind(kind) is WaitKind.STEP:
            conn.execute("DELETE FROM waits WHERE id = ?", (wait_id,))
            resolve_step_wait(conn, run_id, step_key, event, now_ms)
            hits.append((run_id, WaitKind.STEP))
        else:
            reason = f"cancelled by event {event['name']} ({event['id']})"
            if request_cancel(conn, run_id, reason, now_ms):
                hits.append((run_id, WaitKind.CANCEL))
    return hits


def resolve_step_wait(
    conn: sqlite3.Connection, run_id: str, step_key: str, event: dict[str, Any] | None, now_ms: int
) -> None:
    """Complete a waiting step with the event that satisfied it; an `invoke` step records its
    child's return value instead (or fails with the child's error)."""
    row = conn.execute(
        "SELECT kind FROM steps WHERE run_id = ? AND key = ? AND status = ?",
        (run_id, step_key, StepStatus.WAITING.value),
    ).fetchone()
    status, output, error = StepStatus.COMPLETED, event, None
    if row is not None and row[0] == StepKind.INVOKE.value and event is not None:
        completed, output, error = invoke_outcome(event)
        status = StepStatus.COMPLETED if completed else StepStatus.FAILED
    conn.execute(
        "UPDATE steps SET status = ?, output = ?, error = ?, finished_at_ms = ? "
        "WHERE run_id = ? AND key = ? AND status = ?",
        (
            status.value,
            enc_opt(output),
            enc_opt(error),
            now_ms,
            run_id,
            step_key,
            StepStatus.WAITING.value,
        ),
    )
    _wake_resolved(conn, run_id, now_ms)


def _wake_resolved(conn: sqlite3.Connection, run_id: str, now_ms: int) -> None:
    """One of the run's waits resolved (and is gone): wake it, or, when it batches its wakes
    and other waits are open, make it ready at most its batch time from now."""
    row = conn.execute(
        "SELECT wake_batch_ms FROM runs WHERE id = ? AND status IN ('waiting', 'sleeping')",
        (run_id,),
    ).fetchone()
    if row is None or row[0] is None or not has_open_step_waits(conn, run_id, now_ms):
        wake_run(conn, run_id, now_ms)
        return
    conn.execute(
        "UPDATE runs SET ready_at_ms = MIN(COALESCE(ready_at_ms, ?), ?) WHERE id = ?",
        (now_ms + row[0], now_ms + row[0], run_id),
    )


def has_open_step_waits(conn: sqlite3.Connection, run_id: str, now_ms: int) -> bool:
    """Whether a step of the run still waits for an event (one that has not expired)."""
    row = conn.execute(
        "SELECT 1 FROM waits WHERE run_id = ? AND kind = ?"
        " AND (expires_at_ms IS NULL OR expires_at_ms > ?) LIMIT 1",
        (run_id, WaitKind.STEP.value, now_ms),
    ).fetchone()
    return row is not None


def wake_run(conn: sqlite3.Connection, run_id: str, now_ms: int) -> None:
    """Make a parked run ready now; a running one resumes as soon as it parks."""
    conn.execute(
        "UPDATE runs SET ready_at_ms = ?, status = 'queued' "
        "WHERE id = ? AND status IN ('waiting', 'sleeping', 'queued')",
        (now_ms, run_id),
    )
    conn.execute("UPDATE runs SET wake_pending = 1 WHERE id = ? AND status = 'running'", (run_id,))


def request_cancel(conn: sqlite3.Connection, run_id: str, reason: str, now_ms: int) -> bool:
    cur = conn.execute(
        f"UPDATE runs SET cancel_requested = COALESCE(cancel_requested, ?) "
        f"WHERE id = ? AND status NOT IN ({', '.join('?' * len(_FINISHED))})",
        (reason, run_id, *_FINISHED),
    )
    if cur.rowcount == 0:
        return False
    conn.execute("DELETE FROM waits WHERE run_id = ? AND kind = ?", (run_id, WaitKind.CANCEL.value))
    wake_run(conn, run_id, now_ms)
    return True
