"""Journaling, parking and finishing runs under a fenced lease (claims are in `claims`).

The hot path is one statement per operation: a step commit, a park. Fencing is part of each statement: a write whose lease token and owner no longer match the
run's row changes nothing and raises `LeaseLost`.
"""

from __future__ import annotations

from typing import Any

from inferpipe.core.errors import LeaseLost
from inferpipe.core.records import Lease, RunStatus, StepRecord, StepStatus
from inferpipe.store.base import FinishResult, Outcome, PlannedEvent, Progress, ProgressResult
from inferpipe.store.postgres import admission, intake, scores
from inferpipe.store.postgres import journal as journal_writes
from inferpipe.store.postgres.database import FINISHED_CHANNEL, Conn, notify
from inferpipe.store.postgres.rows import STEP_COLUMNS, enc_opt, step_from_row

_HOLDS_SLOTS = "(concurrency_key1 IS NOT NULL OR singleton_key IS NOT NULL)"
"""Whether a run counts against concurrency keys while it runs: when it stops, other workers
are told (NOTIFY), as runs held back by its keys may start now."""

_HELD = f"""($7::bigint IS NOT NULL AND cancel_requested IS NULL
    AND {intake.OPEN_STEP_WAITS.format(now="$5", skip="0")})"""

_NOW = f"(cancel_requested IS NOT NULL OR (wake_pending AND NOT {_HELD}))"

_PARK = f"""
UPDATE runs SET
    status = CASE WHEN {_NOW} THEN 'queued' ELSE $4 END,
    ready_at_ms = LEAST(
        CASE WHEN {_NOW} THEN $5
             WHEN wake_pending THEN LEAST(COALESCE($6::bigint, $5 + $7), $5 + $7)
             ELSE $6::bigint END,
        started_at_ms + finish_timeout_ms),
    lease_owner = NULL, lease_expires_at_ms = NULL, wake_pending = FALSE, wake_batch_ms = $7
WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND status = 'running'
RETURNING ready_at_ms, {_HOLDS_SLOTS}
"""
"""Release the run until its ready time; an event that resolved one of its waits while it ran
(wake_pending) or a cancel request makes it ready now instead (a run batching its wakes, $7,
with other waits open: at most its batch time from now). Returns its ready time, and whether
it frees concurrency slots."""

_FINISH = f"""
WITH locks AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(k) FROM unnest($9::bigint[]) AS k
), done AS (
    UPDATE runs SET status = $4, output = $5, error = $6, finished_at_ms = $7,
        ready_at_ms = NULL, lease_owner = NULL, lease_expires_at_ms = NULL,
        wake_pending = FALSE, status_reason = $8
    WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND status = 'running'
      AND ($4 = 'cancelled' OR cancel_requested IS NULL)
      AND (SELECT count(*) FROM locks) >= 0
    RETURNING id, {_HOLDS_SLOTS} AS holds_slots
), dropped AS (
    DELETE FROM waits WHERE run_id IN (SELECT id FROM done)
)
SELECT id, holds_slots, pg_notify($10, $11 || ' ' || id) FROM done
"""
"""Finalize a run under its lease and drop its waits, after taking the shared locks on the names
of the events its end sends (advisory locks come before row locks everywhere). A run asked to
cancel is finalized only as cancelled: the row lock of the UPDATE orders it with the cancel
request, so a cancel committed first is seen here (`_REFUSED` then tells it from a lost lease).
The finish is announced on `FINISHED_CHANNEL` (to result waiters), delivered at commit."""

_REFUSED = """
SELECT cancel_requested FROM runs
WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND status = 'running'
"""


_RENEW = """
WITH held AS (
    SELECT r.id FROM runs r
    JOIN unnest($2::text[], $3::text[], $4::bigint[]) AS l(id, owner, token)
      ON r.id = l.id AND r.lease_owner = l.owner AND r.lease_token = l.token
    WHERE r.status = 'running'
    ORDER BY r.id
    FOR NO KEY UPDATE OF r
)
UPDATE runs SET lease_expires_at_ms = $1 FROM held WHERE runs.id = held.id
RETURNING runs.id, runs.lease_token
"""
"""Extend the leases still held, locking their rows in id order as every batch of writes does
(a batch of finishes holds a parent's row and its children's: in any other order, a renewal
and such a batch could each wait for the other)."""


