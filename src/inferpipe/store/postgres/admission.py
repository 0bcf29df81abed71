"""Flow control when runs are inserted (PostgreSQL): skip them, fold them into a pending
debounce or batch run, or queue them in their fair order.

Runs inside the inserting transaction (READ COMMITTED, many processes):

1. The flow keys of the runs (idempotency, rate limit, singleton, debounce/batch, fair queue)
   are locked first, with transaction advisory locks in key order, so intakes in several
   processes admit the runs of one key one after another. Claims never take these locks.
2. The state those keys decide by is read by a statement of its own, whose snapshot then holds
   every admission of those keys committed before (a pending debounce/batch run is row-locked,
   so a claim cannot start it while an event is folded into it).
3. The decisions are taken here, run after run in insertion order, by the same rules and with
   the same reasons as the SQLite store (`inferpipe.store.flow_reasons`).
4. The state they consume is written back in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inferpipe.core.records import FINISHED_STATUSES, FlowBuffer, NewRun, RunFlow
from inferpipe.store.base import FAIR_STEP_MS, IDEMPOTENCY_WINDOW_MS
from inferpipe.store.flow_reasons import at, concurrency_reason, span
from inferpipe.store.postgres.database import Conn, lock_key
from inferpipe.store.postgres.rows import dec, enc

_FINISHED = "(" + ", ".join(f"'{s.value}'" for s in FINISHED_STATUSES) + ")"

MAX_SINGLETON_VICTIMS = 100
"""Unfinished runs of a singleton key that a cancelling newcomer asks to stop, at most."""


def flow_lock(ws: str, kind: str, key: str) -> int:
    """The advisory lock of a flow key. The NUL bytes keep flow locks apart from event-name
    locks (an event name cannot hold one) and the kinds apart from one another."""
    return lock_key(ws, f"\0{kind}\0{key}")


@dataclass(slots=True)
class Admitted:
    """A run to insert, as admission decided."""

    run: NewRun
    ready_at_ms: int | None
    input: Any
    event_ids: list[str]
    reason: str | None = None
    skipped: bool = False
    queue_at_ms: int | None = None
    queue_group: str | None = None  #: `RunFlow.queue_group`, with a fair queue tag


@dataclass(slots=True)
class _Pending:
    """A debounce or batch run that has not started, collecting the events of its key."""

    run_id: str
    first_at_ms: int
    size: int
    ready_at_ms: int
    input: Any
    event_ids: list[str]
    row: Admitted | None = None  #: when inserted by this admission
    reason: str | None = None
    changed: bool = False  #: to write back


@dataclass(slots=True)
class Admission:
    """What admitting a list of runs decided, and the flow state to write back."""

    rows: list[Admitted] = field(default_factory=list)
    triggers: list[tuple[str, str]] = field(default_factory=list)  #: (event id, run id)
    cancels: list[tuple[str, str]] = field(default_factory=list)  #: (run id, reason)
    idempotency: dict[str, str] = field(default_factory=dict)  #: key -> run id
    rate_hits: list[str] = field(default_factory=list)  #: one key per admitted run
    rate_periods: dict[str, int] = field(default_factory=dict)  #: key -> period_ms
    pending: dict[str, _Pending] = field(default_factory=dict)  #: buffer key -> its run
    tags: dict[str, int] = field(default_factory=dict)  #: fair key -> next tag

    def ready_now(self, now_ms: int) -> bool:
        """Whether a run became claimable now (queued, folded into a full batch, or asked to
        stop by a singleton newcomer)."""
        return (
            bool(self.cancels)
            or any(not r.skipped and (r.ready_at_ms or 0) <= now_ms for r in self.rows)
            or any(p.changed and p.ready_at_ms <= now_ms for p in self.pending.values())
        )


_STATE = f"""
WITH pending AS (
    SELECT b.key, b.run_id, b.first_at_ms, b.size, r.ready_at_ms, r.input, r.event_ids
    FROM flow_buffers b JOIN runs r ON r.id = b.run_id
    WHERE b.workspace = $1 AND b.key = ANY($6::text[]) AND r.status = 'queued'
      AND r.attempts = 0 AND r.cancel_requested IS NULL AND r.ready_at_ms > $2
    FOR UPDATE OF r
)
SELECT 'idem', key, NULL::bigint, NULL::bigint, NULL::bigint, run_id, NULL::json, NULL::json
FROM flow_idempotency
WHERE workspace = $1 AND key = ANY($3::text[]) AND expires_at_ms > $2
UNION ALL
SELECT 'rate', h.key, count(*), NULL, NULL, NULL, NULL, NULL
FROM flow_rate_hits h JOIN unnest($4::text[], $5::bigint[]) AS p(key, period_ms)
    ON h.key = p.key
