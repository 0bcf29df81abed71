"""Event intake inside a transaction: store, create runs, resume waits, request cancels.

Concurrency (READ COMMITTED, many processes):

- An event id is accepted once: the `event_ids` primary key makes racing intakes of the same id
  (a cron tick seen by every worker) wait for one another; one wins.
- A wait with a lookback and an event of its name must not miss each other. Intake holds a
  shared advisory lock per event name; registering a lookback wait holds it exclusively, so
  one of the two commits first and the other sees it.
- Runs are admitted by their flow control under advisory locks on their flow keys
  (`admission`); a run skipped by it announces its end with a `function.finished` event, so
  the lock on that name is taken up front with the others.
- Locks are taken in one order everywhere: advisory locks on event names, then on flow keys,
  then the run's row, then its waits and steps, so concurrent intakes and commits do not
  deadlock. (Claims lock other advisory keys, and never wait for a row: see `claims`.)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from inferpipe.core import expr
from inferpipe.core.events import FUNCTION_FINISHED, invoke_outcome
from inferpipe.core.records import (
    ClaimedRun,
    IngestResult,
    NewRun,
    NewWait,
    StepStatus,
    WaitKind,
)
from inferpipe.store.base import DEDUPE_WINDOW_MS, PlannedEvent, WakeClaim
from inferpipe.store.flow.admission import RUN_COLUMNS, RUN_WIDTH, Admission, finished_events
from inferpipe.store.flow.claims import UNCHECKED
from inferpipe.store.postgres import admission, claims
from inferpipe.store.postgres.database import CHANNEL, Conn, lock_key, notify
from inferpipe.store.postgres.rows import (
    STEP_COLUMNS,
    STEP_TYPES,
    Row,
    columns_of,
    dec,
    enc,
    enc_opt,
    step_params,
    unnest_sql,
)

_LIVE = "('queued', 'sleeping', 'waiting', 'running')"

_WAKE = (
    "UPDATE runs SET"
    " ready_at_ms = CASE WHEN status = 'running' THEN ready_at_ms ELSE $2 END,"
    " wake_pending = wake_pending OR status = 'running',"
    " status = CASE WHEN status = 'running' THEN 'running' ELSE 'queued' END,"
    " cancel_requested = COALESCE(cancel_requested, $3)"
    f" WHERE id = $1 AND status IN {_LIVE} RETURNING id"
)
"""Make a parked run ready now, or flag a running one to resume as soon as it parks; with a
reason, also ask it to stop. One statement, so a park racing it is seen either way."""

OPEN_STEP_WAITS = """EXISTS (SELECT 1 FROM waits w WHERE w.run_id = runs.id AND w.kind = 'step'
    AND (w.expires_at_ms IS NULL OR w.expires_at_ms > {now}) AND w.id <> {skip})"""
"""Whether a step of the run still waits for an event (other than wait `skip`)."""


def _held_sql(now: str, skip: str) -> str:
    """Whether a parked run that batches its wakes has step waits open (other than `skip`)."""
    return f"""(status IN ('waiting', 'sleeping') AND wake_batch_ms IS NOT NULL
    AND {OPEN_STEP_WAITS.format(now=now, skip=skip)})"""


def _ready_at_sql(now: str, held: str) -> str:
    """The ready time of a run woken by a resolved wait (see `_WAKE_RESOLVED`)."""
    return f"""CASE WHEN status = 'running' THEN ready_at_ms
        WHEN {held} THEN LEAST(COALESCE(ready_at_ms, {now} + wake_batch_ms), {now} + wake_batch_ms)
        ELSE {now} END"""


def _wake_resolved_sql(where: str, now: str, skip: str) -> str:
    held = _held_sql(now, skip)
    return f"""
UPDATE runs SET
    ready_at_ms = {_ready_at_sql(now, held)},
    wake_pending = wake_pending OR status = 'running',
    status = CASE WHEN status = 'running' OR {held} THEN status ELSE 'queued' END