async def renew(conn: Conn, leases: list[Lease], until_ms: int) -> list[str]:
    # A durable commit, unlike claims: a worker trusts a renewal it was told of until the
    # new expiry, so a crash must not roll it back and let another worker in before then.
    rows = await conn.fetch(
        _RENEW,
        until_ms,
        [lease.run_id for lease in leases],
        [lease.owner for lease in leases],
        [lease.token for lease in leases],
    )
    kept = {(r[0], r[1]) for r in rows}
    return [lease.run_id for lease in leases if (lease.run_id, lease.token) not in kept]


async def journal(conn: Conn, lease: Lease, progress: Progress) -> tuple[str | None, set[str]]:
    """Fence and write steps and logs; returns (cancel reason, keys of steps already final)."""
    (result,) = await journal_writes.write(conn, [journal_writes.JournalWrite(lease, progress)])
    if isinstance(result, LeaseLost):
        raise result
    return result.cancel_requested, result.final_keys


async def final_steps(conn: Conn, run_id: str, keys: set[str]) -> dict[str, StepRecord]:
    if not keys:
        return {}
    rows = await conn.fetch(
        f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 AND key = ANY($2::text[])"
        " AND status IN ('completed', 'failed')",
        run_id,
        list(keys),
    )
    return {row[1]: step_from_row(row) for row in rows}


async def commit(
    conn: Conn, ws: str, lease: Lease, progress: Progress, now_ms: int
) -> ProgressResult:
    """The full commit, in a transaction: steps and logs, new runs, waits (resolved at once by
    lookback when an earlier event matches), events sent."""
    runs = [*progress.runs, *(run for p in progress.events for run in p.runs)]
    await intake.lock_names(
        conn,
        ws,
        {p.event.name for p in progress.events} | intake.flow_event_names(runs),
        {w.event_name for w in progress.waits if w.lookback_ms},
    )
    if any(run.flow is not None for run in runs):
        await admission.lock(conn, ws, runs)  # flow keys before the run's row
    cancel, final_keys = await journal(conn, lease, progress)
    inserted = await intake.insert_runs(conn, ws, progress.runs, now_ms, notify_ready=True)
    resolved: dict[str, Any] = {}
    waiting = []
    for wait in progress.waits:
        found = await intake.lookback(conn, ws, wait, now_ms)
        if found is not None and wait.step_key is not None:
            # Our own run: it is running, so completing the step is enough (no wake-up).
            await intake.resolve_step(conn, wait.run_id, wait.step_key, found, now_ms)
            resolved[wait.step_key] = found
        else:
            waiting.append(wait)
    await intake.insert_waits(conn, ws, waiting, now_ms)
    # after the waits: an invoked run skipped by flow control resumes its invoker at once
    await intake.announce_skipped(conn, ws, inserted.skipped, now_ms)
    await scores.put(conn, ws, progress.scores, now_ms)
    result = None
    if progress.events:
        result = await intake.ingest(conn, ws, progress.events, now_ms, locked=True)
    final = await final_steps(conn, lease.run_id, final_keys)
    return ProgressResult(cancel_requested=cancel, resolved=resolved, ingest=result, final=final)


async def park(
    conn: Conn,
    lease: Lease,
    status: RunStatus,
    ready_at_ms: int | None,
    now_ms: int,
    batch_wakes_ms: int | None = None,
) -> tuple[int | None, bool]:
    """Park the run; returns its ready time (now when an event or a cancel came meanwhile),
    and whether it freed concurrency slots."""
    row = await conn.fetchrow(
        _PARK,
        lease.run_id,
        lease.token,
        lease.owner,
        status.value,
        now_ms,
        ready_at_ms,
        batch_wakes_ms,
    )
    if row is None:
        raise LeaseLost(lease.run_id)
    return (None if row[0] is None else int(row[0])), bool(row[1])


