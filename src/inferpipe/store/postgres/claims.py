"""Claiming ready runs under a lease, with flow control: concurrency slots, throttles and the
fair queue order (PostgreSQL).

Many workers claim at once, each in a transaction of its own (READ COMMITTED):

- Candidates are read in queue order and row-locked with FOR UPDATE SKIP LOCKED: a run that
  another claim holds is passed over, never waited for. Keys already full are left out in SQL.
- Before it counts the running runs of a concurrency key (a singleton key is one with a single
  slot), a claim takes the key's advisory lock, then counts in a statement of its own, whose
  snapshot holds every claim of that key committed before. Only claims make a run `running`,
  so two claims never both take the last slot of a key. A throttle key is locked the same way
  around its GCRA state.
- The keys of a claim's first page are waited for, in key order; those of later pages are only
  tried (the runs of a key that another claim holds are passed over this time). Claims wait for
  no row while they hold these locks, and intakes never take them: no deadlock.
- A run that stops running frees its slots without a lock: a claim that still counted it
  leaves a run queued, and the NOTIFY sent when the slot frees (`work.finish`, `work.park`)
  makes the workers claim again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from inferpipe.core.records import ClaimedRun, Lease, NewRun, Run
from inferpipe.store.base import Claim
from inferpipe.store.flow import admission
from inferpipe.store.flow.claims import (
    CANDIDATE_COLUMNS,
    Candidate,
    ClaimPlan,
    ClaimPolicy,
)
from inferpipe.store.postgres.admission import flow_lock
from inferpipe.store.postgres.database import Conn
from inferpipe.store.postgres.rows import RUN_COLUMNS, STEP_COLUMNS, Row, dec, enc, run_from_row
from inferpipe.store.postgres.rows import step_from_values as step_of

PARKED = "('queued', 'sleeping', 'waiting')"
"""The statuses of a run nobody holds."""

_R_RUN_COLUMNS = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))
_S_STEP_COLUMNS = ", ".join(f"s.{c.strip()}" for c in STEP_COLUMNS.split(","))

QUEUE_ORDER = (
    "(CASE WHEN attempts = 0 AND queue_at_ms IS NOT NULL THEN queue_at_ms"
    " ELSE ready_at_ms - priority * 1000 END)"
)
"""A run that never started goes by its fair queue tag (a turn of its key), others by their
ready time moved `priority` seconds; insertion order (`queue_seq`) breaks ties (see
`store.flow.claims`). The index `runs_queue` is on this very expression."""

MAX_PAGES = 8
"""Bound on candidate pages per claim: a claim blocked this often returns what it has."""

MAX_PAGE_ROWS = 256
"""Runs taken by the one-statement claim at most (`claim_plain`)."""

CHECKED_PAGE_ROWS = 32
"""Candidates read (and row-locked) at once by a claim that checks flow control: a busy key's
backlog is often ahead in the queue, and each candidate locks up to three advisory keys."""

PEEK_ROWS = 32
"""Ready runs looked at past a page, without locking them: those a full key holds back get the
reason (the page itself holds only as many runs as the claim may take)."""

_READY = """workspace = $1 AND ready_at_ms <= $2
      AND function_id = ANY($3::text[]) AND id <> ALL($6::text[])
      AND (cancel_requested IS NOT NULL OR (
          COALESCE(concurrency_key1, '') NOT IN (SELECT k FROM full_keys)
          AND COALESCE(concurrency_key2, '') NOT IN (SELECT k FROM full_keys)
          AND COALESCE(singleton_key, '') NOT IN (SELECT k FROM full_keys)
          AND NOT (throttle IS NOT NULL AND attempts = 0 AND throttled_until_ms IS NULL
                   AND throttle->>0 = ANY($5::text[]))))"""
"""A ready run of the claimed functions, unless a key of its is full (`full_keys`, or $5: the
keys this claim filled), its throttle is ahead of now (in $5 too: a run not reserved yet could
not start now), or it was passed over ($6); runs asked to cancel are exempt from keys."""


def _ready_in_order(source: int, limit: str, where: str = "", lock: str = "") -> str:
    """Ready runs in queue order, at most `limit`: queued runs walk the queue's index
    (`runs_queue`) in order, sleeping and waiting runs whose time has come are found by ready
    time (`runs_wakeup`: few), and the two are merged. In one walk, a claim that found fewer
    ready runs than it asked for read every parked run ahead of its ready time (~50 ms a
    claim with 100 000 runs waiting). `lock` applies to each part (a row of one part that the
    merge leaves out stays locked until the transaction ends, and no other claim waits on
    it: they skip locked rows)."""
    parts = [
        f"""SELECT * FROM (SELECT {source} AS source, {QUEUE_ORDER} AS q, queue_seq,
        {CANDIDATE_COLUMNS} FROM runs WHERE status {status} AND {_READY}{where}
        ORDER BY {QUEUE_ORDER}, queue_seq LIMIT {limit}{lock}) AS {name}"""
        for name, status in (("queued", "= 'queued'"), ("due", "IN ('sleeping', 'waiting')"))
    ]
    merged = " UNION ALL ".join(parts)
    return f"SELECT * FROM ({merged}) AS ready ORDER BY q, queue_seq LIMIT {limit}"


_HEAD = f"""
WITH full_keys AS MATERIALIZED (
    SELECT k FROM (
        SELECT concurrency_key1, concurrency_limit1 FROM runs
        WHERE workspace = $1 AND status = 'running' AND concurrency_key1 IS NOT NULL
        UNION ALL SELECT concurrency_key2, concurrency_limit2 FROM runs
        WHERE workspace = $1 AND status = 'running' AND concurrency_key2 IS NOT NULL
        UNION ALL SELECT singleton_key, 1 FROM runs
        WHERE workspace = $1 AND status = 'running' AND singleton_key IS NOT NULL
    ) AS held(k, n) GROUP BY k HAVING count(*) >= max(n)
    UNION SELECT unnest($5::text[])
), stale AS (
    SELECT 0 AS source, 0::bigint AS q, 0::bigint AS queue_seq, {CANDIDATE_COLUMNS} FROM runs
    WHERE workspace = $1 AND status = 'running' AND lease_expires_at_ms < $2
      AND function_id = ANY($3::text[]) AND $7::bool
    LIMIT $4 FOR UPDATE SKIP LOCKED
), page AS (
    {_ready_in_order(1, "$4", lock=" FOR UPDATE SKIP LOCKED")}
)"""
"""Runs whose lease expired (first page only: they already hold their slots), then ready runs
in queue order, row-locked, leaving out those of full keys ($5 adds the keys this claim filled)
and those passed over ($6). A claim is durable before it returns, like every write: a claim
lost in a crash would be issued again with the same lease token, and the first holder's
execution could not be told from the second's (and it would start steps on a lease it no
longer holds)."""

_PAST_PAGE = " AND (SELECT count(*) FROM page) = $4 AND id NOT IN (SELECT id FROM page)"

_PAGE = f"""{_HEAD}, peek AS (
    {_ready_in_order(2, "$8", _PAST_PAGE)}
)
SELECT * FROM stale UNION ALL SELECT * FROM page UNION ALL SELECT * FROM peek
"""
"""A page of candidates, and when it is full a peek at the next ready runs (not locked, never
taken here: those held back by a key this claim counts are told why)."""

_CHECKED = (
    "cancel_requested IS NULL AND (concurrency_key1 IS NOT NULL OR singleton_key IS NOT NULL"
    " OR (throttle IS NOT NULL AND attempts = 0 AND throttled_until_ms IS NULL))"
)
"""A ready run that flow control must check before it starts (a key, or a throttle)."""

_AHEAD = f"""LEAST(
    (SELECT ready_at_ms FROM runs WHERE workspace = $1 AND status IN {PARKED}
       AND ready_at_ms > $2 AND function_id = ANY($3::text[])
     ORDER BY ready_at_ms LIMIT 1),
    (SELECT lease_expires_at_ms + 1 FROM runs WHERE workspace = $1 AND status = 'running'
       AND function_id = ANY($3::text[]) AND id NOT IN (SELECT id FROM stale)
     ORDER BY lease_expires_at_ms LIMIT 1))"""
"""`_NEXT_READY` after the claim's time, in the claim's snapshot: the runs it takes were ready
by then (or are the expired leases it takes over, left out), so they do not count."""

_PLAIN = f"""{_HEAD}, verdict AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM page WHERE {_CHECKED}) AS checked, {_AHEAD} AS ahead
), taken AS (
    UPDATE runs r SET status = 'running', lease_owner = $8,
        lease_expires_at_ms = $2::bigint + $9::bigint, lease_token = r.lease_token + 1,
        wake_pending = FALSE, attempts = r.attempts + 1,
        started_at_ms = COALESCE(r.started_at_ms, $2::bigint), status_reason = NULL
    FROM (SELECT id, source, q, queue_seq FROM stale UNION ALL
          (SELECT id, source, q, queue_seq FROM page ORDER BY q, queue_seq
           LIMIT GREATEST(0, $4 - (SELECT count(*) FROM stale)))) AS p
    WHERE r.id = p.id AND NOT (SELECT checked FROM verdict)
    RETURNING p.source, p.q, p.queue_seq,
        (SELECT x.attempts FROM runs x WHERE x.id = r.id) = r.attempts - 1,
        (SELECT count(*) FROM logs l WHERE l.run_id = r.id),
        (SELECT json_agg(json_build_array({_S_STEP_COLUMNS})) FROM steps s WHERE s.run_id = r.id),
        {_R_RUN_COLUMNS}
)
SELECT v.checked, v.ahead, t.* FROM verdict v LEFT JOIN taken t ON TRUE
"""
"""The common claim in one statement: when no run of the page needs a flow control check,
take the expired leases and as much of the page as the limit leaves (a worker asks for its
free slots), with their journals, and read when the next run becomes ready (`_AHEAD`: the
worker whose claim came back short needs no poll); else take nothing and say so (the claim
then runs page by page in a transaction, `_Claim`). A run of the page was parked in this
statement's snapshot (else it would not be a candidate), so its journal, committed before it
parked, is in the snapshot too, unless another claim took and parked it again since (the row
was re-read when locked: its `attempts` differ from the snapshot's). Those journals, and the
ones of expired leases (their holder may have committed steps since the snapshot), are read
again (`_JOURNALS`)."""

_SLOTS = """
SELECT 'running', k, count(*), NULL::bigint FROM (
    SELECT concurrency_key1 FROM runs
    WHERE workspace = $1 AND status = 'running' AND concurrency_key1 = ANY($2::text[])
    UNION ALL SELECT concurrency_key2 FROM runs
    WHERE workspace = $1 AND status = 'running' AND concurrency_key2 = ANY($2::text[])
    UNION ALL SELECT singleton_key FROM runs
    WHERE workspace = $1 AND status = 'running' AND singleton_key = ANY($2::text[])
) AS held(k) GROUP BY k
UNION ALL
SELECT 'throttle', key, tat, rate_limit FROM flow_throttles
WHERE workspace = $1 AND key = ANY($3::text[])
"""
"""Running runs per concurrency key, and the GCRA state per throttle key: read once their
locks are held."""

_TAKE = f"""
WITH paces AS (
    INSERT INTO flow_throttles (workspace, key, tat, rate_limit)
    SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[])
    ON CONFLICT (workspace, key) DO UPDATE SET tat = excluded.tat,
        rate_limit = excluded.rate_limit
), delayed AS (
    UPDATE runs r SET ready_at_ms = d.start_ms, throttled_until_ms = d.start_ms,
        status_reason = d.reason
    FROM unnest($5::text[], $6::bigint[], $7::text[]) AS d(id, start_ms, reason)
    WHERE r.id = d.id
), explained AS (
    UPDATE runs r SET status_reason = e.reason
    FROM unnest($8::text[], $9::text[]) AS e(id, reason)
    WHERE r.id = e.id AND r.status IN {PARKED} AND r.id IN (
        SELECT id FROM runs WHERE id = ANY($8::text[]) FOR UPDATE SKIP LOCKED)
), retagged AS (
    UPDATE runs r SET queue_at_ms = g.tag
    FROM unnest($14::text[], $15::bigint[]) AS g(id, tag) WHERE r.id = g.id
)
UPDATE runs r SET status = 'running', lease_owner = $10,
    lease_expires_at_ms = $11::bigint + $12::bigint, lease_token = r.lease_token + 1,
    wake_pending = FALSE, attempts = r.attempts + 1,
    started_at_ms = COALESCE(r.started_at_ms, $11::bigint), status_reason = NULL
