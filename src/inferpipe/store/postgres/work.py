"""Claiming, journaling, parking and finishing runs under a fenced lease.

The hot path is one statement per operation: a claim (with its journal), a step commit, a park.
Fencing is part of each statement: a write whose lease token and owner no longer match the
run's row changes nothing and raises `LeaseLost`.
"""

from __future__ import annotations

from typing import Any

from inferpipe.core.errors import LeaseLost
from inferpipe.core.records import ClaimedRun, Lease, RunStatus, StepRecord, StepStatus
from inferpipe.store.base import Outcome, PlannedEvent, Progress, ProgressResult
from inferpipe.store.postgres import intake, scores
from inferpipe.store.postgres import journal as journal_writes
from inferpipe.store.postgres.database import Conn, notify
from inferpipe.store.postgres.rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    dec,
    enc_opt,
    run_from_row,
    step_from_row,
    step_from_values,
)

_PARKED = "('queued', 'sleeping', 'waiting')"
_R_RUN_COLUMNS = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))
_S_STEP_COLUMNS = ", ".join(f"s.{c.strip()}" for c in STEP_COLUMNS.split(","))

_CLAIM = f"""
WITH cfg AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true)
), ready AS (
    SELECT id FROM runs
    WHERE workspace = $1 AND status IN {_PARKED} AND ready_at_ms <= $2
      AND function_id = ANY($3::text[])
    ORDER BY priority DESC, ready_at_ms LIMIT $4 FOR UPDATE SKIP LOCKED
), stale AS (
    SELECT id FROM runs
    WHERE workspace = $1 AND status = 'running' AND lease_expires_at_ms < $2
      AND function_id = ANY($3::text[])
    LIMIT $4 FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM ready UNION ALL SELECT id FROM stale LIMIT $4
)
UPDATE runs r SET status = 'running', lease_owner = $5, lease_expires_at_ms = $2 + $6::bigint,
    lease_token = r.lease_token + 1, wake_pending = FALSE, attempts = r.attempts + 1,
    started_at_ms = COALESCE(r.started_at_ms, $2)
FROM picked WHERE r.id = picked.id AND (SELECT count(*) FROM cfg) = 1
RETURNING {_R_RUN_COLUMNS}
"""
"""Take ready runs (highest priority, oldest ready) and runs whose lease expired, skipping rows
another worker is locking. The claim commits without waiting for its WAL flush: if the server
lost it in a crash, the run is simply claimable again, and the worker's first durable write
(which flushes the WAL up to and past the claim) is fenced unless the claim survived."""

_JOURNALS = f"""
SELECT r.id, (SELECT count(*) FROM logs l WHERE l.run_id = r.id),
    (SELECT json_agg(json_build_array({_S_STEP_COLUMNS})) FROM steps s WHERE s.run_id = r.id)
FROM unnest($1::text[]) AS r(id)
"""
"""The journals of claimed runs. Read by a statement of its own, after the claim: its snapshot
then holds every step committed by the previous holder before we took the row (a later write of
theirs is fenced), which a subquery of the claim itself, on the claim's older snapshot, could
miss."""

_NEXT_READY = f"""
SELECT LEAST(
    (SELECT ready_at_ms FROM runs WHERE workspace = $1 AND status IN {_PARKED}
       AND ready_at_ms > COALESCE($3::bigint, -1) AND function_id = ANY($2::text[])
     ORDER BY ready_at_ms LIMIT 1),
    (SELECT lease_expires_at_ms FROM runs WHERE workspace = $1 AND status = 'running'
       AND function_id = ANY($2::text[])
     ORDER BY lease_expires_at_ms LIMIT 1))
"""

_PARK = """
UPDATE runs SET
    status = CASE WHEN wake_pending OR cancel_requested IS NOT NULL THEN 'queued' ELSE $4 END,
    ready_at_ms = LEAST(
        CASE WHEN wake_pending OR cancel_requested IS NOT NULL THEN $5 ELSE $6::bigint END,
        started_at_ms + finish_timeout_ms),
    lease_owner = NULL, lease_expires_at_ms = NULL, wake_pending = FALSE
WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND status = 'running'
RETURNING ready_at_ms
"""
"""Release the run until its ready time; an event that resolved one of its waits while it ran
(wake_pending) or a cancel request makes it ready now instead."""

_FINISH = """
WITH locks AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(k) FROM unnest($9::bigint[]) AS k
), done AS (
    UPDATE runs SET status = $4, output = $5, error = $6, finished_at_ms = $7,
        ready_at_ms = NULL, lease_owner = NULL, lease_expires_at_ms = NULL,
        wake_pending = FALSE, status_reason = $8
    WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND status = 'running'
      AND (SELECT count(*) FROM locks) >= 0
    RETURNING id
), dropped AS (
    DELETE FROM waits WHERE run_id IN (SELECT id FROM done)
)
SELECT id FROM done
"""
"""Finalize a run under its lease and drop its waits, after taking the shared locks on the names
of the events its end sends (advisory locks come before row locks everywhere)."""


