"""Scores in SQLite: written with a run's progress, at its finish, or as feedback."""

from __future__ import annotations

import sqlite3
from typing import Any

from inferpipe.core.records import StepKind, experiment_step_key
from inferpipe.core.scores import ScoreRecord, ScoreSource
from inferpipe.store.base import ScoreFilter
from inferpipe.store.sqlite.rows import dec, enc

_COLUMNS = (
    "id, run_id, function_id, name, value, reason, metadata, source, scorer_id, scorer_run_id,"
    " experiment, variant, created_at_ms, updated_at_ms"
)


def put(conn: sqlite3.Connection, ws: str, scores: list[ScoreRecord], now_ms: int) -> None:
    """Insert or update (same id) scores, filling in the run's function and experiment."""
    for score in scores:
        row = conn.execute(
            "SELECT function_id FROM runs WHERE id = ? AND workspace = ?", (score.run_id, ws)
        ).fetchone()
        function_id = row[0] if row else score.function_id
        experiment, variant = score.experiment, score.variant
        if experiment is None:
            experiment, variant = _experiment_of(conn, score.run_id)
        conn.execute(
            f"INSERT INTO scores (workspace, {_COLUMNS}) VALUES ({', '.join('?' * 15)})"
            " ON CONFLICT (id) DO UPDATE SET value = excluded.value, reason = excluded.reason,"
            " metadata = excluded.metadata, updated_at_ms = excluded.updated_at_ms"
            " WHERE scores.workspace = excluded.workspace",
            (
                ws,
                score.id,
                score.run_id,
                function_id,
                score.name,
                score.value,
                score.reason,
                enc(score.metadata),
                score.source.value,
                score.scorer_id,
                score.scorer_run_id,
                experiment,
                variant,
                score.created_at_ms,
                now_ms,
            ),
        )


def _experiment_of(conn: sqlite3.Connection, run_id: str) -> tuple[str | None, str | None]:
    row = conn.execute(
        "SELECT output FROM steps WHERE run_id = ? AND kind = ? AND status = 'completed'"
        " ORDER BY seq LIMIT 1",
        (run_id, StepKind.EXPERIMENT.value),
    ).fetchone()
    if row is None:
        return None, None
    out = dec(row[0]) or {}
    return out.get("experiment"), out.get("variant")


def query(conn: sqlite3.Connection, ws: str, flt: ScoreFilter, limit: int) -> list[ScoreRecord]:
    where: list[str] = ["s.workspace = ?"]
    params: list[str | int] = [ws]
    join = ""
    if flt.experiment is not None:
        # Membership is the run's assignment step (a primary-key lookup per score), so a run
        # in several experiments counts in each, not only in the one its rows name.
        join = (
            " LEFT JOIN steps e ON e.run_id = s.run_id AND e.key = ? AND e.kind = ?"
            " AND e.status = 'completed'"
        )
        params = [experiment_step_key(flt.experiment), StepKind.EXPERIMENT.value, *params]
        where.append("(e.run_id IS NOT NULL OR s.experiment = ?)")
        params.append(flt.experiment)
    for clause, value in (
        ("s.run_id = ?", flt.run_id),
        ("s.function_id = ?", flt.function_id),
        ("s.scorer_id = ?", flt.scorer_id),
        ("s.name = ?", flt.name),
        ("s.created_at_ms >= ?", flt.since_ms),
        ("s.created_at_ms < ?", flt.until_ms),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    columns = ", ".join(f"s.{c.strip()}" for c in _COLUMNS.split(","))
    rows = conn.execute(
        f"SELECT {columns}, {'e.output' if join else 'NULL'} FROM scores s{join}"
        f" WHERE {' AND '.join(where)} ORDER BY s.created_at_ms, s.id LIMIT ?",
        (*params, limit),
    ).fetchall()
    found = [_from_row(r) for r in rows]
    if flt.experiment is not None:
        for score, row in zip(found, rows, strict=True):
            assigned = dec(row[-1])
            if isinstance(assigned, dict):
                score.experiment, score.variant = flt.experiment, assigned.get("variant")
    return found


def get(conn: sqlite3.Connection, ws: str, score_id: str) -> ScoreRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM scores WHERE workspace = ? AND id = ?", (ws, score_id)
    ).fetchone()
    return None if row is None else _from_row(row)


def _from_row(row: tuple[Any, ...]) -> ScoreRecord:
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