FROM unnest($13::text[]) WITH ORDINALITY AS t(id, n) WHERE r.id = t.id
RETURNING t.n, (SELECT count(*) FROM logs l WHERE l.run_id = r.id),
    (SELECT json_agg(json_build_array({_S_STEP_COLUMNS})) FROM steps s WHERE s.run_id = r.id),
    {_R_RUN_COLUMNS}
"""
"""Write what one page decided: throttle reservations, the runs they delay, the reasons of runs
held back by a full key (a peeked run only if it is still parked and nobody holds it), and the
runs taken (already row-locked by the page), with their journals: this statement starts after
the page locked them, so its snapshot holds every step their previous holder committed."""

_GROUP_FIRST = """
SELECT g.grp, r.id, r.queue_at_ms, r.e, r.queue_seq
FROM unnest($2::text[], $3::int[]) AS g(grp, n) CROSS JOIN LATERAL (
    SELECT id, queue_at_ms, ready_at_ms - priority * 1000 AS e, queue_seq FROM runs
    WHERE workspace = $1 AND queue_group = g.grp AND status = 'queued' AND attempts = 0
      AND ready_at_ms <= $4 AND cancel_requested IS NULL AND throttled_until_ms IS NULL
      AND id <> ALL($5::text[])
    ORDER BY ready_at_ms - priority * 1000, queue_seq LIMIT g.n FOR UPDATE SKIP LOCKED
) AS r
"""
"""The runs of queue groups ($2, $3: how many of each) that take the groups' next turns: first
by ready time minus priority (the index `runs_queue_group`), row-locked, skipping those another
claim holds and those this one took ($5). The same keys hold them back as the runs whose turns
they take: the page's checks stand for them."""