WHERE h.workspace = $1 AND h.at_ms > $2 - p.period_ms
GROUP BY h.key
UNION ALL
SELECT 'buffer', key, first_at_ms, size, ready_at_ms, run_id, input, event_ids FROM pending
UNION ALL
SELECT 'single', singleton_key, NULL, NULL, NULL, id, NULL, NULL FROM runs
WHERE workspace = $1 AND singleton_key = ANY($7::text[]) AND status NOT IN {_FINISHED}
UNION ALL
SELECT 'tag', key, next_tag_ms, NULL, NULL, NULL, NULL, NULL FROM flow_queues
WHERE workspace = $1 AND key = ANY($8::text[])
UNION ALL
SELECT 'head', f.id, (SELECT queue_at_ms FROM runs WHERE workspace = $1 AND function_id = f.id
    AND status = 'queued' AND attempts = 0 AND queue_at_ms IS NOT NULL AND ready_at_ms <= $2
    ORDER BY queue_at_ms LIMIT 1), NULL, NULL, NULL, NULL, NULL
FROM unnest($9::text[]) AS f(id)
UNION ALL
SELECT 'running', k, count(*), NULL, NULL, NULL, NULL, NULL FROM (
    SELECT concurrency_key1 FROM runs
    WHERE workspace = $1 AND status = 'running' AND concurrency_key1 = ANY($10::text[])
    UNION ALL SELECT concurrency_key2 FROM runs
    WHERE workspace = $1 AND status = 'running' AND concurrency_key2 = ANY($10::text[])
    UNION ALL SELECT singleton_key FROM runs
    WHERE workspace = $1 AND status = 'running' AND singleton_key = ANY($10::text[])
) AS held(k) GROUP BY k
"""
"""The flow state the runs' keys decide by, read after their locks are held."""


