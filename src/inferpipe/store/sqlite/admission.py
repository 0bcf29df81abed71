"""Flow control when a run is inserted: skip it, fold it into a pending run, or queue it.

Runs here inside the intake transaction, so two processes sending at once see each other's
idempotency keys, rate-limit hits and pending debounce/batch runs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from inferpipe.core.records import FINISHED_STATUSES, FlowBuffer, NewRun, RunFlow
from inferpipe.store.base import FAIR_STEP_MS, IDEMPOTENCY_WINDOW_MS
from inferpipe.store.flow_reasons import at, concurrency_reason, span
from inferpipe.store.sqlite.rows import dec, enc
from inferpipe.store.sqlite.slots import Slots

_FINISHED = tuple(s.value for s in FINISHED_STATUSES)


@dataclass(slots=True)
class Verdict:
    """What becomes of one planned run."""

    ready_at_ms: int
    reason: str | None = None  #: why it waits (queued) or why it was skipped
    skipped: bool = False
    absorbed_into: str | None = None  #: the pending debounce/batch run that took its event
    queue_at_ms: int | None = None
    queue_group: str | None = None  #: `RunFlow.queue_group`, with a fair queue tag
    cancels: list[tuple[str, str]] = field(default_factory=list)  #: (run id, reason)


def admit(
    conn: sqlite3.Connection, ws: str, run: NewRun, now_ms: int, slots: Slots | None = None
) -> Verdict:
    """Apply the run's flow control at insertion; writes the state it consumes. `slots`: the
    running runs per key, when the caller has them (loaded here otherwise)."""
    flow = run.flow
    if flow is None:
        return Verdict(run.ready_at_ms)
    refusal = (
        flow.skip_reason
        or _duplicate(conn, ws, flow, now_ms)
        or _rate_limited(conn, ws, flow, now_ms)
        or _singleton_busy(conn, ws, flow)
    )
    if refusal:
        return Verdict(run.ready_at_ms, reason=refusal, skipped=True)
    verdict = Verdict(run.ready_at_ms, reason=flow.note)
    _remember(conn, ws, run, flow, now_ms, verdict)
    if flow.buffer is not None:
        _buffer(conn, ws, run, flow.buffer, now_ms, verdict)
        if verdict.absorbed_into:
            return verdict
    if flow.fair_key is not None:
        verdict.queue_at_ms = _fair_tag(conn, ws, run.function_id, flow.fair_key, now_ms)
        verdict.queue_group = flow.queue_group(run.function_id)
    keys = [*flow.concurrency, *([(flow.singleton_key, 1)] if flow.singleton_key else [])]
    if verdict.reason is None and keys:
        blocked = (slots or Slots(conn, ws)).blocking(keys)
        verdict.reason = concurrency_reason(*blocked) if blocked else None
    return verdict


def _duplicate(conn: sqlite3.Connection, ws: str, flow: RunFlow, now_ms: int) -> str | None:
    if flow.idempotency_key is None:
        return None
    row = conn.execute(
        "SELECT run_id FROM flow_idempotency WHERE workspace = ? AND key = ? AND expires_at_ms > ?",
        (ws, flow.idempotency_key, now_ms),
    ).fetchone()
    if row is None:
        return None
    return f"duplicate: idempotency key {flow.idempotency_key} was used by run {row[0]} within 24 h"


def _rate_limited(conn: sqlite3.Connection, ws: str, flow: RunFlow, now_ms: int) -> str | None:
    pace = flow.rate_limit
    if pace is None:
        return None
    # A sliding window: hits in (now - period, now] count.
    conn.execute(
        "DELETE FROM flow_rate_hits WHERE workspace = ? AND key = ? AND at_ms <= ?",
        (ws, pace.key, now_ms - pace.period_ms),
    )
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM flow_rate_hits WHERE workspace = ? AND key = ?", (ws, pace.key)
    ).fetchone()
    if count < pace.limit:
        return None
    return f"rate limited: {pace.limit} runs per {span(pace.period_ms)} on {pace.key}"


def _singleton_busy(conn: sqlite3.Connection, ws: str, flow: RunFlow) -> str | None:
    if flow.singleton_key is None or flow.singleton_cancels:
        return None
    row = _unfinished(conn, ws, flow.singleton_key, 1)
    return f"singleton: run {row[0]} of key {flow.singleton_key} has not finished" if row else None


def _unfinished(conn: sqlite3.Connection, ws: str, key: str, limit: int) -> list[str]:
    rows = conn.execute(
        f"SELECT id FROM runs WHERE workspace = ? AND singleton_key = ?"
        f" AND status NOT IN ({', '.join('?' * len(_FINISHED))}) LIMIT ?",
        (ws, key, *_FINISHED, limit),
    ).fetchall()
    return [r[0] for r in rows]


def _remember(
    conn: sqlite3.Connection, ws: str, run: NewRun, flow: RunFlow, now_ms: int, verdict: Verdict
) -> None:
    """Record what an admitted run consumes: its idempotency key, its rate-limit hit, and the
    singleton run it replaces."""
    if flow.idempotency_key is not None:
        conn.execute(
            "INSERT INTO flow_idempotency (workspace, key, run_id, expires_at_ms)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (workspace, key) DO UPDATE SET"
            " run_id = excluded.run_id, expires_at_ms = excluded.expires_at_ms",
            (ws, flow.idempotency_key, run.id, now_ms + IDEMPOTENCY_WINDOW_MS),
        )
    if flow.rate_limit is not None:
        conn.execute(
            "INSERT INTO flow_rate_hits (workspace, key, at_ms) VALUES (?, ?, ?)",
            (ws, flow.rate_limit.key, now_ms),
        )
    if flow.singleton_key is not None and flow.singleton_cancels:
        reason = f"replaced by run {run.id} (singleton {flow.singleton_key})"
        verdict.cancels = [(old, reason) for old in _unfinished(conn, ws, flow.singleton_key, 100)]


def _buffer(
    conn: sqlite3.Connection, ws: str, run: NewRun, buf: FlowBuffer, now_ms: int, verdict: Verdict
) -> None:
    """Fold the event into the key's pending run, or make this run the pending one."""
    row = conn.execute(
        "SELECT b.run_id, b.first_at_ms, b.size, r.input, r.event_ids FROM flow_buffers b"
        " JOIN runs r ON r.id = b.run_id WHERE b.workspace = ? AND b.key = ?"
        " AND r.status = 'queued' AND r.attempts = 0 AND r.cancel_requested IS NULL"
        " AND r.ready_at_ms > ?",
        (ws, buf.key, now_ms),
    ).fetchone()
    if row is not None:
        pending, first_at_ms, size = row[0], row[1], row[2] + 1
        if buf.batch:
            events, event_ids = dec(row[3]) + run.input, dec(row[4]) + run.event_ids
        else:  # debounce: the last event wins
            events, event_ids = run.input, run.event_ids
        ready_at_ms, reason = _buffer_window(buf, first_at_ms, size, now_ms)
        conn.execute(
            "UPDATE runs SET input = ?, event_ids = ?, ready_at_ms = ?, status_reason = ?"
            " WHERE id = ?",
            (enc(events), enc(event_ids), ready_at_ms, reason, pending),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO run_triggers (event_id, run_id) VALUES (?, ?)",
            [(eid, pending) for eid in run.event_ids],
        )
        conn.execute(
            "UPDATE flow_buffers SET size = ? WHERE workspace = ? AND key = ?", (size, ws, buf.key)
        )
        verdict.absorbed_into = pending
        return
    verdict.ready_at_ms, verdict.reason = _buffer_window(buf, now_ms, 1, now_ms)
    conn.execute(
        "INSERT INTO flow_buffers (workspace, key, run_id, first_at_ms, size) VALUES (?, ?, ?, ?, 1)"
        " ON CONFLICT (workspace, key) DO UPDATE SET run_id = excluded.run_id,"
        " first_at_ms = excluded.first_at_ms, size = 1",
        (ws, buf.key, run.id, now_ms),
    )