_JOURNALS = f"""
SELECT r.id, (SELECT count(*) FROM logs l WHERE l.run_id = r.id),
    (SELECT json_agg(json_build_array({_S_STEP_COLUMNS})) FROM steps s WHERE s.run_id = r.id)
FROM unnest($1::text[]) AS r(id)
"""
"""The journals of runs taken from an expired lease, or claimed and parked again by another
worker since the claim's snapshot. Read by a statement of its own, after the claim: its snapshot
then holds every step committed by the previous holder before we took the row (a later write of
theirs is fenced), which the claim's own older snapshot could miss."""

_NEXT_READY = f"""
SELECT LEAST(
    (SELECT ready_at_ms FROM runs WHERE workspace = $1 AND status IN {PARKED}
       AND ready_at_ms > COALESCE($3::bigint, -1) AND function_id = ANY($2::text[])
     ORDER BY ready_at_ms LIMIT 1),
    -- a lease is claimable once the clock is past its end (claims take `< now`)
    (SELECT lease_expires_at_ms + 1 FROM runs WHERE workspace = $1 AND status = 'running'
       AND function_id = ANY($2::text[])
     ORDER BY lease_expires_at_ms LIMIT 1))
"""


def take_resumed_sql(take: str, owner: str, until_ms: str, now_ms: str) -> str:
    """The assignments of an intake's UPDATE of the runs it wakes that take those for which
    `take` holds (`WakeClaim`) under a lease for `owner` until `until_ms`; the others'
    columns stay as they are. `take` must read the row's own columns only: a row updated
    since the statement's snapshot is re-read when locked, and `take` is evaluated on it."""
    return f"""lease_owner = CASE WHEN {take} THEN {owner} ELSE lease_owner END,
    lease_expires_at_ms = CASE WHEN {take} THEN {until_ms} ELSE lease_expires_at_ms END,
    lease_token = lease_token + CASE WHEN {take} THEN 1 ELSE 0 END,
    attempts = attempts + CASE WHEN {take} THEN 1 ELSE 0 END,
    started_at_ms = CASE WHEN {take} THEN COALESCE(started_at_ms, {now_ms}) ELSE started_at_ms END,
    status_reason = CASE WHEN {take} THEN NULL ELSE status_reason END"""


