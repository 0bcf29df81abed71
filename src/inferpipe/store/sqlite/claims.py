"""Claiming ready runs under a lease, with flow control: concurrency slots, throttles, and
the fair queue order (SQLite). Candidates are read a page at a time in queue order, with the
running runs of their keys and their throttles' states; the policy
(`inferpipe.store.flow.claims`) decides, and each page's plan is written before the next is read.

Everything runs in the claim's write transaction, and SQLite lets one writer in at a time,
so two worker processes never both take the last slot of a key.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections.abc import Collection
from typing import Any

from inferpipe.core.records import ClaimedRun, Lease, NewRun
from inferpipe.store.base import WakeClaim
from inferpipe.store.flow.claims import (
    CANDIDATE_COLUMNS,
    UNCHECKED,
    Candidate,
    ClaimPlan,
    ClaimPolicy,
)
from inferpipe.store.sqlite import intake
from inferpipe.store.sqlite.rows import RUN_COLUMNS, STEP_COLUMNS, dec, run_from_row, step_from_row
from inferpipe.store.sqlite.slots import running_slots

_PARKED = "('queued', 'sleeping', 'waiting')"

QUEUE_ORDER = (
    "CASE WHEN attempts = 0 AND queue_at_ms IS NOT NULL THEN queue_at_ms"
    " ELSE ready_at_ms - priority * 1000 END, rowid"
)
"""A run that never started goes by its fair queue tag (a turn of its key), others by their
ready time moved `priority` seconds; insertion order breaks ties (see `store.flow.claims`).
The index `runs_queue` is on it, for queued runs."""

GROUP_ORDER = "ready_at_ms - priority * 1000, rowid"
"""The order of a queue group's runs (the index `runs_queue_group` is on it)."""

PAGE_MIN_ROWS = 32
"""Candidates read at once; more pages are read while runs are blocked by full keys."""

MAX_PAGES = 8
"""Bound on candidate pages per claim: a claim blocked this often returns what it has."""

MAX_BLOCKED_IN_A_ROW = 16
"""Runs held back in a row before the page is read again without their (now full) keys."""

MAX_EXCLUDED_KEYS = 500
"""Full keys left out in SQL at most (three parameters each); beyond, rows are checked here."""


def claim(
    conn: sqlite3.Connection,
    ws: str,
    owner: str,
    function_ids: list[str],
    limit: int,
    now_ms: int,
    lease_ms: int,
) -> list[ClaimedRun]:
    fns = ", ".join("?" * len(function_ids))
    # Expired leases first: their runs already hold their slots.
    stale = conn.execute(
        f"SELECT id FROM runs WHERE status = 'running' AND lease_expires_at_ms < ? AND workspace = ?"
        f" AND function_id IN ({fns}) LIMIT ?",
        (now_ms, ws, *function_ids, limit),
    ).fetchall()
    taken = [take(conn, run_id, owner, now_ms, lease_ms, taken_over=True) for (run_id,) in stale]
    policy = ClaimPolicy(limit - len(taken), now_ms, *running_slots(conn, ws))
    turns = _Turns(conn, ws, now_ms)
    for _ in range(MAX_PAGES):
        if not policy.room:
            break
        page = max(2 * (policy.limit - policy.taken), PAGE_MIN_ROWS)
        # Keys already full are left out in SQL: a busy key's backlog costs a filter, not a
        # row each. Runs seen blocked (a key filled by this claim) are told why they wait.
        rows = _candidates(conn, ws, function_ids, now_ms, policy.full, page)
        candidates = [Candidate.of(row, dec) for row in rows]
        _load_paces(conn, ws, policy, candidates)
        plan, blocked_in_a_row = policy.page(), 0
        for candidate in candidates:
            if candidate.id in policy.started:
                continue  # it started in the turn of another run of its group
            if not policy.room:
                policy.explain(candidate)
            elif policy.start(candidate, turns):
                blocked_in_a_row = 0
            else:
                blocked_in_a_row += 1
            if blocked_in_a_row >= MAX_BLOCKED_IN_A_ROW:
                break  # a key just filled up: ask again without it
        taken += _write(conn, ws, plan, owner, now_ms, lease_ms)
        if blocked_in_a_row < MAX_BLOCKED_IN_A_ROW and len(rows) < page:
            break
    return taken