class _Decider:
    """Admits runs one after another against the state loaded for their keys."""

    def __init__(self, rows: list[Any], now_ms: int, admission: Admission) -> None:
        self.now_ms = now_ms
        self.out = admission
        self.used: dict[str, str] = {}
        self.hits: dict[str, int] = {}
        self.unfinished: dict[str, list[str]] = {}
        self.tags: dict[str, int] = {}
        self.heads: dict[str, int | None] = {}
        self.running: dict[str, int] = {}
        for kind, key, a, b, c, text, raw_input, raw_ids in rows:
            if kind == "idem":
                self.used[key] = text
            elif kind == "rate":
                self.hits[key] = int(a)
            elif kind == "buffer":
                admission.pending[key] = _Pending(text, a, b, c, dec(raw_input), dec(raw_ids))
            elif kind == "single":
                self.unfinished.setdefault(key, []).append(text)
            elif kind == "tag":
                self.tags[key] = int(a)
            elif kind == "head":
                self.heads[key] = None if a is None else int(a)
            else:
                self.running[key] = int(a)

    def admit(self, run: NewRun, flow: RunFlow) -> Admitted | None:
        """The run to insert (queued or skipped), or None when its event was folded into the
        key's pending debounce/batch run."""
        row = Admitted(run, run.ready_at_ms, run.input, list(run.event_ids))
        refusal = (
            flow.skip_reason
            or self._duplicate(flow)
            or self._rate_limited(flow)
            or self._singleton_busy(flow)
        )
        if refusal:
            row.ready_at_ms, row.reason, row.skipped = None, refusal, True
            return row
        row.reason = flow.note
        self._remember(run, flow)
        if flow.buffer is not None and self._buffer(run, flow.buffer, row):
            return None
        if flow.fair_key is not None:
            row.queue_at_ms = self._fair_tag(run.function_id, flow.fair_key)
            row.queue_group = flow.queue_group(run.function_id)
        keys = [*flow.concurrency, *([(flow.singleton_key, 1)] if flow.singleton_key else [])]
        if row.reason is None:
            for key, limit in keys:
                if self.running.get(key, 0) >= limit:
                    row.reason = concurrency_reason(key, limit)
                    break
        if flow.singleton_key is not None:
            self.unfinished.setdefault(flow.singleton_key, []).append(run.id)
        return row

    def _duplicate(self, flow: RunFlow) -> str | None:
        key = flow.idempotency_key
        if key is None or key not in self.used:
            return None
        return f"duplicate: idempotency key {key} was used by run {self.used[key]} within 24 h"

    def _rate_limited(self, flow: RunFlow) -> str | None:
        pace = flow.rate_limit
        if pace is None or self.hits.get(pace.key, 0) < pace.limit:
            return None
        return f"rate limited: {pace.limit} runs per {span(pace.period_ms)} on {pace.key}"

    def _singleton_busy(self, flow: RunFlow) -> str | None:
        if flow.singleton_key is None or flow.singleton_cancels:
            return None
        busy = self.unfinished.get(flow.singleton_key)
        if not busy:
            return None
        return f"singleton: run {busy[0]} of key {flow.singleton_key} has not finished"

    def _remember(self, run: NewRun, flow: RunFlow) -> None:
        """Record what an admitted run consumes: its idempotency key, its rate-limit hit, and
        the singleton runs it replaces."""
        if flow.idempotency_key is not None:
            self.used[flow.idempotency_key] = run.id
            self.out.idempotency[flow.idempotency_key] = run.id
        if flow.rate_limit is not None:
            key = flow.rate_limit.key
            self.hits[key] = self.hits.get(key, 0) + 1
            self.out.rate_hits.append(key)
            self.out.rate_periods[key] = flow.rate_limit.period_ms
        if flow.singleton_key is not None and flow.singleton_cancels:
            reason = f"replaced by run {run.id} (singleton {flow.singleton_key})"
            victims = self.unfinished.get(flow.singleton_key, [])[:MAX_SINGLETON_VICTIMS]
            self.out.cancels += [(old, reason) for old in victims]

    def _buffer(self, run: NewRun, buf: FlowBuffer, row: Admitted) -> bool:
        """Fold the event into the key's pending run (True), or make this run the pending one."""
        pending = self.out.pending.get(buf.key)
        if pending is not None and pending.ready_at_ms > self.now_ms:
            pending.size += 1
            if buf.batch:
                pending.input = pending.input + run.input
                pending.event_ids = pending.event_ids + run.event_ids
            else:  # debounce: the last event wins
                pending.input, pending.event_ids = run.input, list(run.event_ids)
            pending.ready_at_ms, pending.reason = window(
                buf, pending.first_at_ms, pending.size, self.now_ms
            )
            pending.changed = True
            self.out.triggers += [(eid, pending.run_id) for eid in run.event_ids]
            if pending.row is not None:  # inserted by this admission: not written yet
                pending.row.input, pending.row.event_ids = pending.input, pending.event_ids
                pending.row.ready_at_ms, pending.row.reason = pending.ready_at_ms, pending.reason
            return True
        row.ready_at_ms, row.reason = window(buf, self.now_ms, 1, self.now_ms)
        self.out.pending[buf.key] = _Pending(
            run.id, self.now_ms, 1, row.ready_at_ms, run.input, list(run.event_ids), row=row
        )
        self.out.pending[buf.key].changed = True
        return False

    def _fair_tag(self, function_id: str, key: str) -> int:
        """Start-time fair queueing: a key's runs get consecutive tags from the head of the
        function's queue, so keys take turns however many runs each has queued. (Runs
        inserted here never move that head below min(now, head): their tags are above it.)"""
        head = self.heads.get(function_id)
        virtual_now = self.now_ms if head is None else min(head, self.now_ms)
        nxt = self.tags.get(key)
        tag = virtual_now if nxt is None else max(nxt, virtual_now)
        self.tags[key] = self.out.tags[key] = tag + FAIR_STEP_MS
        return tag


def window(buf: FlowBuffer, first_at_ms: int, size: int, now_ms: int) -> tuple[int, str]:
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


async def admit(conn: Conn, ws: str, runs: list[NewRun], now_ms: int) -> Admission:
    """Decide every run (a run without flow control is queued as planned) and write the flow
    state the decisions consume. Runs already stored (a retried write) are left out."""
    out = Admission()
    if not any(run.flow is not None for run in runs):
        out.rows = [Admitted(r, r.ready_at_ms, r.input, list(r.event_ids)) for r in runs]
        out.triggers = [(eid, r.id) for r in runs for eid in r.event_ids]
        return out
    present = await lock(conn, ws, runs)
    decider = _Decider(await _load(conn, ws, runs, now_ms), now_ms, out)
    for run in runs:
        if run.id in present:
            continue
        row = (
            Admitted(run, run.ready_at_ms, run.input, list(run.event_ids))
            if run.flow is None
            else decider.admit(run, run.flow)
        )
        if row is not None:
            out.rows.append(row)
            out.triggers += [(eid, run.id) for eid in run.event_ids]
    await _write(conn, ws, out, now_ms)
    return out


def _flows(runs: list[NewRun]) -> list[RunFlow]:
    return [run.flow for run in runs if run.flow is not None]