async def finish(
    conn: Conn,
    ws: str,
    lease: Lease,
    outcome: Outcome,
    events: list[PlannedEvent],
    now_ms: int,
) -> FinishResult:
    """Finalize the run; a pending cancel refuses any other outcome (returns its reason)."""
    runs = [run for p in events for run in p.runs]
    if any(run.flow is not None for run in runs):  # flow keys before the run's row
        names = {p.event.name for p in events} | intake.flow_event_names(runs)
        await intake.lock_names(conn, ws, names)
        await admission.lock(conn, ws, runs)
    done = await conn.fetchrow(
        _FINISH,
        lease.run_id,
        lease.token,
        lease.owner,
        outcome.status.value,
        enc_opt(outcome.output),
        enc_opt(outcome.error),
        now_ms,
        outcome.reason,
        intake.lock_keys(ws, {p.event.name for p in events}),
        FINISHED_CHANNEL,
        ws,
    )
    if done is None:
        cancel = await conn.fetchval(_REFUSED, lease.run_id, lease.token, lease.owner)
        if cancel is None:
            raise LeaseLost(lease.run_id)
        return FinishResult(cancel_requested=str(cancel))
    if done[1]:
        await notify(conn, ws)  # its slots are free: runs held back may start
    await scores.put(conn, ws, outcome.scores, now_ms)
    if not events:
        return FinishResult(work_ready=bool(done[1]))
    ingested = await intake.ingest(conn, ws, events, now_ms, locked=True)
    return FinishResult(work_ready=bool(done[1]) or ingested.work_ready)


async def rerun(
    conn: Conn, ws: str, run_id: str, new_run_id: str, from_failed_step: bool, now_ms: int
) -> bool:
    """Copy a run as a new queued run (with its completed steps when asked, and the concurrency
    keys, singleton key and throttle it was planned with); False if unknown."""
    made = await conn.fetchval(
        "INSERT INTO runs (id, workspace, function_id, status, event_ids, input, created_at_ms,"
        " ready_at_ms, parent_run_id, rerun_of, priority, start_deadline_ms, finish_timeout_ms,"
        " concurrency_key1, concurrency_limit1, concurrency_key2, concurrency_limit2,"
        " singleton_key, throttle)"
        " SELECT $1, workspace, function_id, 'queued', event_ids, input, $2, $2, parent_run_id, id,"
        " priority, NULL, finish_timeout_ms, concurrency_key1, concurrency_limit1,"
        " concurrency_key2, concurrency_limit2, singleton_key, throttle"
        " FROM runs WHERE id = $3 AND workspace = $4 RETURNING id",
        new_run_id,
        now_ms,
        run_id,
        ws,
    )
    if made is None:
        return False
    await conn.execute(
        "INSERT INTO run_triggers (event_id, run_id) SELECT event_id, $1 FROM run_triggers"
        " WHERE run_id = $2",
        new_run_id,
        run_id,
    )
    if from_failed_step:
        cols = STEP_COLUMNS.replace("run_id, ", "")
        await conn.execute(
            f"INSERT INTO steps (run_id, {cols}) SELECT $1, {cols} FROM steps"
            " WHERE run_id = $2 AND status = $3",
            new_run_id,
            run_id,
            StepStatus.COMPLETED.value,
        )
    await notify(conn, ws)
    return True


async def purge(conn: Conn, ws: str, older_than_ms: int) -> int:
    rows = await conn.fetch(
        "DELETE FROM runs WHERE workspace = $1 AND finished_at_ms < $2 RETURNING id",
        ws,
        older_than_ms,
    )
    ids = [r[0] for r in rows]
    if ids:
        for table in ("steps", "logs", "run_triggers", "waits", "scores"):
            await conn.execute(f"DELETE FROM {table} WHERE run_id = ANY($1::text[])", ids)
    status = await conn.execute(
        "DELETE FROM events WHERE workspace = $1 AND received_at_ms < $2", ws, older_than_ms
    )
    await conn.execute(
        "DELETE FROM event_ids WHERE workspace = $1 AND received_at_ms < $2", ws, older_than_ms
    )
    await conn.execute(_PURGE_FLOW, ws, older_than_ms)
    return len(ids) + int(status.split()[-1])


_PURGE_FLOW = """
WITH idem AS (
    DELETE FROM flow_idempotency WHERE workspace = $1 AND expires_at_ms < $2
), queues AS (
    DELETE FROM flow_queues WHERE workspace = $1 AND next_tag_ms < $2
), paces AS (
    DELETE FROM flow_throttles WHERE workspace = $1 AND tat / rate_limit < $2
)
DELETE FROM flow_buffers WHERE workspace = $1 AND first_at_ms < $2
    AND run_id NOT IN (SELECT id FROM runs WHERE workspace = $1 AND status = 'queued')
"""
"""Drop flow state that no longer changes any decision: a tag or arrival time in the past is
replaced by "now" when next used. (Rate-limit hits are pruned per key as it is used: their
period may be longer than the retention.)"""
