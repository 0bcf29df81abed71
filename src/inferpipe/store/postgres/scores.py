"""Scores in PostgreSQL: written with a run's progress, at its finish, or as feedback."""

from __future__ import annotations

from inferpipe.core.records import StepKind, experiment_step_key
from inferpipe.core.scores import ScoreRecord, ScoreSource
from inferpipe.store.base import ScoreFilter
from inferpipe.store.postgres.database import Conn
from inferpipe.store.postgres.rows import Row, dec, enc

_COLUMNS = (
    "id, run_id, function_id, name, value, reason, metadata, source, scorer_id, scorer_run_id,"
    " experiment, variant, created_at_ms, updated_at_ms"
)

_PUT = f"""
WITH run AS (
    SELECT function_id FROM runs WHERE id = $2 AND workspace = $1
), experiment AS (
    SELECT output::json ->> 'experiment' AS name, output::json ->> 'variant' AS variant
    FROM steps WHERE run_id = $2 AND kind = '{StepKind.EXPERIMENT.value}' AND status = 'completed'
    ORDER BY seq LIMIT 1
)
INSERT INTO scores (workspace, {_COLUMNS})
SELECT $1, $3, $2, COALESCE((SELECT function_id FROM run), $4), $5, $6, $7, $8, $9, $10, $11,
    COALESCE($12, (SELECT name FROM experiment)),
    CASE WHEN $12::text IS NULL THEN (SELECT variant FROM experiment) ELSE $13 END, $14, $15
ON CONFLICT (id) DO UPDATE SET value = excluded.value, reason = excluded.reason,
    metadata = excluded.metadata, updated_at_ms = excluded.updated_at_ms
WHERE scores.workspace = excluded.workspace
"""
"""Insert or update (same id) a score, filling in its run's function and, unless given, the
experiment and variant the run was assigned to."""


async def put(conn: Conn, ws: str, scores: list[ScoreRecord], now_ms: int) -> None:
    for score in scores:
        await conn.execute(
            _PUT,
            ws,
            score.run_id,
            score.id,
            score.function_id,
            score.name,
            score.value,
            score.reason,
            enc(score.metadata),
            score.source.value,
            score.scorer_id,
            score.scorer_run_id,
            score.experiment,
            score.variant,
            score.created_at_ms,
            now_ms,
        )


async def get(conn: Conn, ws: str, score_id: str) -> ScoreRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM scores WHERE workspace = $1 AND id = $2", ws, score_id
    )
    return None if row is None else _from_row(row)


async def query(conn: Conn, ws: str, flt: ScoreFilter, limit: int) -> list[ScoreRecord]:
    where = ["s.workspace = $1"]
    params: list[object] = [ws]
    join = ""
    if flt.experiment is not None:
        # Membership is the run's assignment step (a primary-key lookup per score), so a run
        # in several experiments counts in each, not only in the one its rows name.
        params += [experiment_step_key(flt.experiment), flt.experiment]
        join = (
            f" LEFT JOIN steps e ON e.run_id = s.run_id AND e.key = ${len(params) - 1}"
            f" AND e.kind = '{StepKind.EXPERIMENT.value}' AND e.status = 'completed'"
        )
        where.append(f"(e.run_id IS NOT NULL OR s.experiment = ${len(params)})")
    for clause, value in (
        ("s.run_id = {}", flt.run_id),
        ("s.function_id = {}", flt.function_id),
        ("s.scorer_id = {}", flt.scorer_id),
        ("s.name = {}", flt.name),
        ("s.created_at_ms >= {}", flt.since_ms),
        ("s.created_at_ms < {}", flt.until_ms),
    ):
        if value is not None:
            params.append(value)
            where.append(clause.format(f"${len(params)}"))
    columns = ", ".join(f"s.{c.strip()}" for c in _COLUMNS.split(","))
    variant = "e.output::json ->> 'variant'" if join else "NULL"
    rows = await conn.fetch(
        f"SELECT {columns}, {variant} FROM scores s{join} WHERE {' AND '.join(where)}"
        f" ORDER BY s.created_at_ms, s.id LIMIT ${len(params) + 1}",
        *params,
        limit,
    )
    found = [_from_row(r) for r in rows]
    if flt.experiment is not None:
        for score, row in zip(found, rows, strict=True):
            if row[-1] is not None:
                score.experiment, score.variant = flt.experiment, row[-1]
    return found


def _from_row(row: Row) -> ScoreRecord:
    return ScoreRecord(
        id=row[0],
        run_id=row[1],
        function_id=row[2],
        name=row[3],
        value=row[4],
        reason=row[5],
        metadata=dec(row[6]) or {},
        source=ScoreSource(row[7]),
        scorer_id=row[8],
        scorer_run_id=row[9],
        experiment=row[10],
        variant=row[11],
        created_at_ms=row[12],
        updated_at_ms=row[13],
    )