def resumed_sql(taken: str, resolved: str) -> str:
    """What an intake's UPDATE of the runs it wakes returns of each (`resumed_runs`); the
    journal's part only for those that `taken` (on the updated row) says it took. `resolved`
    names a CTE returning the steps the statement completed, which its snapshot holds as
    they were before."""
    return f"""CASE WHEN {taken} THEN (SELECT x.status IN {PARKED}
            AND x.attempts = runs.attempts - 1 FROM runs x WHERE x.id = runs.id) END,
        CASE WHEN {taken} THEN (SELECT count(*) FROM logs l WHERE l.run_id = runs.id) END,
        CASE WHEN {taken} THEN (SELECT json_agg(json_build_array({STEP_COLUMNS})) FROM (
            SELECT {STEP_COLUMNS} FROM {resolved} WHERE {resolved}.run_id = runs.id
            UNION ALL SELECT {STEP_COLUMNS} FROM steps WHERE steps.run_id = runs.id
              AND steps.key NOT IN (SELECT key FROM {resolved} WHERE {resolved}.run_id = runs.id)
        ) AS j) END,
        {RUN_COLUMNS}"""


async def resumed_runs(conn: Conn, rows: Sequence[Row], owner: str) -> list[ClaimedRun]:
    """The runs an intake took when it woke them, from its rows (fresh: whether the journal
    read with it is whole, log count, journal, run columns); in id order. A run that was not
    parked in the statement's snapshot, or that another claim took since (`attempts`
    moved), may have steps the snapshot misses: its journal is read again (`_JOURNALS`)."""
    taken = {row[3]: _Taken(run_from_row(row[3:]), row[1], row[2]) for row in rows}
    stale = sorted({row[3] for row in rows if not row[0]})
    if stale:
        for run_id, logs, steps in await conn.fetch(_JOURNALS, stale):
            taken[run_id] = _Taken(taken[run_id].run, logs, steps)
    return [taken[run_id].claimed(owner) for run_id in sorted(taken)]


