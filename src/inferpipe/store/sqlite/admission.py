"""Flow control when runs are inserted (SQLite): the state of the runs' flow keys is loaded,
the policy (`inferpipe.store.flow.admission`) decides, its plan is written.

Runs inside the intake transaction, so two processes sending at once see each other's
idempotency keys, rate-limit hits and pending debounce/batch runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from inferpipe.core.records import FINISHED_STATUSES, NewRun
from inferpipe.store.base import IDEMPOTENCY_WINDOW_MS
from inferpipe.store.flow.admission import (
    MAX_SINGLETON_VICTIMS,
    Admission,
    AdmissionState,
    Keys,
    Pending,
    admit,
)
from inferpipe.store.sqlite.rows import dec, enc

_FINISHED = tuple(s.value for s in FINISHED_STATUSES)


def decide(
    conn: sqlite3.Connection,
    ws: str,
    runs: list[NewRun],
    now_ms: int,
    running: Mapping[str, int] | None,
) -> Admission:
    """Decide the runs and write the flow state the decisions consume. `running`: the running
    runs per slot key (None when no run has one)."""
    if not any(run.flow is not None for run in runs):
        return admit(runs, AdmissionState(), now_ms)
    out = admit(runs, _load(conn, ws, Keys.of(runs), now_ms, running or {}), now_ms)
    _write(conn, ws, out, now_ms)
    return out


def _load(
    conn: sqlite3.Connection, ws: str, keys: Keys, now_ms: int, running: Mapping[str, int]
) -> AdmissionState:
    state = AdmissionState(running=running)
    for key in keys.idempotency:
        row = conn.execute(
            "SELECT run_id FROM flow_idempotency WHERE workspace = ? AND key = ?"
            " AND expires_at_ms > ?",
            (ws, key, now_ms),
        ).fetchone()
        if row is not None:
            state.used[key] = row[0]
    for key, period_ms in keys.rates.items():
        # A sliding window: hits in (now - period, now] count.
        state.hits[key] = conn.execute(
            "SELECT COUNT(*) FROM flow_rate_hits WHERE workspace = ? AND key = ? AND at_ms > ?",
            (ws, key, now_ms - period_ms),
        ).fetchone()[0]
    for key in keys.buffers:
        row = conn.execute(
            "SELECT b.run_id, b.first_at_ms, b.size, r.ready_at_ms, r.input, r.event_ids"
            " FROM flow_buffers b JOIN runs r ON r.id = b.run_id WHERE b.workspace = ?"
            " AND b.key = ? AND r.status = 'queued' AND r.attempts = 0"
            " AND r.cancel_requested IS NULL AND r.ready_at_ms > ?",
            (ws, key, now_ms),
        ).fetchone()
        if row is not None:
            run_id, first_at_ms, size, ready_at_ms = row[:4]
            state.pending[key] = Pending(
                run_id, first_at_ms, size, ready_at_ms, dec(row[4]), dec(row[5])
            )
    for key in keys.singletons:
        rows = conn.execute(
            f"SELECT id FROM runs WHERE workspace = ? AND singleton_key = ?"
            f" AND status NOT IN ({', '.join('?' * len(_FINISHED))}) LIMIT ?",
            (ws, key, *_FINISHED, MAX_SINGLETON_VICTIMS),
        ).fetchall()
        if rows:
            state.unfinished[key] = [r[0] for r in rows]
    for key in keys.fair:
        row = conn.execute(
            "SELECT next_tag_ms FROM flow_queues WHERE workspace = ? AND key = ?", (ws, key)
        ).fetchone()
        if row is not None:
            state.tags[key] = row[0]
    for function_id in keys.functions:
        # INDEXED BY: the planner would rather sort every ready run than walk the partial index.
        row = conn.execute(
            "SELECT queue_at_ms FROM runs INDEXED BY runs_fair_queue WHERE workspace = ?"
            " AND function_id = ? AND status = 'queued' AND attempts = 0"
            " AND queue_at_ms IS NOT NULL AND ready_at_ms <= ? ORDER BY queue_at_ms LIMIT 1",
            (ws, function_id, now_ms),
        ).fetchone()
        state.heads[function_id] = None if row is None else row[0]
    return state


def _write(conn: sqlite3.Connection, ws: str, out: Admission, now_ms: int) -> None:
    """Write back what the decisions consumed: idempotency keys, rate-limit hits (pruning
    those out of their window), pending debounce/batch runs (and the events folded into
    stored ones), the fair queues' next tags."""
    if out.tags:
        conn.executemany(
            "INSERT INTO flow_queues (workspace, key, next_tag_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (workspace, key) DO UPDATE SET next_tag_ms = excluded.next_tag_ms",
            [(ws, key, tag) for key, tag in out.tags.items()],
        )
    if out.idempotency:
        conn.executemany(
            "INSERT INTO flow_idempotency (workspace, key, run_id, expires_at_ms)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (workspace, key) DO UPDATE SET"
            " run_id = excluded.run_id, expires_at_ms = excluded.expires_at_ms",
            [(ws, k, run, now_ms + IDEMPOTENCY_WINDOW_MS) for k, run in out.idempotency.items()],
        )
    if out.rate_hits:
        conn.executemany(
            "DELETE FROM flow_rate_hits WHERE workspace = ? AND key = ? AND at_ms <= ?",
            [(ws, key, now_ms - period_ms) for key, period_ms in out.rate_periods.items()],
        )
        conn.executemany(
            "INSERT INTO flow_rate_hits (workspace, key, at_ms) VALUES (?, ?, ?)",
            [(ws, key, now_ms) for key in out.rate_hits],
        )
    if out.pending:
        conn.executemany(
            "INSERT INTO flow_buffers (workspace, key, run_id, first_at_ms, size)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace, key) DO UPDATE SET"
            " run_id = excluded.run_id, first_at_ms = excluded.first_at_ms, size = excluded.size",
            [(ws, key, p.run_id, p.first_at_ms, p.size) for key, p in out.buffers],
        )
        conn.executemany(
            "UPDATE runs SET input = ?, event_ids = ?, ready_at_ms = ?, status_reason = ?"
            " WHERE id = ?",
            [
                (enc(p.input), enc(p.event_ids), p.ready_at_ms, p.reason, p.run_id)
                for p in out.folded
            ],
        )


def purge(conn: sqlite3.Connection, ws: str, older_than_ms: int) -> None:
    """Drop flow state that no longer changes any decision. (Rate-limit hits are pruned per
    key as it is used: their period may be longer than the retention.)"""
    for sql in (
        "DELETE FROM flow_idempotency WHERE workspace = ? AND expires_at_ms < ?",
        # a tag or arrival time in the past is replaced by "now" when next used
        "DELETE FROM flow_queues WHERE workspace = ? AND next_tag_ms < ?",
        "DELETE FROM flow_throttles WHERE workspace = ? AND tat / rate_limit < ?",
        "DELETE FROM flow_buffers WHERE workspace = ? AND first_at_ms < ?"
        " AND run_id NOT IN (SELECT id FROM runs WHERE status = 'queued')",
    ):
        conn.execute(sql, (ws, older_than_ms))
