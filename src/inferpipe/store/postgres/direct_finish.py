"""A batch of run finishes in one autocommitted statement, when their events wake nothing.

Most runs end with events no one waits for (their `function.finished`): then the finishes, the
events and the announcements are one round trip and one WAL flush, instead of a transaction of
four round trips (BEGIN, finish, store events and look up the waits, COMMIT). Whether any wait
may match is decided inside the statement, after it holds the shared locks on the events'
names, by `inferpipe_waits_may_match` (migration 0016), whose query has a snapshot of its own;
if one may, the statement writes nothing and the batch goes through `finishes.finish_many`,
which resolves the waits. The values pinned waits may select the events by are computed
before (`intake.pin_values`); events with too many go through the transaction.
"""

from __future__ import annotations

from typing import Any

from inferpipe.core.errors import LeaseLost
from inferpipe.store.base import DEDUPE_WINDOW_MS, FinishResult
from inferpipe.store.postgres import intake
from inferpipe.store.postgres.database import CHANNEL, FINISHED_CHANNEL, Conn
from inferpipe.store.postgres.finishes import (
    Finish,
    finish_ctes,
    outcome_columns,
    refused,
    results_of,
)
from inferpipe.store.postgres.rows import enc

_FINISH = f"""
WITH locks AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(k) FROM unnest($10::bigint[]) AS k
), locked AS MATERIALIZED (
    SELECT id FROM runs
    WHERE (SELECT count(*) FROM locks) >= 0 AND id = ANY($1::text[])
    ORDER BY id
    FOR NO KEY UPDATE
), gate AS MATERIALIZED (
    SELECT inferpipe_waits_may_match($11, $12::text[], $13, $14::text[], $15::text[],
        $16::text[]) AS busy
    WHERE (SELECT count(*) FROM locked) >= 0
), {finish_ctes("NOT (SELECT busy FROM gate)")}, won AS (
    INSERT INTO event_ids (workspace, id, received_at_ms)
    SELECT $11, e.id, $13 FROM unnest($17::text[], $18::text[]) AS e(id, run_id)
    WHERE e.run_id IN (SELECT id FROM done)
    ON CONFLICT (workspace, id) DO UPDATE SET received_at_ms = EXCLUDED.received_at_ms
    WHERE event_ids.received_at_ms <= $19
    RETURNING id
), stored AS (
    INSERT INTO events (workspace, received_at_ms, id, name, body, ts_ms)
    SELECT $11, $13, e.id, e.name, e.body, e.ts
    FROM unnest($17::text[], $20::text[], $21::json[], $22::bigint[]) AS e(id, name, body, ts)
    WHERE e.id IN (SELECT id FROM won)
)
SELECT g.busy, d.id, d.holds_slots,
    CASE WHEN d.id IS NOT NULL THEN pg_notify($9, d.workspace || ' ' || d.id) END,
    CASE WHEN d.holds_slots THEN pg_notify($23, d.workspace) END
FROM gate g LEFT JOIN done d ON TRUE
"""
"""`finishes._FINISH` with the events stored in the same statement, both only if no wait on
the events' names may match them (`gate`). The run rows are locked in id order first, as every
batch of writes does; the parents of the runs are not written (a parent waits for its child's
`function.finished`: its wait makes the gate busy). Each finish is announced on
`FINISHED_CHANNEL`, and a run that held concurrency slots on `CHANNEL` (held-back runs may
start), delivered at commit."""


def applies(items: list[Finish]) -> bool:
    """Whether the batch may finish here: one workspace, no scores, no event starting a run."""
    return (
        len({it.workspace for it in items}) == 1
        and not any(it.outcome.scores for it in items)
        and not any(p.runs for it in items for p in it.events)
    )


async def finish(conn: Conn, items: list[Finish]) -> list[FinishResult | LeaseLost] | None:
    """Finalize the runs and store their events, outside a transaction; for each: what it did
    (or the reason of a cancel that refused its outcome), or LeaseLost. None when a wait may
    match the events, or they carry too many values to look up: nothing was written (use
    `finishes.finish_many`)."""
    ws = items[0].workspace
    sent: dict[str, tuple[str, dict[str, Any]]] = {}  # event id: (the run sending it, body)
    for it in items:
        for p in it.events:
            assert p.event.id is not None and p.event.ts_ms is not None
            sent.setdefault(p.event.id, (it.lease.run_id, p.event.as_dict()))
    bodies = [body for _, body in sent.values()]
    names = sorted({body["name"] for body in bodies})
    pins = intake.pin_values(bodies)
    if pins is None:
        return None
    now_ms = max(it.now_ms for it in items)
    rows = await conn.fetch(
        _FINISH,
        *outcome_columns(items),
        FINISHED_CHANNEL,
        intake.lock_keys(ws, names),
        ws,
        names,
        now_ms,
        [p[0] for p in pins],
        [p[1] for p in pins],
        [p[2] for p in pins],
        list(sent),
        [run_id for run_id, _ in sent.values()],
        now_ms - DEDUPE_WINDOW_MS,
        [body["name"] for body in bodies],
        [enc(body) for body in bodies],
        [body["ts"] for body in bodies],
        CHANNEL,
    )
    if rows[0][0]:
        return None
    done = {r[1]: bool(r[2]) for r in rows if r[1] is not None}
    reasons = await refused(conn, [it for it in items if it.lease.run_id not in done])
    return results_of(items, done, reasons)
