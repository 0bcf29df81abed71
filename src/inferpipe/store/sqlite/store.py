"""SQLiteStore: the embedded default store (one file, WAL, durable group commits)."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from inferpipe.core.errors import InvalidScoreError, MigrationError, RunNotFoundError
from inferpipe.core.records import (
    ClaimedRun,
    IngestResult,
    Lease,
    LogRecord,
    NewRun,
    Run,
    RunStatus,
    StepRecord,
)
from inferpipe.core.scores import ScoreRecord
from inferpipe.store import payloads
from inferpipe.store.base import (
    Claim,
    FinishResult,
    Outcome,
    Page,
    PlannedEvent,
    Progress,
    ProgressResult,
    RunFilter,
    ScoreFilter,
    WakeClaim,
)
from inferpipe.store.blobs import BlobStore, blob_store_from_url
from inferpipe.store.migrations import migration_files
from inferpipe.store.payloads import MARKER
from inferpipe.store.shadows import SQLShadows
from inferpipe.store.sqlite import admission, claims, intake, scores, work
from inferpipe.store.sqlite.changes import Changes
from inferpipe.store.sqlite.database import Database, Runner
from inferpipe.store.sqlite.graphs import SQLiteGraphs
from inferpipe.store.sqlite.keys import SQLiteKeys
from inferpipe.store.sqlite.rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    dec,
    log_from_row,
    run_from_row,
    step_from_row,
)
from inferpipe.store.sqlite.secrets import SQLiteSecrets
from inferpipe.store.sqlite.stream_log import SQLiteStreamLog
from inferpipe.store.sqlite.webhooks import SQLiteWebhooks


class SQLiteStore:
    """A `Store` on one SQLite file.

    Args:
        path: the database file (created with its folder), or ``":memory:"``.
        workspace: the workspace this view is scoped to.
        blobs: where large payloads go; by default $INFERPIPE_BLOBS_URL, else a `blobs`
            folder beside the database file (in memory for ``":memory:"``).
    """

    def __init__(
        self,
        path: Path | str,
        workspace: str = "default",
        *,
        blobs: BlobStore | None = None,
        _db: Database | None = None,
        _changes: Changes | None = None,
    ):
        self.path = str(path)
        self.workspace = workspace
        self.blobs: BlobStore = blobs or blob_store_from_url(
            None, None if self.path == ":memory:" else Path(self.path).parent / "blobs"
        )
        self._db = _db or Database(self.path)
        self._changes = _changes or Changes(self._db)
        self._owner = _db is None
        self.keys = SQLiteKeys(self._db)
        self.graphs = SQLiteGraphs(self._db, workspace)
        self.shadows = SQLShadows(Runner(self._db), workspace)
        self.secrets = SQLiteSecrets(self._db, self.path)
        self.stream_log = SQLiteStreamLog(self._db)
        self.webhooks = SQLiteWebhooks(self._db)

    def for_workspace(self, workspace: str) -> SQLiteStore:
        return SQLiteStore(
            self.path, workspace, blobs=self.blobs, _db=self._db, _changes=self._changes
        )

    async def open(self) -> None:
        self._db.start()
        await self._db.write(_migrate)

    async def close(self) -> None:
        if self._owner:
            self._db.close()

    async def listen(
        self, callback: Callable[[], None], *, run_id: str | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Call `callback` after another process commits to the file (`Changes`: noticed within
        250 ms; SQLite cannot tell which runs changed, so every listener is told)."""
        return await self._changes.subscribe(callback)

    async def schema_version(self) -> int:
        return await self._db.read(_current_version)

    # events -------------------------------------------------------------------------------
    async def ingest(
        self, events: list[PlannedEvent], now_ms: int, *, claim: WakeClaim | None = None
    ) -> IngestResult:
        def ingest(c: sqlite3.Connection) -> IngestResult:
            result = intake.ingest(c, self.workspace, events, now_ms)
            if claim is None or not result.waits_resolved:
                return result
            taken = claims.take_resumed(c, self.workspace, result.waits_resolved, claim, now_ms)
            return dataclasses.replace(result, runs_claimed=taken)

        return await self._db.write(ingest)

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT body, received_at_ms FROM events WHERE workspace = ? AND id = ?"
                " ORDER BY seq DESC LIMIT 1",
                (self.workspace, event_id),
            ).fetchone()
        )
        return None if row is None else {**dec(row[0]), "received_at": row[1]}

    async def list_events(
        self,
        *,
        name: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        where: list[str] = ["workspace = ?"]
        params: list[str | int] = [self.workspace]
        for clause, value in (
            ("name = ?", name),
            ("received_at_ms >= ?", since_ms),
            ("received_at_ms < ?", until_ms),
            ("seq < ?", int(cursor) if cursor else None),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            f"SELECT seq, body, received_at_ms FROM events WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?"
        )
        rows = await self._db.read(lambda c: c.execute(sql, (*params, limit + 1)).fetchall())
        items = [{**dec(r[1]), "received_at": r[2]} for r in rows[:limit]]
        nxt = str(rows[limit - 1][0]) if len(rows) > limit else None
        return Page(items, nxt)

    # runs ---------------------------------------------------------------------------------
    async def create_runs(self, runs: list[NewRun], now_ms: int) -> None:
        await self._db.write(lambda c: intake.create_runs(c, self.workspace, runs, now_ms))

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._db.read(
            lambda c: c.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ? AND workspace = ?",
                (run_id, self.workspace),
            ).fetchone()
        )
        return None if row is None else run_from_row(row)

    async def list_runs(
        self, flt: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Run]:
        flt = flt or RunFilter()
        where: list[str] = ["workspace = ?"]
        params: list[str | int] = [self.workspace]
        for clause, value in (
            ("function_id = ?", flt.function_id),
            ("status = ?", flt.status.value if flt.status else None),
            ("created_at_ms >= ?", flt.since_ms),
            ("created_at_ms < ?", flt.until_ms),
            ("parent_run_id = ?", flt.parent_run_id),
            ("id IN (SELECT run_id FROM run_triggers WHERE event_id = ?)", flt.event_id),
            ("id < ?", cursor),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        rows = await self._db.read(lambda c: c.execute(sql, (*params, limit + 1)).fetchall())
        runs = [run_from_row(r) for r in rows[:limit]]
        return Page(runs, runs[-1].id if len(rows) > limit else None)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? AND run_id IN"
                " (SELECT id FROM runs WHERE workspace = ?) ORDER BY seq, started_at_ms, key",
                (run_id, self.workspace),
            ).fetchall()
        )
        return [step_from_row(r) for r in rows]

    async def get_logs(self, run_id: str) -> list[LogRecord]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT run_id, seq, level, message, ts_ms, step_key, meta FROM logs"
                " WHERE run_id = ? AND run_id IN (SELECT id FROM runs WHERE workspace = ?)"
                " ORDER BY seq",
                (run_id, self.workspace),
            ).fetchall()
        )
        return [log_from_row(r) for r in rows]

    async def request_cancel(self, run_id: str, reason: str, now_ms: int) -> Run:
        def cancel(c: sqlite3.Connection) -> None:
            if not c.execute(
                "SELECT 1 FROM runs WHERE id = ? AND workspace = ?", (run_id, self.workspace)
            ).fetchone():
                raise RunNotFoundError(run_id)
            intake.request_cancel(c, run_id, reason, now_ms)

        await self._db.write(cancel)
        return await self._must_get(run_id)

    async def rerun(
        self, run_id: str, new_run_id: str, *, from_failed_step: bool, now_ms: int
    ) -> Run:
        await self._must_get(run_id)
        await self._db.write(
            lambda c: work.rerun(c, self.workspace, run_id, new_run_id, from_failed_step, now_ms)
        )
        return await self._must_get(new_run_id)

    async def _must_get(self, run_id: str) -> Run:
        run = await self.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    # work ---------------------------------------------------------------------------------
    async def claim(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> list[ClaimedRun]:
        if not function_ids or limit <= 0:
            return []
        return await self._db.write(
            lambda c: claims.claim(c, self.workspace, owner, function_ids, limit, now_ms, lease_ms)
        )

    async def claim_ready(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> Claim:
        return Claim.of(await self.claim(owner, function_ids, limit, now_ms, lease_ms))

    async def start_run(
        self, run: NewRun, now_ms: int, owner: str, lease_ms: int
    ) -> ClaimedRun | None:
        return await self._db.write(
            lambda c: claims.start_run(c, self.workspace, run, now_ms, owner, lease_ms),
            brief=True,
        )

    async def next_ready_at(
        self, function_ids: list[str], *, after_ms: int | None = None
    ) -> int | None:
        if not function_ids:
            return None
        return await self._db.read(
            lambda c: claims.next_ready_at(c, self.workspace, function_ids, after_ms)
        )

    async def count_runs_by_status(self) -> dict[str, int]:
        def count(c: sqlite3.Connection) -> dict[str, int]:
            rows = c.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
            return {str(status): int(n) for status, n in rows}

        return await self._db.read(count)

    async def check_writable(self, now_ms: int) -> None:
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO store_probes (workspace, at_ms) VALUES (?, ?)"
                " ON CONFLICT (workspace) DO UPDATE SET at_ms = excluded.at_ms",
                (self.workspace, now_ms),
            )
        )

    async def renew_leases(self, leases: list[Lease], until_ms: int) -> list[str]:
        if not leases:
            return []
        return await self._db.write(lambda c: work.renew(c, leases, until_ms), urgent=True)

    async def commit(self, lease: Lease, progress: Progress, now_ms: int) -> ProgressResult:
        return await self._db.write(
            lambda c: work.commit(c, self.workspace, lease, progress, now_ms)
        )

    async def park(
        self,
        lease: Lease,
        status: RunStatus,
        ready_at_ms: int | None,
        now_ms: int,
        *,
        batch_wakes_ms: int | None = None,
    ) -> None:
        await self._db.write(
            lambda c: work.park(c, lease, status, ready_at_ms, now_ms, batch_wakes_ms),
            brief=True,
        )

    async def finish(
        self, lease: Lease, outcome: Outcome, events: list[PlannedEvent], now_ms: int
    ) -> FinishResult:
        return await self._db.write(
            lambda c: work.finish(c, self.workspace, lease, outcome, events, now_ms),
            brief=True,
        )

    async def claim_cancelled(
        self, owner: str, run_id: str, function_ids: list[str], now_ms: int, lease_ms: int
    ) -> ClaimedRun | None:
        if not function_ids:
            return None
        return await self._db.write(
            lambda c: claims.claim_cancelled(
                c, self.workspace, owner, run_id, function_ids, now_ms, lease_ms
            )
        )

    # scores -------------------------------------------------------------------------------
    async def put_score(
        self, score: ScoreRecord, now_ms: int, events: list[PlannedEvent] | None = None
    ) -> ScoreRecord:
        await self._must_get(score.run_id)

        def put(c: sqlite3.Connection) -> ScoreRecord:
            scores.put(c, self.workspace, [score], now_ms)
            stored = scores.get(c, self.workspace, score.id)
            if stored is None:  # the id belongs to another workspace's score: nothing is kept
                raise InvalidScoreError(f"score id {score.id!r} is already used")
            if events:
                intake.ingest(c, self.workspace, events, now_ms)
            return stored

        return await self._db.write(put)

    async def list_scores(self, flt: ScoreFilter, *, limit: int = 1000) -> list[ScoreRecord]:
        return await self._db.read(lambda c: scores.query(c, self.workspace, flt, limit))

    async def blob_refs(self) -> set[str]:
        rows = await self._db.read(
            lambda c: c.execute(_BLOB_REFS, [self.workspace, MARKER] * 6).fetchall()
        )
        return payloads.shas_in(row[0] for row in rows)

    async def purge(self, older_than_ms: int) -> int:
        return await self._db.write(lambda c: _purge(c, self.workspace, older_than_ms))


