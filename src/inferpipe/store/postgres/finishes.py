"""A batch of run finishes in one transaction, with the waits their events resolve.

Finishes are group-committed (`finish_writer`). A child's finish resolves its parent's `invoke` step and wakes the parent, so every child of a
fan-out writes the parent's row. One transaction per finish, the children would take that
row's lock in turn, each holding it through its own commit (a WAL flush per child) while the
others hold pool connections waiting for it, and lease renewals wait behind them (1000
children starved a 10-connection pool). In a batch, the runs' rows and their parents' are
locked once, in id order, the finishes are one statement, a parent is woken once however many
of its children finish, and one flush commits them all. Each finish is still fenced by its own
lease, and its caller returns only once the batch is committed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from inferpipe.core.errors import LeaseLost
from inferpipe.core.records import Lease
from inferpipe.store.base import FinishResult, Outcome, PlannedEvent
from inferpipe.store.postgres import intake, scores
from inferpipe.store.postgres.database import FINISHED_CHANNEL, Conn, notify
from inferpipe.store.postgres.rows import enc_opt

_HOLDS_SLOTS = "(runs.concurrency_key1 IS NOT NULL OR runs.singleton_key IS NOT NULL)"
"""Whether a finishing run held concurrency slots: held-back runs may start once it ends."""


def finish_ctes(guard: str) -> str:
    """The CTEs `f` (the finishes: $1 to $8, `outcome_columns`), `done` (the runs finalized
    under their leases, when `guard` holds) and `dropped` (their waits deleted)."""
    return f"""f AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::json[],
        $6::json[], $7::bigint[], $8::text[])
        AS f(id, token, owner, status, output, error, at_ms, reason)
), done AS (
    UPDATE runs SET status = f.status, output = f.output, error = f.error,
        finished_at_ms = f.at_ms, ready_at_ms = NULL, lease_owner = NULL,
        lease_expires_at_ms = NULL, wake_pending = FALSE, status_reason = f.reason
    FROM f
    WHERE {guard}
      AND runs.id = f.id AND runs.lease_token = f.token AND runs.lease_owner = f.owner
      AND runs.status = 'running' AND (f.status = 'cancelled' OR runs.cancel_requested IS NULL)
    RETURNING runs.id, runs.workspace, {_HOLDS_SLOTS} AS holds_slots
), dropped AS (
    DELETE FROM waits WHERE run_id IN (SELECT id FROM done)
)"""


_FINISH = f"""
WITH locks AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(k) FROM unnest($10::bigint[]) AS k
), locked AS MATERIALIZED (
    SELECT id FROM runs
    WHERE (SELECT count(*) FROM locks) >= 0
      AND id = ANY($1::text[] || ARRAY(SELECT parent_run_id FROM runs WHERE id = ANY($1::text[])))
    ORDER BY id
    FOR NO KEY UPDATE
), {finish_ctes("(SELECT count(*) FROM locked) >= 0")}
SELECT id, holds_slots, pg_notify($9, workspace || ' ' || id) FROM done
"""
"""Finalize runs under their leases and drop their waits (`work._FINISH` for many runs), in
one round trip. First (InitPlans, so before any row is written) the shared locks on the names
of the events the finishes send, then (advisory locks come before row locks everywhere) the
rows of the finishing runs and of the parents their ends wake, in id order, as journal writes
and lease renewals lock runs. The rows are found by the primary key, in one array: `id =
ANY(...) OR id IN (subquery)` read the whole table (84 ms a finish with 100 000 runs). The
update reads the rows as they are once locked (READ COMMITTED rechecks a row changed since
the statement began): a run asked to cancel is finalized only as cancelled. Each finish is
announced on `FINISHED_CHANNEL` (to result waiters), delivered at commit."""

_REFUSED = """
SELECT r.id, r.cancel_requested FROM runs r
JOIN unnest($1::text[], $2::bigint[], $3::text[]) AS l(id, token, owner)
  ON r.id = l.id AND r.lease_token = l.token AND r.lease_owner = l.owner
