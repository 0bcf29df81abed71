"""The hot path: appending steps and logs to run journals, many runs per statement.

Every step of every run ends in one of these writes. They are group-committed (`Batches`): one
statement, one round trip and one WAL flush for many steps, and each caller still returns only
once its write is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferpipe.core.errors import LeaseLost
from inferpipe.core.records import Lease
from inferpipe.store.base import Progress
from inferpipe.store.postgres.batches import Batches
from inferpipe.store.postgres.database import Conn, Database
from inferpipe.store.postgres.rows import (
    LOG_COLUMNS,
    LOG_TYPES,
    STEP_COLUMNS,
    STEP_TYPES,
    columns_of,
    log_params,
    step_params,
    unnest_sql,
)

MAX_BATCH = 256
"""Writes per statement; bounds how long the batch holds its runs' row locks."""

_FIRST_STEP = 4
"""Parameters: $1-$3 the writes' leases, then the step columns and the log columns, each
led by the number of the write (1-based, as WITH ORDINALITY counts) it belongs to."""
_FIRST_LOG = _FIRST_STEP + 1 + len(STEP_TYPES)

_WRITE = f"""
WITH fence AS (
    SELECT w.n, r.id, r.cancel_requested FROM runs r
    JOIN unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY AS w(id, token, owner, n)
      ON r.id = w.id AND r.lease_token = w.token AND r.lease_owner = w.owner
    WHERE r.status = 'running'
    ORDER BY r.id
    FOR NO KEY UPDATE OF r
), step_rows AS (
    SELECT DISTINCT ON (s.run_id, s.key) s.*
    FROM {unnest_sql(("int[]", *STEP_TYPES), _FIRST_STEP)} AS s(n, {STEP_COLUMNS})
    WHERE s.n IN (SELECT n FROM fence)
    ORDER BY s.run_id, s.key, s.n DESC
), written AS (
    INSERT INTO steps ({STEP_COLUMNS})
    SELECT {STEP_COLUMNS} FROM step_rows
    ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status,
        attempt = excluded.attempt, output = excluded.output, error = excluded.error,
        started_at_ms = COALESCE(steps.started_at_ms, excluded.started_at_ms),
        finished_at_ms = excluded.finished_at_ms, wake_at_ms = excluded.wake_at_ms,
        meta = excluded.meta
    WHERE steps.status NOT IN ('completed', 'failed')
    RETURNING run_id, key
), logged AS (
    INSERT INTO logs ({LOG_COLUMNS})
    SELECT {LOG_COLUMNS} FROM {unnest_sql(("int[]", *LOG_TYPES), _FIRST_LOG)}
        AS l(n, {LOG_COLUMNS})
    WHERE l.n IN (SELECT n FROM fence)
    ON CONFLICT DO NOTHING
)
SELECT f.n, f.cancel_requested, ARRAY(SELECT w.key FROM written w WHERE w.run_id = f.id)
FROM fence f
"""
"""Fence each write by its own lease (run, token and owner must still be the row's; the row
stays locked to the end of the statement, so a takeover cannot slip in between), then append
the steps and logs of the writes that passed. A stale write in the batch is left out alone,
even beside a valid write for the same run. A step written twice in one batch (by one lease)
keeps its latest write. A completed or failed step is final: its row is not overwritten
(exactly-once recording even when a stale replay writes it again), and its key is missing from
the keys returned."""


@dataclass(slots=True)
class JournalWrite:
    lease: Lease
    progress: Progress


@dataclass(frozen=True, slots=True)
class JournalResult:
    cancel_requested: str | None  #: why the run should stop, if it should
    final_keys: set[str] = field(default_factory=set)  #: steps already final: write ignored


async def write(conn: Conn, writes: list[JournalWrite]) -> list[JournalResult | LeaseLost]:
    """Write journals in one statement; each write gets its result, or LeaseLost."""
    steps = [(n, *step_params(s)) for n, w in enumerate(writes, 1) for s in w.progress.steps]
    logs = [(n, *log_params(lg)) for n, w in enumerate(writes, 1) for lg in w.progress.logs]
    rows = await conn.fetch(
        _WRITE,
        [w.lease.run_id for w in writes],
        [w.lease.token for w in writes],
        [w.lease.owner for w in writes],
        *columns_of(steps, len(STEP_TYPES) + 1),
        *columns_of(logs, len(LOG_TYPES) + 1),
    )
    fenced = {r[0]: (r[1], set(r[2])) for r in rows}
    results: list[JournalResult | LeaseLost] = []
    for n, w in enumerate(writes, 1):
        if n not in fenced:
            results.append(LeaseLost(w.lease.run_id))
            continue
        cancel, written = fenced[n]
        final = {s.key for s in w.progress.steps if s.key not in written}
        results.append(JournalResult(cancel, final))
    return results


class JournalWriter:
    """Group commit of journal writes from every run of this process."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._batches: Batches[JournalWrite, JournalResult] = Batches(self._write, MAX_BATCH)

    async def write(self, lease: Lease, progress: Progress) -> JournalResult:
        """Returns once the write is committed; raises LeaseLost if the lease was lost."""
        return await self._batches.submit(JournalWrite(lease, progress))

    async def _write(self, items: list[JournalWrite]) -> list[JournalResult | LeaseLost]:
        return await self._db.read(lambda c: write(c, items))