def _candidates(
    conn: sqlite3.Connection,
    ws: str,
    function_ids: list[str],
    now_ms: int,
    full: set[str],
    page: int,
) -> list[tuple[Any, ...]]:
    fns = ", ".join("?" * len(function_ids))
    params: list[Any] = [ws, now_ms, *function_ids]
    skip_full = ""
    if full and len(full) <= MAX_EXCLUDED_KEYS:
        # Runs asked to cancel only finalize: no key holds them back.
        marks = ", ".join("?" * len(full))
        skip_full = (
            f" AND (cancel_requested IS NOT NULL OR (COALESCE(concurrency_key1, '') NOT IN"
            f" ({marks}) AND COALESCE(concurrency_key2, '') NOT IN ({marks})"
            f" AND COALESCE(singleton_key, '') NOT IN ({marks})))"
        )
        params += [*full, *full, *full]
    # Queued runs walk the queue's index in order; sleeping and waiting runs whose time has
    # come are found by ready time (few): a parked run never costs a claim a row of the walk.
    where = f"ready_at_ms <= ? AND function_id IN ({fns}){skip_full}"
    queued = conn.execute(
        f"SELECT {CANDIDATE_COLUMNS}, {QUEUE_ORDER} FROM runs INDEXED BY runs_queue"
        f" WHERE workspace = ? AND status = 'queued' AND {where} ORDER BY {QUEUE_ORDER} LIMIT ?",
        (*params, page),
    ).fetchall()
    due = conn.execute(
        f"SELECT {CANDIDATE_COLUMNS}, {QUEUE_ORDER} FROM runs INDEXED BY runs_ready"
        f" WHERE workspace = ? AND status IN ('sleeping', 'waiting') AND {where}"
        f" ORDER BY {QUEUE_ORDER} LIMIT ?",
        (*params, page),
    ).fetchall()
    rows = heapq.merge(queued, due, key=lambda row: row[-2:])
    return [row[:-2] for row in itertools.islice(rows, page)]


def _load_paces(
    conn: sqlite3.Connection, ws: str, policy: ClaimPolicy, candidates: list[Candidate]
) -> None:
    """The GCRA states of the page's throttle keys not read yet."""
    keys = {c.throttle.key for c in candidates if c.throttle and c.paced} - policy.paces.keys()
    if not keys:
        return
    policy.paces.update(dict.fromkeys(keys))
    rows = conn.execute(
        f"SELECT key, tat, rate_limit FROM flow_throttles WHERE workspace = ?"
        f" AND key IN ({', '.join('?' * len(keys))})",
        (ws, *keys),
    ).fetchall()
    policy.paces.update((key, (tat, rate)) for key, tat, rate in rows)


class _Turns:
    """The runs of a queue group first by ready time minus priority (`GROUP_ORDER`)."""

    def __init__(self, conn: sqlite3.Connection, ws: str, now_ms: int) -> None:
        self.conn, self.ws, self.now_ms = conn, ws, now_ms

    def first(self, group: str, skip: Collection[str]) -> tuple[str, int] | None:
        rows = self.conn.execute(
            "SELECT id, queue_at_ms FROM runs INDEXED BY runs_queue_group WHERE workspace = ?"
            " AND queue_group = ? AND status = 'queued' AND attempts = 0 AND ready_at_ms <= ?"
            " AND cancel_requested IS NULL AND throttled_until_ms IS NULL"
            f" ORDER BY {GROUP_ORDER} LIMIT ?",
            (self.ws, group, self.now_ms, len(skip) + 1),
        ).fetchall()
        for run_id, tag in rows:
            if run_id not in skip:
                return run_id, tag
        return None


def _write(
    conn: sqlite3.Connection, ws: str, plan: ClaimPlan, owner: str, now_ms: int, lease_ms: int
) -> list[ClaimedRun]:
    """Write what a page decided: throttle reservations, the runs they delay, the reasons of
    runs held back, the turns given away; then take the runs."""
    conn.executemany(
        "INSERT INTO flow_throttles (workspace, key, tat, rate_limit) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (workspace, key) DO UPDATE SET tat = excluded.tat,"
        " rate_limit = excluded.rate_limit",
        [(ws, key, *state) for key, state in plan.paces.items()],
    )
    conn.executemany(
        "UPDATE runs SET ready_at_ms = ?, throttled_until_ms = ?, status_reason = ? WHERE id = ?",
        [(start_ms, start_ms, reason, run_id) for run_id, start_ms, reason in plan.delayed],
    )
    conn.executemany(
        "UPDATE runs SET status_reason = ? WHERE id = ?",
        [(reason, run_id) for run_id, reason in plan.explained],
    )
    conn.executemany(
        "UPDATE runs SET queue_at_ms = ? WHERE id = ?",
        [(tag, run_id) for run_id, tag in plan.retagged.items()],
    )
    return [take(conn, run_id, owner, now_ms, lease_ms) for run_id in plan.take]