_NEW = admission.RUN_WIDTH + 2  #: parameters of the inserted row: workspace, creation, columns

_START = f"""
WITH made AS (
    INSERT INTO runs (workspace, created_at_ms, {admission.RUN_COLUMNS},
        lease_owner, lease_expires_at_ms, lease_token, attempts, started_at_ms)
    VALUES ({", ".join(f"${i}" for i in range(1, _NEW + 1))},
        ${_NEW + 1}, $2::bigint + ${_NEW + 2}::bigint, 1, 1, $2)
    ON CONFLICT (id) DO UPDATE SET lease_owner = runs.lease_owner
    WHERE runs.lease_owner = excluded.lease_owner AND runs.lease_token = 1
      AND runs.status = 'running'
    RETURNING {RUN_COLUMNS}
), triggers AS (
    INSERT INTO run_triggers (event_id, run_id)
    SELECT unnest(${_NEW + 3}::text[]), $3 ON CONFLICT DO NOTHING
)
SELECT * FROM made
"""
"""Insert a run as its first claim leaves it (`start_run`), with its trigger links. Run again
after a connection lost at commit, it finds its own row and returns it; another run's row with
that id is left alone (no row returned)."""


STALE, PAGE, PEEK = 0, 1, 2
"""Where a candidate comes from: an expired lease, the page (row-locked), the peek past it."""