WHERE {where} AND status IN {_LIVE}
"""


_WAKE_RESOLVED = _wake_resolved_sql("id = $1", "$2", "$3")
"""`_WAKE` for a run whose wait `$3` an event resolves: a run that batches its wakes and has
other waits open is made ready at most its batch time from now instead. (Two events resolving
its last two waits at once may both see the other's wait open: it then wakes after its batch
time, not at once.)"""


def lock_keys(ws: str, shared: Collection[str], exclusive: Collection[str] = ()) -> list[int]:
    """The advisory lock keys of event names, in order."""
    return list(_lock_modes(ws, shared, exclusive))


def _lock_modes(ws: str, shared: Collection[str], exclusive: Collection[str]) -> dict[int, bool]:
    keys = {lock_key(ws, name): False for name in shared}
    keys.update({lock_key(ws, name): True for name in exclusive})
    return dict(sorted(keys.items()))  # key order, so two takers cannot deadlock


def lock_names_sql(ws: str, shared: Collection[str]) -> str:
    """`lock_names` of shared locks as SQL without parameters (`Database.transaction`'s
    `first`): the keys are integers."""
    keys = ", ".join(str(key) for key in lock_keys(ws, shared))
    return f"SELECT pg_advisory_xact_lock_shared(k) FROM unnest(ARRAY[{keys}]::bigint[]) AS k"


def event_names(planned: list[PlannedEvent]) -> set[str]:
    """The names an intake of these events locks: theirs, and those its runs may send."""
    return {p.event.name for p in planned} | flow_event_names([r for p in planned for r in p.runs])


async def lock_names(
    conn: Conn, ws: str, shared: Collection[str], exclusive: Collection[str] = ()
) -> None:
    """Take the per-event-name advisory locks, shared or exclusive, for this transaction."""
    keys = _lock_modes(ws, shared, exclusive)
    if keys:
        await conn.execute(
            "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k)"
            " ELSE pg_advisory_xact_lock_shared(k) END"
            " FROM unnest($1::bigint[], $2::bool[]) AS t(k, x)",
            list(keys),
            list(keys.values()),
        )


def _keep_new_and_store(gate: str) -> str:
    """The `won` and `stored` CTEs: keep the ids not seen within the dedupe window and store
    those events; `gate` is a WHERE clause on the ids' insert (or empty)."""
    return f"""won AS (
    INSERT INTO event_ids (workspace, id, received_at_ms)
    SELECT $1, e.id, $3 FROM unnest($2::text[]) AS e(id)
    {gate}
    ON CONFLICT (workspace, id) DO UPDATE SET received_at_ms = EXCLUDED.received_at_ms
    WHERE event_ids.received_at_ms <= $4
    RETURNING id
), stored AS (
    INSERT INTO events (workspace, received_at_ms, id, name, body, ts_ms)
    SELECT $1, $3, e.id, e.name, e.body, e.ts
    FROM unnest($2::text[], $6::text[], $7::json[], $8::bigint[]) AS e(id, name, body, ts)
    WHERE e.id IN (SELECT id FROM won)
)"""


_STORE_EVENTS = f"""
WITH locks AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(k) FROM unnest($5::bigint[]) AS k
), {_keep_new_and_store("WHERE (SELECT count(*) FROM locks) >= 0")}
SELECT id FROM won
"""
"""Take the shared locks on the event names (an InitPlan, so before anything else), keep the
ids not seen within the dedupe window (the `event_ids` key makes racing intakes of one id agree
on a winner), and store those events: one round trip."""

_CANDIDATE = "id, run_id, kind, expression, step_key, event_name"

PIN_VALUES_MAX = 1000
"""Values an intake looks up the pinned waits of at most along with its other candidates (the
events' members, `expr.pinnable_values`); past that (many events, or events with many
members), it reads the names' pinned paths first, then the waits pinned at those (`_PINNED`)."""