def start_run(
    conn: sqlite3.Connection, ws: str, run: NewRun, now_ms: int, owner: str, lease_ms: int
) -> ClaimedRun | None:
    """Insert a run claimed by `owner` (see `Store.start_run`), in the caller's write."""
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run.id,)).fetchone() is not None:
        return None
    intake.create_runs(conn, ws, [run], now_ms)
    return take(conn, run.id, owner, now_ms, lease_ms, new=True)


def take_resumed(
    conn: sqlite3.Connection, ws: str, run_ids: list[str], claim: WakeClaim, now_ms: int
) -> list[ClaimedRun]:
    """Take the runs an intake just resumed (`WakeClaim`), in the intake's write."""
    if not run_ids or claim.limit <= 0 or not claim.function_ids:
        return []
    ids = sorted(set(run_ids))
    rows = conn.execute(
        f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(ids))}) AND workspace = ?"
        f" AND status = 'queued' AND ready_at_ms <= ? AND {UNCHECKED}"
        f" AND function_id IN ({', '.join('?' * len(claim.function_ids))}) ORDER BY id LIMIT ?",
        (*ids, ws, now_ms, *claim.function_ids, claim.limit),
    ).fetchall()
    return [take(conn, run_id, claim.owner, now_ms, claim.lease_ms) for (run_id,) in rows]


def claim_cancelled(
    conn: sqlite3.Connection,
    ws: str,
    owner: str,
    run_id: str,
    function_ids: list[str],
    now_ms: int,
    lease_ms: int,
) -> ClaimedRun | None:
    """Take a run asked to cancel that no worker executes (see `Store.claim_cancelled`)."""
    row = conn.execute(
        f"SELECT 1 FROM runs WHERE id = ? AND workspace = ? AND status IN {_PARKED}"
        f" AND cancel_requested IS NOT NULL AND function_id IN ({', '.join('?' * len(function_ids))})",
        (run_id, ws, *function_ids),
    ).fetchone()
    return None if row is None else take(conn, run_id, owner, now_ms, lease_ms)


def take(
    conn: sqlite3.Connection,
    run_id: str,
    owner: str,
    now_ms: int,
    lease_ms: int,
    *,
    taken_over: bool = False,
    new: bool = False,
) -> ClaimedRun:
    """Take the run under a lease for `owner`, with its journal and its count of logs; `new`:
    inserted by this transaction with no journal, so it has neither steps nor logs to read."""
    run = run_from_row(
        conn.execute(
            "UPDATE runs SET status = 'running', lease_owner = ?, lease_expires_at_ms = ?,"
            " lease_token = lease_token + 1, wake_pending = 0, attempts = attempts + 1,"
            " started_at_ms = COALESCE(started_at_ms, ?), status_reason = NULL WHERE id = ?"
            f" RETURNING {RUN_COLUMNS}",
            (owner, now_ms + lease_ms, now_ms, run_id),
        ).fetchone()
    )
    lease = Lease(run_id, owner, run.lease_token)
    if new:
        return ClaimedRun(run, lease, {}, 0, taken_over)
    steps = conn.execute(f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?", (run_id,)).fetchall()
    journal = {row[1]: step_from_row(row) for row in steps}
    (log_count,) = conn.execute("SELECT COUNT(*) FROM logs WHERE run_id = ?", (run_id,)).fetchone()
    return ClaimedRun(run, lease, journal, log_count, taken_over)


def next_ready_at(
    conn: sqlite3.Connection, ws: str, function_ids: list[str], after_ms: int | None
) -> int | None:
    fns = ", ".join("?" * len(function_ids))
    # One index range per status, from `after_ms` on: not a scan of every parked run.
    first = (
        f"(SELECT ready_at_ms FROM runs WHERE workspace = ? AND status = ? AND ready_at_ms > ?"
        f" AND function_id IN ({fns}) ORDER BY ready_at_ms LIMIT 1)"
    )
    statuses = ("queued", "sleeping", "waiting")
    (ready,) = conn.execute(
        f"SELECT MIN(t) FROM ({' UNION ALL '.join(f'SELECT {first} AS t' for _ in statuses)})",
        [p for s in statuses for p in (ws, s, -1 if after_ms is None else after_ms, *function_ids)],
    ).fetchone()
    (lease,) = conn.execute(
        # A lease is claimable once the clock is past its end (claims take `< now`).
        f"SELECT MIN(lease_expires_at_ms) + 1 FROM runs WHERE status = 'running' AND workspace = ?"
        f" AND function_id IN ({fns})",
        (ws, *function_ids),
    ).fetchone()
    times = [t for t in (ready, lease) if t is not None]
    return min(times) if times else None