@dataclass(frozen=True, slots=True)
class _Taken:
    run: Run
    log_count: int
    steps: str | None  #: the journal as JSON
    taken_over: bool = False  #: from an expired lease

    def claimed(self, owner: str) -> ClaimedRun:
        journal = {v[1]: step_of(v) for v in dec(self.steps) or []}
        lease = Lease(self.run.id, owner, self.run.lease_token)
        return ClaimedRun(self.run, lease, journal, self.log_count, self.taken_over)


class _Turns:
    """The first runs of the page's queue groups, as read (`_GROUP_FIRST`)."""

    def __init__(self) -> None:
        self.first_runs: dict[str, list[tuple[str, int]]] = {}  #: group -> (id, tag), in order

    def first(self, group: str, skip: Collection[str]) -> tuple[str, int] | None:
        return next((f for f in self.first_runs.get(group, []) if f[0] not in skip), None)


class _Claim:
    """One claim, page after page: the keys it locked and counted, the policy's decisions."""

    def __init__(
        self, conn: Conn, ws: str, owner: str, function_ids: list[str], limit: int, now_ms: int
    ) -> None:
        self.conn, self.ws, self.owner = conn, ws, owner
        self.function_ids, self.now_ms = function_ids, now_ms
        self.policy = ClaimPolicy(limit, now_ms)
        self.turns = _Turns()
        self.counted: set[str] = set()  #: slot keys locked and counted
        self.busy: set[str] = set()  #: lock names another claim held (later pages)
        self.passed: set[str] = set()  #: runs passed over: one of their keys was busy
        self.taken: list[_Taken] = []
        self.stale: set[str] = set()  #: runs taken from an expired lease
        self.checked = False  #: whether a candidate needed a flow control check

    async def run(self, lease_ms: int) -> list[_Taken]:
        policy = self.policy
        for page_no in range(MAX_PAGES):
            size = min(policy.limit - policy.taken, CHECKED_PAGE_ROWS)
            if size <= 0:
                break
            first = page_no == 0
            rows = await self.conn.fetch(
                _PAGE,
                self.ws,
                self.now_ms,
                self.function_ids,
                size,
                sorted(policy.full | policy.ahead),
                sorted(self.passed),
                first,
                PEEK_ROWS,
            )
            found = sorted(rows, key=lambda r: (r[0], r[1], r[2]))
            candidates = [(r[0], Candidate.of(r[3:], dec)) for r in found]
            page = [(source, c) for source, c in candidates if source != PEEK]
            self.checked |= any(
                c.keys or c.paced for source, c in page if not (source == STALE or c.exempt)
            )
            await self._read_groups([c for source, c in page if source == PAGE])
            await self._lock_and_count(page, wait=first)
            await self._write(self._decide(candidates), lease_ms)
            if sum(1 for source, _ in page if source != STALE) < size:
                break  # no more ready runs
        return self.taken

    async def _lock_and_count(self, page: list[tuple[int, Candidate]], *, wait: bool) -> None:
        """Lock the slot and throttle keys of the candidates, then read their counts and
        states. On later pages a key another claim holds is skipped (`busy`)."""
        names: dict[int, tuple[str, str]] = {}
        for source, c in page:
            if source == STALE or c.exempt:
                continue
            names |= {flow_lock(self.ws, "slot", k): ("slot", k) for k, _ in c.keys}
            if c.paced and c.throttle is not None:
                key = c.throttle.key
                names[flow_lock(self.ws, "throttle", key)] = ("throttle", key)
        wanted = sorted(
            lock
            for lock, (kind, key) in names.items()
            if key not in (self.counted if kind == "slot" else self.policy.paces)
        )
        if not wanted:
            return
        if wait:
            await self.conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", wanted
            )
            got = set(wanted)
        else:
            rows = await self.conn.fetch(
                "SELECT k FROM unnest($1::bigint[]) AS k WHERE pg_try_advisory_xact_lock(k)",
                wanted,
            )
            got = {row[0] for row in rows}
            self.busy |= {f"{names[n][0]}\0{names[n][1]}" for n in wanted if n not in got}
        slots = [names[n][1] for n in got if names[n][0] == "slot"]
        paces = [names[n][1] for n in got if names[n][0] == "throttle"]
        self.counted.update(slots)
        self.policy.paces.update(dict.fromkeys(paces))
        for kind, key, a, b in await self.conn.fetch(_SLOTS, self.ws, slots, paces):
            if kind == "running":
                self.policy.running[key] = int(a)
            else:
                self.policy.paces[key] = (int(a), int(b))

    async def _read_groups(self, page: list[Candidate]) -> None:
        """For the queue groups of the page's turns: their runs first by ready time minus
        priority, as many as the page has turns of each (row-locked, skipping those locked)."""
        turns = Counter(c.queue_group for c in page if c.turn and c.queue_group is not None)
        self.turns.first_runs = {}
        if not turns:
            return
        rows = await self.conn.fetch(
            _GROUP_FIRST,
            self.ws,
            list(turns),
            list(turns.values()),
            self.now_ms,
            sorted(self.policy.started),
        )
        for group, run_id, tag, _, _ in sorted(rows, key=lambda r: (r[0], r[3], r[4])):
            self.turns.first_runs.setdefault(group, []).append((run_id, int(tag)))

    def _decide(self, candidates: list[tuple[int, Candidate]]) -> ClaimPlan:
        policy = self.policy
        plan = policy.page()
        for source, c in candidates:
            if c.id in policy.started:
                continue  # it started in the turn of another run of its group
            if source == PEEK:
                if all(k in self.counted for k, _ in c.keys):
                    policy.explain(c)
            elif source == STALE:
                policy.take(c.id)  # it already holds its slots
                self.stale.add(c.id)
            elif self._is_busy(c):
                self.passed.add(c.id)
            elif not policy.room:
                policy.explain(c)
            else:
                policy.start(c, self.turns)
        return plan

    def _is_busy(self, c: Candidate) -> bool:
        if c.exempt or not self.busy:
            return False
        held = {f"slot\0{k}" for k, _ in c.keys}
        if c.paced and c.throttle is not None:
            held.add(f"throttle\0{c.throttle.key}")
        return bool(held & self.busy)

    async def _write(self, plan: ClaimPlan, lease_ms: int) -> None:
        if not plan:
            return
        rows = await self.conn.fetch(
            _TAKE,
            self.ws,
            list(plan.paces),
            [state[0] for state in plan.paces.values()],
            [state[1] for state in plan.paces.values()],
            [d[0] for d in plan.delayed],
            [d[1] for d in plan.delayed],
            [d[2] for d in plan.delayed],
            [e[0] for e in plan.explained],
            [e[1] for e in plan.explained],
            self.owner,
            self.now_ms,
            lease_ms,
            plan.take,
            list(plan.retagged),
            list(plan.retagged.values()),
        )
        for row in sorted(rows, key=lambda r: int(r[0])):
            run = run_from_row(row[3:])
            self.taken.append(_Taken(run, row[1], row[2], run.id in self.stale))