def _lookup_sql(names: str, now: str, pins: str) -> str:
    """The waits on the event names `names` that no pinned value selects, the pinned paths of
    those names (`wait_pins`), and the waits pinned to the (name, path, value) triples `pins`
    at one of those paths: rows ('w', candidate), ('p', name, path), ('v', candidate, path,
    value)."""
    return f"""
SELECT 'w', {_CANDIDATE}, NULL, NULL FROM waits
WHERE workspace = $1 AND event_name = ANY({names}::text[]) AND pin_path IS NULL
  AND (expires_at_ms IS NULL OR expires_at_ms > {now})
UNION ALL
SELECT 'p', NULL, NULL, NULL, NULL, NULL, event_name, pin_path, NULL FROM wait_pins
WHERE workspace = $1 AND event_name = ANY({names}::text[])
UNION ALL
SELECT 'v', {_CANDIDATE}, pin_path, pin_value FROM waits
WHERE workspace = $1 AND (expires_at_ms IS NULL OR expires_at_ms > {now})
  AND (event_name, pin_path, pin_value) IN (
      SELECT t.* FROM unnest({pins}) AS t(name, path, value)
      JOIN wait_pins p ON p.workspace = $1 AND p.event_name = t.name AND p.pin_path = t.path)
"""


_LOOKUP = _lookup_sql("$2", "$3", "$4::text[], $5::text[], $6::text[]")

_STORE_EVENTS_LOCKED = f"""
WITH {_keep_new_and_store("")}
SELECT 'e', NULL, NULL, NULL, NULL, NULL, id, NULL, NULL FROM won
UNION ALL
{_lookup_sql("$5", "$3", "$9::text[], $10::text[], $11::text[]")}
"""
"""`_STORE_EVENTS` when the transaction holds the names' locks already (taken by an earlier
statement, so this one's snapshot has every wait registered before them), with the lookup of
the waits on those names (`_lookup_sql`) in the same round trip: rows ('e', event id) for the
events kept, then the candidates."""


@dataclass(frozen=True, slots=True)
class LookedUp:
    """The rows of a lookup (`_lookup_sql`), and whether they hold the waits pinned to every
    value of the events (else those are read after: `PIN_VALUES_MAX`)."""

    rows: Sequence[Row]
    pinned: bool


def pin_values(events: list[dict[str, Any]]) -> list[tuple[str, str, str]] | None:
    """The (name, path, value) triples at which pinned waits may select these events, for a
    lookup (`_lookup_sql`); None when there are more than `PIN_VALUES_MAX`."""
    found: set[tuple[str, str, str]] = set()
    for event in events:
        values = expr.pinnable_values(event, PIN_VALUES_MAX - len(found))
        if values is None:
            return None
        found.update((event["name"], path, value) for path, value in values)
    return sorted(found)


def _pin_columns(pins: list[tuple[str, str, str]] | None) -> list[list[str]]:
    triples = pins or []
    return [[t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples]]


async def ingest(
    conn: Conn,
    ws: str,
    planned: list[PlannedEvent],
    now_ms: int,
    *,
    locked: bool = False,
    wakes: set[str] | None = None,
    claim: WakeClaim | None = None,
) -> IngestResult:
    """Store events (dropping duplicates), create their runs, resolve waits, request cancels;
    notifies listeners when runs became ready (a run taken by `claim` is not ready for them).
    With `wakes`, the runs whose step waits resolve are added to it instead of woken: the
    caller, holding their rows already, wakes them once with `wake_resolved` before it
    commits (and `claim` takes none)."""
    fresh: dict[str, PlannedEvent] = {}
    for item in planned:
        assert item.event.id is not None and item.event.ts_ms is not None
        fresh.setdefault(item.event.id, item)
    names = event_names(planned)
    items = list(fresh.values())
    # Held locks, and no run to insert (with cancel waits the events may match): the waits
    # are looked up with the insert.
    lookup = locked and not any(p.runs for p in items)
    bodies = [p.event.as_dict() for p in items]
    params: list[Any] = [
        ws,
        list(fresh),
        now_ms,
        now_ms - DEDUPE_WINDOW_MS,
        sorted(names) if lookup else [] if locked else lock_keys(ws, names),
        [p.event.name for p in items],
        [enc(body) for body in bodies],
        [p.event.ts_ms for p in items],
    ]
    found: LookedUp | None = None
    if lookup:
        pins = pin_values(bodies)
        rows = await conn.fetch(_STORE_EVENTS_LOCKED, *params, *_pin_columns(pins))
        won = {r[6] for r in rows if r[0] == "e"}
        found = LookedUp([r for r in rows if r[0] != "e"], pins is not None)
    else:
        won = {r[0] for r in await conn.fetch(_STORE_EVENTS, *params)}
    accepted = [p for eid, p in fresh.items() if eid in won]
    runs = [run for p in accepted for run in p.runs]
    inserted = await insert_runs(conn, ws, runs, now_ms, notify_ready=True)
    resolved: list[str] = []
    cancelled = [victim for victim, _ in inserted.cancels]  # replaced singletons
    kept = {id(p) for p in accepted}
    bodies = [body for p, body in zip(items, bodies, strict=True) if id(p) in kept]
    matched = await match_waits(conn, ws, bodies, now_ms, wakes, found, claim)
    for run_id, kind in matched.hits:
        (resolved if kind is WaitKind.STEP else cancelled).append(run_id)
    claimed = matched.claimed
    result = IngestResult(
        [p.event.id for p in accepted if p.event.id],
        [p.event.id for p in planned if p.event.id and id(p) not in kept],
        inserted.created,
        resolved,
        cancelled,
        claimed,
    )
    if cancelled or set(resolved) - {c.run.id for c in claimed}:
        await notify(conn, ws)
    await announce_skipped(conn, ws, inserted.skipped, now_ms)
    return result