def _buffer_window(buf: FlowBuffer, first_at_ms: int, size: int, now_ms: int) -> tuple[int, str]:
    """When the pending run starts, and why it waits until then."""
    if buf.batch:
        if size >= buf.max_size:
            return now_ms, f"batch full: {size} events"
        closes = first_at_ms + buf.wait_ms
        return closes, f"collecting a batch: {size}/{buf.max_size} events until {at(closes)}"
    starts = now_ms + buf.wait_ms
    latest = ""
    if buf.max_wait_ms is not None:
        starts = min(starts, first_at_ms + buf.max_wait_ms)
        latest = f", at the latest {at(first_at_ms + buf.max_wait_ms)}"
    return starts, f"debounced: starts at {at(starts)} unless another event comes{latest}"


def _fair_tag(conn: sqlite3.Connection, ws: str, function_id: str, key: str, now_ms: int) -> int:
    """Start-time fair queueing: a key's runs get consecutive tags from the head of the
    function's queue, so keys take turns however many runs each has queued."""
    # INDEXED BY: the planner would rather sort every ready run than walk the partial index.
    head = conn.execute(
        "SELECT queue_at_ms FROM runs INDEXED BY runs_fair_queue WHERE workspace = ?"
        " AND function_id = ?"
        " AND status = 'queued' AND attempts = 0 AND queue_at_ms IS NOT NULL"
        " AND ready_at_ms <= ? ORDER BY queue_at_ms LIMIT 1",
        (ws, function_id, now_ms),
    ).fetchone()
    virtual_now = now_ms if head is None else min(head[0], now_ms)
    row = conn.execute(
        "SELECT next_tag_ms FROM flow_queues WHERE workspace = ? AND key = ?", (ws, key)
    ).fetchone()
    tag = virtual_now if row is None else max(row[0], virtual_now)
    conn.execute(
        "INSERT INTO flow_queues (workspace, key, next_tag_ms) VALUES (?, ?, ?)"
        " ON CONFLICT (workspace, key) DO UPDATE SET next_tag_ms = excluded.next_tag_ms",
        (ws, key, tag + FAIR_STEP_MS),
    )
    return tag


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
