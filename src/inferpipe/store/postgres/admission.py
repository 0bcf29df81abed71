"""Flow control when runs are inserted (PostgreSQL): the state of the runs' flow keys is
loaded, the policy (`inferpipe.store.flow.admission`) decides, its plan is written.

Runs inside the inserting transaction (READ COMMITTED, many processes):

1. The flow keys of the runs (idempotency, rate limit, singleton, debounce/batch, fair queue)
   are locked first, with transaction advisory locks in key order, so intakes in several
   processes admit the runs of one key one after another. Claims never take these locks.
2. The state those keys decide by is read by a statement of its own, whose snapshot then holds
   every admission of those keys committed before (a pending debounce/batch run is row-locked,
   so a claim cannot start it while an event is folded into it).
3. The policy decides, run after run in insertion order.
4. The state the decisions consume is written back in one statement.
"""

from __future__ import annotations

from inferpipe.core.records import FINISHED_STATUSES, NewRun
from inferpipe.store.base import IDEMPOTENCY_WINDOW_MS
from inferpipe.store.flow.admission import Admission, AdmissionState, Keys, Pending, admit
from inferpipe.store.postgres.database import Conn, lock_key
from inferpipe.store.postgres.rows import dec, enc

_FINISHED = "(" + ", ".join(f"'{s.value}'" for s in FINISHED_STATUSES) + ")"


def flow_lock(ws: str, kind: str, key: str) -> int:
    """The advisory lock of a flow key. The NUL bytes keep flow locks apart from event-name
    locks (an event name cannot hold one) and the kinds apart from one another."""
    return lock_key(ws, f"\0{kind}\0{key}")


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


async def decide(conn: Conn, ws: str, runs: list[NewRun], now_ms: int) -> Admission:
    """Decide every run (a run without flow control is queued as planned) and write the flow
    state the decisions consume. Runs already stored (a retried write) are left out."""
    if not any(run.flow is not None for run in runs):
        return admit(runs, AdmissionState(), now_ms)
    present = await lock(conn, ws, runs)
    out = admit(runs, await _load(conn, ws, Keys.of(runs), now_ms), now_ms, present)
    await _write(conn, ws, out, now_ms)
    return out


async def lock(conn: Conn, ws: str, runs: list[NewRun]) -> set[str]:
    """Lock the runs' flow keys for this transaction (in key order, so two intakes cannot
    deadlock; a caller that locks a run's row first takes them beforehand); returns the ids of
    the runs already stored."""
    names: set[int] = set()
    for flow in (run.flow for run in runs if run.flow is not None):
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


async def _load(conn: Conn, ws: str, keys: Keys, now_ms: int) -> AdmissionState:
    rows = await conn.fetch(
        _STATE,
        ws,
        now_ms,
        keys.idempotency,
        list(keys.rates),
        list(keys.rates.values()),
        keys.buffers,
        keys.singletons,
        keys.fair,
        keys.functions,
        keys.slots,
    )
    state, running = AdmissionState(), {}
    for kind, key, a, b, c, text, raw_input, raw_ids in rows:
        if kind == "idem":
            state.used[key] = text
        elif kind == "rate":
            state.hits[key] = int(a)
        elif kind == "buffer":
            state.pending[key] = Pending(text, a, b, c, dec(raw_input), dec(raw_ids))
        elif kind == "single":
            state.unfinished.setdefault(key, []).append(text)
        elif kind == "tag":
            state.tags[key] = int(a)
        elif kind == "head":
            state.heads[key] = None if a is None else int(a)
        else:
            running[key] = int(a)
    state.running = running
    return state


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
    buffers, folded = out.buffers, out.folded
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