_INSERT_RUNS = f"""
WITH made AS (
    INSERT INTO runs (workspace, created_at_ms, {RUN_COLUMNS})
    SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::json[], $7::json[],
        $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::int[],
        $14::bigint[], $15::bigint[], $16::text[], $17::int[], $18::text[], $19::int[],
        $20::text[], $21::bigint[], $22::json[], $23::text[])
    ON CONFLICT (id) DO NOTHING
), triggers AS (
    INSERT INTO run_triggers (event_id, run_id)
    SELECT * FROM unnest($24::text[], $25::text[]) ON CONFLICT DO NOTHING
)
SELECT pg_notify($26, $1) WHERE $27::bool
"""
"""Insert runs as admitted, with their trigger links (a run id already present is left alone:
a retried write is harmless), and tell listeners when some are ready now: one round trip."""


async def insert_runs(
    conn: Conn, ws: str, runs: list[NewRun], now_ms: int, *, notify_ready: bool = False
) -> Admission:
    """Insert runs as their flow control admits them (`admission`); with `notify_ready`,
    NOTIFY (at commit) if one became ready now. The caller announces the skipped ones
    (`announce_skipped`) once the transaction's waits are registered."""
    if not runs:
        return Admission()
    admitted = await admission.decide(conn, ws, runs, now_ms)
    columns = columns_of([row.values(now_ms, enc) for row in admitted.rows], RUN_WIDTH)
    await conn.execute(
        _INSERT_RUNS,
        ws,
        now_ms,
        *columns,
        [t[0] for t in admitted.triggers],
        [t[1] for t in admitted.triggers],
        CHANNEL,
        notify_ready and admitted.ready_now(now_ms),
    )
    live = [row.run for row in admitted.rows if not row.skipped]
    for run in live:
        for wait in run.cancel_waits:
            await insert_wait(conn, ws, wait, now_ms)
    journal = [step_params(s) for r in live for s in r.journal]
    if journal:
        await conn.execute(
            f"INSERT INTO steps ({STEP_COLUMNS}) SELECT * FROM {unnest_sql(STEP_TYPES, 1)}"
            " ON CONFLICT DO NOTHING",
            *columns_of(journal, len(STEP_TYPES)),
        )
    # after the runs they may name: a singleton newcomer asks its predecessors to stop
    for victim, reason in admitted.cancels:
        await request_cancel(conn, victim, reason, now_ms)
    return admitted


def insert_is_one_statement(runs: list[NewRun]) -> bool:
    """Whether `insert_runs` writes these runs in one statement (no flow control to decide, no
    cancel waits or journal to add), so that it commits atomically without a transaction."""
    return not any(run.flow is not None or run.cancel_waits or run.journal for run in runs)