async def claim_plain(
    conn: Conn,
    ws: str,
    owner: str,
    function_ids: list[str],
    limit: int,
    now_ms: int,
    lease_ms: int,
) -> Claim | None:
    """Take up to `limit` runs in one statement (outside a transaction) when none of those
    next in the queue needs a flow control check; None when one does (call `claim`). The
    claim says when the next run it left becomes ready; it may have left runs ready only
    when it took a whole page (rows another claim holds are skipped, and that claim takes
    them)."""
    size = min(limit, MAX_PAGE_ROWS)
    rows = await conn.fetch(_PLAIN, ws, now_ms, function_ids, size, [], [], True, owner, lease_ms)
    if rows and rows[0][0]:
        return None
    ahead = None if not rows or rows[0][1] is None else int(rows[0][1])
    taken = sorted((row for row in rows if row[8] is not None), key=lambda r: tuple(r[2:5]))
    runs = [run_from_row(row[8:]) for row in taken]
    journals = {run.id: (row[6], row[7]) for run, row in zip(runs, taken, strict=True)}
    stale = {run.id for run, row in zip(runs, taken, strict=True) if row[2] == STALE}
    moved = {run.id for run, row in zip(runs, taken, strict=True) if not row[5]} | stale
    if moved:
        journals |= {r[0]: (r[1], r[2]) for r in await conn.fetch(_JOURNALS, sorted(moved))}
    claimed = [_Taken(run, *journals[run.id], run.id in stale).claimed(owner) for run in runs]
    return Claim(claimed, more=len(claimed) >= size, looked_ahead=True, next_ready_at_ms=ahead)