async def claim(
    conn: Conn,
    ws: str,
    owner: str,
    function_ids: list[str],
    limit: int,
    now_ms: int,
    lease_ms: int,
) -> list[ClaimedRun]:
    rows = await conn.fetch(_CLAIM, ws, now_ms, function_ids, limit, owner, lease_ms)
    if not rows:
        return []
    runs = [run_from_row(row) for row in rows]
    journals = {r[0]: (r[1], r[2]) for r in await conn.fetch(_JOURNALS, [r.id for r in runs])}
    claimed: list[ClaimedRun] = []
    for run in runs:
        log_count, steps = journals[run.id]
        journal = {v[1]: step_from_values(v) for v in dec(steps) or []}
        claimed.append(ClaimedRun(run, Lease(run.id, owner, run.lease_token), journal, log_count))
    claimed.sort(key=lambda c: (-c.run.priority, c.run.ready_at_ms or 0))
    return claimed


async def next_ready_at(
    conn: Conn, ws: str, function_ids: list[str], after_ms: int | None
) -> int | None:
    value = await conn.fetchval(_NEXT_READY, ws, function_ids, after_ms)
    return None if value is None else int(value)


async def renew(conn: Conn, leases: list[Lease], until_ms: int) -> list[str]:
    # A durable commit, unlike claims: a worker trusts a renewal it was told of until the
    # new expiry, so a crash must not roll it back and let another worker in before then.
    rows = await conn.fetch(
        "UPDATE runs SET lease_expires_at_ms = $1 FROM unnest($2::text[], $3::text[],"
        " $4::bigint[]) AS l(id, owner, token) WHERE runs.id = l.id AND runs.lease_owner = l.owner"
        " AND runs.lease_token = l.token AND runs.status = 'running'"
        " RETURNING runs.id, runs.lease_token",
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
    await intake.lock_names(
        conn,
        ws,
        {p.event.name for p in progress.events},
        {w.event_name for w in progress.waits if w.lookback_ms},
    )
    cancel, final_keys = await journal(conn, lease, progress)
    await intake.insert_runs(conn, ws, progress.runs, now_ms, notify_ready=True)
    resolved: dict[str, Any] = {}
    for wait in progress.waits:
        found = await intake.lookback(conn, ws, wait, now_ms)
        if found is not None and wait.step_key is not None:
            # Our own run: it is running, so completing the step is enough (no wake-up).
            await intake.resolve_step(conn, wait.run_id, wait.step_key, found, now_ms)
            resolved[wait.step_key] = found
        else:
            await intake.insert_wait(conn, ws, wait, now_ms)
    await scores.put(conn, ws, progress.scores, now_ms)
    result = None
    if progress.events:
        result = await intake.ingest(conn, ws, progress.events, now_ms, locked=True)
    final = await final_steps(conn, lease.run_id, final_keys)
    return ProgressResult(cancel_requested=cancel, resolved=resolved, ingest=result, final=final)


async def park(
    conn: Conn, lease: Lease, status: RunStatus, ready_at_ms: int | None, now_ms: int
) -> int | None:
    """Park the run; returns its ready time (now when an event or a cancel came meanwhile)."""
    row = await conn.fetchrow(
        _PARK, lease.run_id, lease.token, lease.owner, status.value, now_ms, ready_at_ms
    )
    if row is None:
        raise LeaseLost(lease.run_id)
    return None if row[0] is None else int(row[0])


async def finish(
    conn: Conn,
    ws: str,
    lease: Lease,
    outcome: Outcome,
    events: list[PlannedEvent],
    now_ms: int,
) -> None:
    done = await conn.fetchval(
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
    )
    if done is None:
        raise LeaseLost(lease.run_id)
    await scores.put(conn, ws, outcome.scores, now_ms)
    if events:
        await intake.ingest(conn, ws, events, now_ms, locked=True)


async def rerun(
    conn: Conn, ws: str, run_id: str, new_run_id: str, from_failed_step: bool, now_ms: int
) -> bool:
    """Copy a run as a new queued run (with its completed steps when asked); False if unknown."""
    made = await conn.fetchval(
        "INSERT INTO runs (id, workspace, function_id, status, event_ids, input, created_at_ms,"
        " ready_at_ms, parent_run_id, rerun_of, priority, start_deadline_ms, finish_timeout_ms)"
        " SELECT $1, workspace, function_id, 'queued', event_ids, input, $2, $2, parent_run_id, id,"
        " priority, NULL, finish_timeout_ms FROM runs WHERE id = $3 AND workspace = $4"
        " RETURNING id",
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
    return len(ids) + int(status.split()[-1])