def flow_event_names(runs: list[NewRun]) -> set[str]:
    """The names of the events inserting these runs may send: a run skipped by flow control
    announces its end. Their advisory locks are taken with the others, first."""
    return {FUNCTION_FINISHED} if any(run.flow is not None for run in runs) else set()


async def create_runs(conn: Conn, ws: str, runs: list[NewRun], now_ms: int) -> None:
    """Insert runs outside an intake (invocations, deferred runs, re-runs of a plan)."""
    await lock_names(conn, ws, flow_event_names(runs))
    inserted = await insert_runs(conn, ws, runs, now_ms, notify_ready=True)
    await announce_skipped(conn, ws, inserted.skipped, now_ms)


async def announce_skipped(
    conn: Conn, ws: str, runs: list[tuple[NewRun, str]], now_ms: int
) -> None:
    """Send the `function.finished` of runs skipped by flow control."""
    if runs:
        await ingest(conn, ws, finished_events(runs, now_ms), now_ms)


async def insert_wait(conn: Conn, ws: str, wait: NewWait, now_ms: int) -> None:
    await insert_waits(conn, ws, [wait], now_ms)


_INSERT_WAITS = """
WITH pins AS (
    INSERT INTO wait_pins (workspace, event_name, pin_path)
    SELECT DISTINCT $1, e, p FROM unnest($3::text[], $6::text[]) AS t(e, p) WHERE p IS NOT NULL
    ON CONFLICT DO NOTHING
)
INSERT INTO waits (workspace, created_at_ms, run_id, kind, event_name, expression, pin_path,
    pin_value, step_key, expires_at_ms)
SELECT $1, $2, * FROM unnest($4::text[], $5::text[], $3::text[], $9::text[], $6::text[],
    $7::text[], $8::text[], $10::bigint[])
ON CONFLICT (run_id, step_key) WHERE step_key IS NOT NULL DO NOTHING
"""
"""Register waits, with the pinned paths their event names are looked up by: one round trip."""


async def insert_waits(conn: Conn, ws: str, waits: list[NewWait], now_ms: int) -> None:
    if not waits:
        return
    pins = [expr.find_pin(w.expression) if w.expression else None for w in waits]
    await conn.execute(
        _INSERT_WAITS,
        ws,
        now_ms,
        [w.event_name for w in waits],
        [w.run_id for w in waits],
        [w.kind.value for w in waits],
        [pin.path if pin else None for pin in pins],
        [pin.value if pin else None for pin in pins],
        [w.step_key for w in waits],
        [w.expression for w in waits],
        [w.expires_at_ms for w in waits],
    )


_PINNED = f"""
SELECT {_CANDIDATE}, pin_path, pin_value FROM waits
WHERE workspace = $1 AND (expires_at_ms IS NULL OR expires_at_ms > $2)
  AND (event_name, pin_path, pin_value) IN
      (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]))
"""
"""The waits pinned to the values the events carry at those paths (index `waits_pinned`)."""


@dataclass(slots=True)
class _Candidates:
    """The waits each event of a batch may satisfy, from one lookup for the whole batch (two
    when it has too many values to look up: `PIN_VALUES_MAX`)."""

    unpinned: dict[str, list[Row]] = field(default_factory=dict)  #: by event name
    pinned: dict[tuple[str, str, str], list[Row]] = field(default_factory=dict)
    paths: dict[str, list[str]] = field(default_factory=dict)  #: pinned paths by event name

    def of(self, event: dict[str, Any]) -> list[tuple[Row, bool]]:
        """The candidates, in wait order, each with whether its pin selected it."""
        name = event["name"]
        rows = [(row, False) for row in self.unpinned.get(name, [])]
        for path in self.paths.get(name, []):
            value = expr.pinned_value_of(event, path)
            if value is not None:
                rows += [(row, True) for row in self.pinned.get((name, path, value), [])]
        rows.sort(key=lambda r: int(r[0][0]))
        return rows