WHERE r.status = 'running'
"""
"""Of the finishes refused, those still holding their lease: a cancel request refused them."""


@dataclass(slots=True)
class Finish:
    """One run's finish (`Store.finish`): its outcome and the events its end sends."""

    workspace: str
    lease: Lease
    outcome: Outcome
    events: list[PlannedEvent]
    now_ms: int


async def finish_many(conn: Conn, items: list[Finish]) -> list[FinishResult | LeaseLost]:
    """Finalize runs in this transaction; for each: what it did (or the reason of a cancel
    that refused its outcome), or LeaseLost. The events may start no run under flow control
    (those finish alone: their flow keys are locked before any row)."""
    names = {k for it in items for k in intake.lock_keys(it.workspace, _names(it))}
    done = {
        r[0]: bool(r[1])
        for r in await conn.fetch(_FINISH, *outcome_columns(items), FINISHED_CHANNEL, sorted(names))
    }
    reasons = await refused(conn, [it for it in items if it.lease.run_id not in done])
    events: dict[str, list[PlannedEvent]] = {}
    for it in items:
        if it.lease.run_id in done:
            await scores.put(conn, it.workspace, it.outcome.scores, it.now_ms)
            if it.events:
                events.setdefault(it.workspace, []).extend(it.events)
    now_ms = max(it.now_ms for it in items)
    wakes: set[str] = set()
    woke: set[str] = set()  # workspaces whose events made runs ready (told to each finish)
    for ws, planned in events.items():
        if (await intake.ingest(conn, ws, planned, now_ms, locked=True, wakes=wakes)).work_ready:
            woke.add(ws)
    await intake.wake_resolved(conn, wakes, now_ms)
    for ws in {it.workspace for it in items if done.get(it.lease.run_id)}:
        await notify(conn, ws)  # their slots are free: runs held back may start
    return results_of(items, done, reasons, woke)


def outcome_columns(items: list[Finish]) -> list[list[Any]]:
    """Each finish's lease and outcome, as the arrays `_FINISH` takes first ($1 to $8)."""
    return [
        [it.lease.run_id for it in items],
        [it.lease.token for it in items],
        [it.lease.owner for it in items],
        [it.outcome.status.value for it in items],
        [enc_opt(it.outcome.output) for it in items],
        [enc_opt(it.outcome.error) for it in items],
        [it.now_ms for it in items],
        [it.outcome.reason for it in items],
    ]


def results_of(
    items: list[Finish],
    done: dict[str, bool],
    reasons: dict[str, str],
    woke: Collection[str] = (),
) -> list[FinishResult | LeaseLost]:
    """What each finish did: `done` (run id: it freed slots), else refused by a cancel
    (`reasons`), else its lease was lost; `woke`: the workspaces whose events made runs
    ready."""
    results: list[FinishResult | LeaseLost] = []
    for it in items:
        run_id = it.lease.run_id
        if run_id in done:
            results.append(FinishResult(work_ready=done[run_id] or it.workspace in woke))
        elif (reason := reasons.get(run_id)) is not None:
            results.append(FinishResult(cancel_requested=reason))
        else:
            results.append(LeaseLost(run_id))
    return results


def _names(item: Finish) -> set[str]:
    return {p.event.name for p in item.events}


async def refused(conn: Conn, items: list[Finish]) -> dict[str, str]:
    """Of finishes that took no effect, the cancel reasons of those a cancel request refused
    (they still hold their lease); the others lost it."""
    if not items:
        return {}
    rows = await conn.fetch(
        _REFUSED,
        [it.lease.run_id for it in items],
        [it.lease.token for it in items],
        [it.lease.owner for it in items],
    )
    return {r[0]: str(r[1]) for r in rows if r[1] is not None}