async def claim(
    conn: Conn,
    ws: str,
    owner: str,
    function_ids: list[str],
    limit: int,
    now_ms: int,
    lease_ms: int,
) -> tuple[list[ClaimedRun], bool]:
    """Take up to `limit` runs under a lease (see `Store.claim`), checking flow control page
    after page; in a transaction. Returns the runs, and whether one of the runs looked at
    needed a check (else `claim_plain` would have done)."""
    claim = _Claim(conn, ws, owner, function_ids, limit, now_ms)
    taken = await claim.run(lease_ms)
    return [t.claimed(owner) for t in taken], claim.checked


async def start_run(
    conn: Conn, ws: str, run: NewRun, now_ms: int, owner: str, lease_ms: int
) -> ClaimedRun | None:
    """Insert a run claimed by `owner` (see `Store.start_run`): one statement, which commits
    on its own."""
    row = admission.Admitted(run, run.ready_at_ms, run.input, run.event_ids)
    values = list(row.values(now_ms, enc))
    values[2] = "running"
    found = await conn.fetchrow(_START, ws, now_ms, *values, owner, lease_ms, run.event_ids)
    if found is None:
        return None
    started = run_from_row(found)
    return ClaimedRun(started, Lease(started.id, owner, started.lease_token), {}, 0)


async def claim_cancelled(
    conn: Conn,
    ws: str,
    owner: str,
    run_id: str,
    function_ids: list[str],
    now_ms: int,
    lease_ms: int,
) -> ClaimedRun | None:
    """Take a run asked to cancel that no worker executes (see `Store.claim_cancelled`); in a
    transaction. The row lock skips a run that a claim is taking right now."""
    locked = await conn.fetchval(
        f"SELECT id FROM runs WHERE id = $1 AND workspace = $2 AND status IN {PARKED}"
        " AND cancel_requested IS NOT NULL AND function_id = ANY($3::text[])"
        " FOR UPDATE SKIP LOCKED",
        run_id,
        ws,
        function_ids,
    )
    if locked is None:
        return None
    claim = _Claim(conn, ws, owner, [], 1, now_ms)
    await claim._write(ClaimPlan(take=[run_id]), lease_ms)
    return claim.taken[0].claimed(owner) if claim.taken else None


async def next_ready_at(
    conn: Conn, ws: str, function_ids: list[str], after_ms: int | None
) -> int | None:
    value = await conn.fetchval(_NEXT_READY, ws, function_ids, after_ms)
    return None if value is None else int(value)