def _current_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
    )
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def _migrate(conn: sqlite3.Connection) -> None:
    _current_version(conn)
    applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    # Each migration applies once, even one numbered below the newest applied (features add
    # their own numbered files).
    for version, name, sql in migration_files("sqlite"):
        if version in applied:
            continue
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
        except sqlite3.Error as exc:
            raise MigrationError(f"migration {name} failed: {exc}") from exc
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
            (version, name, int(time.time() * 1000)),
        )


_BLOB_REFS = """
SELECT s.output FROM steps s JOIN runs r ON r.id = s.run_id WHERE r.workspace = ? AND instr(s.output, ?)
UNION ALL SELECT s.input FROM steps s JOIN runs r ON r.id = s.run_id
 WHERE r.workspace = ? AND instr(s.input, ?)
UNION ALL SELECT output FROM runs WHERE workspace = ? AND instr(output, ?)
UNION ALL SELECT input FROM runs WHERE workspace = ? AND instr(input, ?)
UNION ALL SELECT body FROM events WHERE workspace = ? AND instr(body, ?)
UNION ALL SELECT body FROM webhook_records WHERE workspace = ? AND instr(body, ?)
"""
"""Rows whose JSON mentions a blob reference (decoded and checked by `payloads.shas_in`): a
webhook delivery's payload keeps a large run output's reference after the run is purged."""


def _purge(conn: sqlite3.Connection, ws: str, older_than_ms: int) -> int:
    old = "SELECT id FROM runs WHERE workspace = ? AND finished_at_ms < ?"
    params = (ws, older_than_ms)
    for table, column in (
        ("steps", "run_id"),
        ("logs", "run_id"),
        ("run_triggers", "run_id"),
        ("scores", "run_id"),
    ):
        conn.execute(f"DELETE FROM {table} WHERE {column} IN ({old})", params)
    removed = conn.execute(
        "DELETE FROM runs WHERE workspace = ? AND finished_at_ms < ?", params
    ).rowcount
    removed += conn.execute(
        "DELETE FROM events WHERE workspace = ? AND received_at_ms < ?", params
    ).rowcount
    admission.purge(conn, ws, older_than_ms)
    return int(removed)