async def lock(conn: Conn, ws: str, runs: list[NewRun]) -> set[str]:
    """Lock the runs' flow keys for this transaction (in key order, so two intakes cannot
    deadlock; a caller that locks a run's row first takes them beforehand); returns the ids of
    the runs already stored."""
    names: set[int] = set()
    for flow in _flows(runs):
        for kind, key in (
            ("idempotency", flow.idempotency_key),
            ("rate", flow.rate_limit.key if flow.rate_limit else None),
            ("singleton", flow.singleton_key),
            ("buffer", flow.buffer.key if flow.buffer else None),
            ("fair", flow.fair_key),
        ):
            if key is not None:
                names.add(flow_lock(ws, kind, key))
    rows = await conn.fetch(
        "WITH locks AS MATERIALIZED (SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) k)"
        " SELECT id FROM runs WHERE id = ANY($2::text[]) AND (SELECT count(*) FROM locks) >= 0",
        sorted(names),
        [run.id for run in runs],
    )
    return {row[0] for row in rows}


async def _load(conn: Conn, ws: str, runs: list[NewRun], now_ms: int) -> list[Any]:
    flows = _flows(runs)
    rates = {f.rate_limit.key: f.rate_limit.period_ms for f in flows if f.rate_limit}
    slots = {key for f in flows for key, _ in f.concurrency}
    slots |= {f.singleton_key for f in flows if f.singleton_key}
    fair = [run.function_id for run in runs if run.flow is not None and run.flow.fair_key]
    return list(
        await conn.fetch(
            _STATE,
            ws,
            now_ms,
            list({f.idempotency_key for f in flows if f.idempotency_key}),
            list(rates),
            list(rates.values()),
            list({f.buffer.key for f in flows if f.buffer}),
            list({f.singleton_key for f in flows if f.singleton_key}),
            list({f.fair_key for f in flows if f.fair_key}),
            list(set(fair)),
            list(slots),
        )
    )


_WRITE = """
WITH idem AS (
    INSERT INTO flow_idempotency (workspace, key, run_id, expires_at_ms)
    SELECT $1, t.key, t.run_id, $2::bigint + $3::bigint
    FROM unnest($4::text[], $5::text[]) AS t(key, run_id)
    ON CONFLICT (workspace, key) DO UPDATE SET run_id = excluded.run_id,
        expires_at_ms = excluded.expires_at_ms
), pruned AS (
    DELETE FROM flow_rate_hits h USING unnest($6::text[], $7::bigint[]) AS p(key, period_ms)
    WHERE h.workspace = $1 AND h.key = p.key AND h.at_ms <= $2::bigint - p.period_ms
), hits AS (
    INSERT INTO flow_rate_hits (workspace, key, at_ms)
    SELECT $1, k, $2::bigint FROM unnest($8::text[]) AS k
), buffers AS (
    INSERT INTO flow_buffers (workspace, key, run_id, first_at_ms, size)
    SELECT $1, * FROM unnest($9::text[], $10::text[], $11::bigint[], $12::int[])
    ON CONFLICT (workspace, key) DO UPDATE SET run_id = excluded.run_id,
        first_at_ms = excluded.first_at_ms, size = excluded.size
), queues AS (
    INSERT INTO flow_queues (workspace, key, next_tag_ms)
    SELECT $1, * FROM unnest($13::text[], $14::bigint[])
    ON CONFLICT (workspace, key) DO UPDATE SET next_tag_ms = excluded.next_tag_ms
), folded AS (
    UPDATE runs r SET input = f.input, event_ids = f.event_ids, ready_at_ms = f.ready_at_ms,
        status_reason = f.reason
    FROM unnest($15::text[], $16::json[], $17::json[], $18::bigint[], $19::text[])
        AS f(id, input, event_ids, ready_at_ms, reason)
    WHERE r.id = f.id
)
SELECT 1
"""
"""Write back what admissions consumed: idempotency keys, rate-limit hits (pruning those out
of their window), pending debounce/batch runs (and the events folded into stored ones), and
the fair queues' next tags. Keys are distinct in each upsert."""


async def _write(conn: Conn, ws: str, out: Admission, now_ms: int) -> None:
    buffers = [(key, p) for key, p in out.pending.items() if p.changed]
    folded = [p for _, p in buffers if p.row is None]  # stored runs that took events
    rates = sorted(set(out.rate_hits))
    periods = [out.rate_periods.get(key, 0) for key in rates]
    await conn.execute(
        _WRITE,
        ws,
        now_ms,
        IDEMPOTENCY_WINDOW_MS,
        list(out.idempotency),
        list(out.idempotency.values()),
        rates,
        periods,
        out.rate_hits,
        [key for key, _ in buffers],
        [p.run_id for _, p in buffers],
        [p.first_at_ms for _, p in buffers],
        [p.size for _, p in buffers],
        list(out.tags),
        list(out.tags.values()),
        [p.run_id for p in folded],
        [enc(p.input) for p in folded],
        [enc(p.event_ids) for p in folded],
        [p.ready_at_ms for p in folded],
        [p.reason for p in folded],
    )