async def _candidates(
    conn: Conn, ws: str, events: list[dict[str, Any]], now_ms: int, looked_up: LookedUp | None
) -> _Candidates:
    found = _Candidates()
    if looked_up is None:
        pins = pin_values(events)
        names = sorted({e["name"] for e in events})
        rows = await conn.fetch(_LOOKUP, ws, names, now_ms, *_pin_columns(pins))
        looked_up = LookedUp(rows, pins is not None)
    for row in looked_up.rows:
        if row[0] == "w":
            found.unpinned.setdefault(row[6], []).append(row[1:6])
        elif row[0] == "p":
            found.paths.setdefault(row[6], []).append(row[7])
        else:
            found.pinned.setdefault((row[6], row[7], row[8]), []).append(row[1:6])
    if looked_up.pinned:
        return found
    wanted = {
        (e["name"], path, value)
        for e in events
        for path in found.paths.get(e["name"], [])
        if (value := expr.pinned_value_of(e, path)) is not None
    }
    if wanted:
        keys = sorted(wanted)
        rows = await conn.fetch(
            _PINNED,
            ws,
            now_ms,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        for row in rows:
            found.pinned.setdefault((row[5], row[6], row[7]), []).append(row[:5])
    return found


@dataclass(slots=True)
class Matched:
    """The waits an intake's events resolved, and the runs it took (`WakeClaim`)."""

    hits: list[tuple[str, WaitKind]]  #: (run id, wait kind) of each wait resolved
    claimed: list[ClaimedRun] = field(default_factory=list)


async def match_waits(
    conn: Conn,
    ws: str,
    events: list[dict[str, Any]],
    now_ms: int,
    wakes: set[str] | None = None,
    looked_up: LookedUp | None = None,
    claim: WakeClaim | None = None,
) -> Matched:
    """Resolve the waits these events satisfy, in event order (a wait goes to the first event
    that matches it). The runs whose step waits resolve are woken once each, after their
    waits are consumed, and taken as `claim` says; with `wakes`, they are added to it instead
    (see `ingest`). Cancels are asked for first, so a run this batch asks to stop is not
    taken. `looked_up`: the lookup of the waits on these events' names, when already read."""
    if not events:
        return Matched([])
    candidates = await _candidates(conn, ws, events, now_ms, looked_up)
    taken: set[int] = set()
    stopping: set[str] = set()  # a cancel drops the run's other cancel waits
    steps: list[tuple[int, str, str, dict[str, Any]]] = []
    cancels: list[tuple[int, str, dict[str, Any]]] = []
    for event in events:
        variables = {"async": event}
        for (wait_id, run_id, kind, expression, step_key), by_pin in candidates.of(event):
            step = WaitKind(kind) is WaitKind.STEP
            if wait_id in taken or (not step and run_id in stopping):
                continue
            # a wait its pin selected, whose expression is that pin alone, matches as it is
            pinned = by_pin and expr.is_pin_only(expression)
            if expression and not pinned and not expr.matches(expression, variables):
                continue
            taken.add(wait_id)
            if step:
                steps.append((wait_id, run_id, step_key, event))
            else:
                stopping.add(run_id)
                cancels.append((wait_id, run_id, event))
    stopped: list[tuple[str, WaitKind]] = []
    for wait_id, run_id, event in cancels:
        reason = f"cancelled by event {event['name']} ({event['id']})"
        if await request_cancel(conn, run_id, reason, now_ms, wait_id=wait_id):
            stopped.append((run_id, WaitKind.CANCEL))
    if wakes is not None:
        consumed, claimed = await _resolve(conn, steps, now_ms, wake=False)
        wakes.update(run_id for wait_id, run_id, _, _ in steps if wait_id in consumed)
    else:
        consumed, claimed = await _resolve(conn, steps, now_ms, wake=True, claim=claim)
    hits = [(run_id, WaitKind.STEP) for wait_id, run_id, _, _ in steps if wait_id in consumed]
    return Matched(hits + stopped, claimed)


_STEP_RETURNING = ", ".join(f"steps.{c.strip()}" for c in STEP_COLUMNS.split(","))


def _resolve_sql(*, lock: bool, journal: bool) -> str:
    """The CTEs of `_RESOLVE`: `r` (the waits to resolve, $1-$7), `gate` and `resolved`;
    with `lock`, `locked` first; with `journal`, `resolved` returns the steps it completed."""
    head = (
        "locked AS MATERIALIZED ("
        "SELECT id FROM runs WHERE id = ANY($2::text[]) ORDER BY id FOR NO KEY UPDATE), "
        if lock
        else ""
    )
    after_lock = "WHERE (SELECT count(*) FROM locked) >= 0" if lock else ""
    returning = f" RETURNING {_STEP_RETURNING}" if journal else ""
    return f"""WITH {head}r AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::json[], $5::text[],
        $6::json[], $7::json[]) AS r(wait_id, run_id, step_key, event, status, output, error)
    {after_lock}
), gate AS (
    DELETE FROM waits WHERE id IN (SELECT wait_id FROM r) RETURNING id, run_id
), resolved AS (
    UPDATE steps SET
        status = CASE WHEN steps.kind = 'invoke' THEN r.status ELSE 'completed' END,
        output = CASE WHEN steps.kind = 'invoke' THEN r.output ELSE r.event END,
        error = CASE WHEN steps.kind = 'invoke' THEN r.error ELSE steps.error END,
        finished_at_ms = $8
    FROM r
    WHERE steps.run_id = r.run_id AND steps.key = r.step_key AND steps.status = 'waiting'
      AND r.wait_id IN (SELECT id FROM gate){returning}
)"""


_RESOLVE = f"""{_resolve_sql(lock=False, journal=False)}
SELECT id FROM gate
"""
"""Consume the waits and complete their steps with their events (an `invoke` step: with its
child's return value, or failed with the child's error). Deleting a wait is the claim on the
match: two intakes racing for one wait resolve it once. Returns the waits consumed."""

_RESOLVE_AND_WAKE = f"""{_resolve_sql(lock=True, journal=False)}, woken AS (
    {_wake_resolved_sql("id IN (SELECT run_id FROM gate)", "$8", "ALL (SELECT id FROM gate)")}
)
SELECT id FROM gate
"""
"""`_RESOLVE`, with the runs' rows locked first (an InitPlan, in id order, as a batch of journal
writes locks them, so the two never deadlock) and the runs whose waits it consumed woken
(`_WAKE_RESOLVED`; its check for other open waits leaves out the ones this statement deletes,
which its snapshot still holds): one round trip."""

_HELD = _held_sql("$8", "ALL (SELECT id FROM gate)")
_TAKEABLE = f"""status IN {claims.PARKED} AND NOT {_HELD} AND {UNCHECKED}
    AND function_id = ANY($11::text[])"""
_TAKE = f"(id IN (SELECT id FROM chosen) AND {_TAKEABLE})"
_TAKEN = "(status = 'running' AND NOT wake_pending)"
"""A run taken, after the update (a running run it woke is left `wake_pending`)."""

_RESOLVE_WAKE_AND_TAKE = f"""{_resolve_sql(lock=True, journal=True)}, chosen AS (
    SELECT id FROM runs WHERE id IN (SELECT run_id FROM gate) AND {_TAKEABLE}
    ORDER BY id LIMIT $12
), woken AS (
    UPDATE runs SET
        ready_at_ms = {_ready_at_sql("$8", _HELD)},
        wake_pending = CASE WHEN {_TAKE} THEN FALSE ELSE wake_pending OR status = 'running' END,
        status = CASE WHEN {_TAKE} THEN 'running'
            WHEN status = 'running' OR {_HELD} THEN status ELSE 'queued' END,
        {claims.take_resumed_sql(_TAKE, "$9", "$8::bigint + $10::bigint", "$8::bigint")}
    WHERE id IN (SELECT run_id FROM gate) AND status IN {_LIVE}
    RETURNING {_TAKEN} AS taken, {claims.resumed_sql(_TAKEN, "resolved")}
)
SELECT g.id, w.* FROM gate g LEFT JOIN woken w ON w.id = g.run_id AND w.taken
"""
"""`_RESOLVE_AND_WAKE` that also takes, under a lease for $9 for $10 ms, up to $12 of the runs
it makes ready now, of the functions $11, with nothing for flow control to check and no cancel
asked (`WakeClaim`), in id order: one round trip, not a statement of its own after it.
`chosen` picks them in the statement's snapshot; the update checks each again on its row as
locked (`claims.take_resumed_sql`). A run taken comes with its journal: the snapshot's steps,
with those this statement completed as it completed them (`resolved`), whole when the run was
parked in the snapshot and nobody claimed it since (see `claims.resumed_runs`)."""


async def _resolve(
    conn: Conn,
    steps: list[tuple[int, str, str, dict[str, Any]]],
    now_ms: int,
    *,
    wake: bool,
    claim: WakeClaim | None = None,
) -> tuple[set[int], list[ClaimedRun]]:
    """Consume the waits and complete their steps; with `wake`, lock and wake their runs
    too, and take them as `claim` says. Returns the waits consumed and the runs taken."""
    if not steps:
        return set(), []
    outcomes = [invoke_outcome(event) for _, _, _, event in steps]
    params: list[Any] = [
        [s[0] for s in steps],
        [s[1] for s in steps],
        [s[2] for s in steps],
        [enc(s[3]) for s in steps],
        [(StepStatus.COMPLETED if done else StepStatus.FAILED).value for done, _, _ in outcomes],
        [enc_opt(output) for _, output, _ in outcomes],
        [enc_opt(error) for _, _, error in outcomes],
        now_ms,
    ]
    if not wake:
        return {int(r[0]) for r in await conn.fetch(_RESOLVE, *params)}, []
    if claim is None or claim.limit <= 0 or not claim.function_ids:
        return {int(r[0]) for r in await conn.fetch(_RESOLVE_AND_WAKE, *params)}, []
    rows = await conn.fetch(
        _RESOLVE_WAKE_AND_TAKE,
        *params,
        claim.owner,
        claim.lease_ms,
        claim.function_ids,
        claim.limit,
    )
    taken = [row[2:] for row in rows if row[1]]
    return {int(r[0]) for r in rows}, await claims.resumed_runs(conn, taken, claim.owner)


async def wake_resolved(conn: Conn, run_ids: set[str], now_ms: int) -> None:
    """Wake runs whose resolved waits are already consumed (`_WAKE_RESOLVED`), once each, in
    id order."""
    for run_id in sorted(run_ids):
        await conn.execute(_WAKE_RESOLVED, run_id, now_ms, 0)


async def resolve_step(
    conn: Conn, run_id: str, step_key: str, event: dict[str, Any] | None, now_ms: int
) -> None:
    """Complete a waiting step with the event that satisfied it."""
    await conn.execute(
        "UPDATE steps SET status = $1, output = $2, finished_at_ms = $3"
        " WHERE run_id = $4 AND key = $5 AND status = $6",
        StepStatus.COMPLETED.value,
        enc_opt(event),
        now_ms,
        run_id,
        step_key,
        StepStatus.WAITING.value,
    )


async def request_cancel(
    conn: Conn, run_id: str, reason: str, now_ms: int, *, wait_id: int | None = None
) -> bool:
    """Ask a live run to stop (waking it); False when it had finished, or when `wait_id` was
    already consumed by a concurrent intake."""
    if await conn.fetchval(_WAKE, run_id, now_ms, reason) is None:
        return False
    gone = await conn.fetch(
        "DELETE FROM waits WHERE run_id = $1 AND kind = $2 RETURNING id",
        run_id,
        WaitKind.CANCEL.value,
    )
    return wait_id is None or wait_id in {r[0] for r in gone}


async def lookback(conn: Conn, ws: str, wait: NewWait, now_ms: int) -> Any:
    """The first event received within the wait's lookback window that matches it."""
    if not wait.lookback_ms:
        return None
    rows = await conn.fetch(
        "SELECT body FROM events WHERE workspace = $1 AND name = $2 AND received_at_ms >= $3"
        " ORDER BY seq",
        ws,
        wait.event_name,
        now_ms - wait.lookback_ms,
    )
    for (body,) in rows:
        event = dec(body)
        if not wait.expression or expr.matches(wait.expression, {"async": event}):
            return event
    return None
