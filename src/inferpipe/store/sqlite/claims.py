"""Claiming ready runs under a lease, with flow control: concurrency slots, throttles, and
the fair queue order (SQLite).

Everything runs in the claim's write transaction, and SQLite lets one writer in at a time,
so two worker processes never both take the last slot of a key.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from inferpipe.core.records import ClaimedRun, FlowPace, Lease
from inferpipe.store.flow import pacing, reasons
from inferpipe.store.flow.reasons import concurrency_reason
from inferpipe.store.sqlite.rows import RUN_COLUMNS, STEP_COLUMNS, dec, run_from_row, step_from_row
from inferpipe.store.sqlite.slots import Slots

_PARKED = "('queued', 'sleeping', 'waiting')"

QUEUE_ORDER = (
    "CASE WHEN attempts = 0 AND queue_at_ms IS NOT NULL THEN queue_at_ms"
    " ELSE ready_at_ms - priority * 1000 END, rowid"
)
"""A run that never started goes by its fair queue tag (a turn of its key), others by their
ready time moved `priority` seconds; insertion order breaks ties. In a key's turn starts the
run of its group first by ready time minus priority (`GROUP_ORDER`), so priority is seconds
ahead within a key however long its backlog, and keys still take turns."""

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

_CANDIDATE_COLUMNS = (
    "id, attempts, cancel_requested, concurrency_key1, concurrency_limit1, concurrency_key2,"
    " concurrency_limit2, singleton_key, throttle, throttled_until_ms, status_reason,"
    " queue_group, queue_at_ms"
)


@dataclass(slots=True)
class _Candidate:
    id: str
    attempts: int
    cancel_requested: str | None
    keys: list[tuple[str, int]]
    throttle: Any
    throttled_until_ms: int | None
    status_reason: str | None
    queue_group: str | None
    queue_at_ms: int | None

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> _Candidate:
        keys = [(row[3], row[4]), (row[5], row[6]), (row[7], 1)]
        slots = [(k, n) for k, n in keys if k]
        return cls(row[0], row[1], row[2], slots, row[8], row[9], row[10], row[11], row[12])

    @property
    def turn(self) -> bool:
        """Whether it holds a turn of a fair queue that a run of its group may take."""
        return (
            self.attempts == 0
            and self.queue_group is not None
            and self.cancel_requested is None
            and self.throttled_until_ms is None  # a reserved start is its own
        )


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
    slots = Slots(conn, ws)
    started: set[str] = set()
    for _ in range(MAX_PAGES):
        need = limit - len(taken)
        if need <= 0:
            break
        page = max(2 * need, PAGE_MIN_ROWS)
        # Keys already full are left out in SQL: a busy key's backlog costs a filter, not a
        # row each. Runs seen blocked (a key filled by this claim) are told why they wait.
        rows = _candidates(conn, ws, function_ids, now_ms, slots.full, page)
        blocked_in_a_row = 0
        for row in rows:
            candidate = _Candidate.of(row)
            if candidate.id in started:
                continue  # it started in the turn of another run of its group
            if len(taken) >= limit:
                _explain_if_blocked(conn, candidate, slots)
            elif _admit(conn, ws, candidate, slots, now_ms):
                run_id = _in_turn_of(conn, ws, candidate, now_ms) if candidate.turn else None
                started.add(run_id or candidate.id)
                taken.append(take(conn, run_id or candidate.id, owner, now_ms, lease_ms))
                blocked_in_a_row = 0
            else:
                blocked_in_a_row += 1
            if blocked_in_a_row >= MAX_BLOCKED_IN_A_ROW:
                break  # a key just filled up: ask again without it
        else:
            if len(rows) < page:
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
    return conn.execute(
        f"SELECT {_CANDIDATE_COLUMNS} FROM runs WHERE workspace = ? AND status IN {_PARKED}"
        f" AND ready_at_ms <= ? AND function_id IN ({fns}){skip_full}"
        f" ORDER BY {QUEUE_ORDER} LIMIT ?",
        (*params, page),
    ).fetchall()


def _admit(conn: sqlite3.Connection, ws: str, run: _Candidate, slots: Slots, now_ms: int) -> bool:
    """Whether to take this ready run now; a run held back gets the reason (and a throttled
    one its reserved start)."""
    if run.cancel_requested is not None:
        return True
    if _explain_if_blocked(conn, run, slots):
        return False
    if run.throttle is not None and run.attempts == 0 and run.throttled_until_ms is None:
        pace = FlowPace(*dec(run.throttle))
        start_ms = _throttle_start(conn, ws, pace, now_ms)
        if start_ms > now_ms:
            conn.execute(
                "UPDATE runs SET ready_at_ms = ?, throttled_until_ms = ?, status_reason = ?"
                " WHERE id = ?",
                (start_ms, start_ms, reasons.throttled(start_ms, pace), run.id),
            )
            return False
    slots.hold(run.keys)
    return True


def _in_turn_of(conn: sqlite3.Connection, ws: str, turn: _Candidate, now_ms: int) -> str | None:
    """The run of the group that starts in `turn`'s place, when not `turn` itself: first by
    ready time minus priority. It gives `turn` its own tag (a later turn of the key)."""
    row = conn.execute(
        "SELECT id, queue_at_ms FROM runs INDEXED BY runs_queue_group WHERE workspace = ?"
        " AND queue_group = ? AND status = 'queued' AND attempts = 0 AND ready_at_ms <= ?"
        f" AND cancel_requested IS NULL AND throttled_until_ms IS NULL ORDER BY {GROUP_ORDER}"
        " LIMIT 1",
        (ws, turn.queue_group, now_ms),
    ).fetchone()
    if row is None or row[0] == turn.id:
        return None
    conn.execute("UPDATE runs SET queue_at_ms = ? WHERE id = ?", (row[1], turn.id))
    return str(row[0])


def _explain_if_blocked(conn: sqlite3.Connection, run: _Candidate, slots: Slots) -> bool:
    """Whether a full key holds the run back; if so, the run says so."""
    if run.cancel_requested is not None:
        return False
    blocked = slots.blocking(run.keys)
    if blocked is None:
        return False
    reason = concurrency_reason(*blocked)
    if run.status_reason != reason:
        conn.execute("UPDATE runs SET status_reason = ? WHERE id = ?", (reason, run.id))
    return True


def _throttle_start(conn: sqlite3.Connection, ws: str, pace: FlowPace, now_ms: int) -> int:
    """Reserve the key's next start (`pacing.throttle_start`)."""
    row = conn.execute(
        "SELECT tat, rate_limit FROM flow_throttles WHERE workspace = ? AND key = ?",
        (ws, pace.key),
    ).fetchone()
    start_ms, state = pacing.throttle_start(row, pace, now_ms)
    conn.execute(
        "INSERT INTO flow_throttles (workspace, key, tat, rate_limit) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (workspace, key) DO UPDATE SET tat = excluded.tat,"
        " rate_limit = excluded.rate_limit",
        (ws, pace.key, *state),
    )
    return start_ms


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
) -> ClaimedRun:
    conn.execute(
        "UPDATE runs SET status = 'running', lease_owner = ?, lease_expires_at_ms = ?,"
        " lease_token = lease_token + 1, wake_pending = 0, attempts = attempts + 1,"
        " started_at_ms = COALESCE(started_at_ms, ?), status_reason = NULL WHERE id = ?",
        (owner, now_ms + lease_ms, now_ms, run_id),
    )
    run = run_from_row(
        conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    )
    steps = conn.execute(f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ?", (run_id,)).fetchall()
    journal = {row[1]: step_from_row(row) for row in steps}
    (log_count,) = conn.execute("SELECT COUNT(*) FROM logs WHERE run_id = ?", (run_id,)).fetchone()
    return ClaimedRun(run, Lease(run_id, owner, run.lease_token), journal, log_count, taken_over)


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
