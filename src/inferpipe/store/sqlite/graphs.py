"""`GraphTable` in a SQLite file (tables of migration 0003_workflows.sql)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from inferpipe.store.graphs import (
    CURRENT_GRAPHS,
    INFO_COLUMNS,
    VERSIONS_FROM,
    StoredVersion,
    VersionInfo,
    info_from_row,
)
from inferpipe.store.sqlite.database import Database

_INFO = INFO_COLUMNS
_FROM = VERSIONS_FROM


class SQLiteGraphs:
    """One workspace's graph versions beside the runs, through the store's connection thread
    (so saves take part in its group commits and need no second connection)."""

    def __init__(self, db: Database, workspace: str) -> None:
        self._db = db
        self.workspace = workspace

    def for_workspace(self, workspace: str) -> SQLiteGraphs:
        return SQLiteGraphs(self._db, workspace)

    async def append(self, row: StoredVersion) -> tuple[StoredVersion, bool]:
        return await self._db.write(lambda conn: self._append_in(conn, row))

    def _append_in(
        self, conn: sqlite3.Connection, row: StoredVersion
    ) -> tuple[StoredVersion, bool]:
        ws, info = self.workspace, row.info
        current = _one(
            conn,
            "WHERE v.workspace = ? AND v.graph_id = ? AND h.version IS NOT NULL",
            ws,
            info.graph_id,
        )
        if current is not None and current.info.document_hash == info.document_hash:
            return current, False
        (latest,) = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM workflow_versions"
            " WHERE workspace = ? AND graph_id = ?",
            (ws, info.graph_id),
        ).fetchone()
        version = int(latest) + 1
        conn.execute(
            "INSERT INTO workflow_versions (workspace, graph_id, version, name, content_hash,"
            " document_hash, graph, plan, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ws,
                info.graph_id,
                version,
                info.name,
                info.content_hash,
                info.document_hash,
                row.graph_json,
                row.plan_json,
                info.created_at_ms,
            ),
        )
        _point(conn, ws, info.graph_id, version, info.created_at_ms)
        stored = _one(
            conn,
            "WHERE v.workspace = ? AND v.graph_id = ? AND v.version = ?",
            ws,
            info.graph_id,
            version,
        )
        assert stored is not None  # inserted just above, in this transaction
        return stored, True

    async def fetch(
        self, graph_id: str, version: int | None, content_hash: str | None
    ) -> StoredVersion | None:
        where = "WHERE v.workspace = ? AND v.graph_id = ?"
        params: list[Any] = [self.workspace, graph_id]
        if version is not None:
            where += " AND v.version = ?"
            params.append(version)
        elif content_hash is not None:
            where += " AND v.content_hash = ? ORDER BY v.version DESC LIMIT 1"
            params.append(content_hash)
        else:
            where += " AND h.version IS NOT NULL"
        return await self._db.read(lambda conn: _one(conn, where, *params))

    async def infos(self, graph_id: str) -> list[VersionInfo]:
        sql = f"SELECT {_INFO} {_FROM} WHERE v.workspace = ? AND v.graph_id = ? ORDER BY v.version"
        rows = await self._db.read(
            lambda conn: conn.execute(sql, (self.workspace, graph_id)).fetchall()
        )
        return [info_from_row(row) for row in rows]

    async def heads(self) -> list[VersionInfo]:
        sql = f"SELECT {_INFO} {_FROM} WHERE v.workspace = ? AND h.version IS NOT NULL ORDER BY v.graph_id"
        rows = await self._db.read(lambda conn: conn.execute(sql, (self.workspace,)).fetchall())
        return [info_from_row(row) for row in rows]

    async def set_current(self, graph_id: str, version: int, now_ms: int) -> bool:
        def move(conn: sqlite3.Connection) -> bool:
            found = conn.execute(
                "SELECT 1 FROM workflow_versions WHERE workspace = ? AND graph_id = ?"
                " AND version = ?",
                (self.workspace, graph_id, version),
            ).fetchone()
            if found is None:
                return False
            _point(conn, self.workspace, graph_id, version, now_ms)
            return True

        return await self._db.write(move)


def _point(conn: sqlite3.Connection, ws: str, graph_id: str, version: int, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO workflow_heads (workspace, graph_id, version, updated_at_ms)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (workspace, graph_id)"
        " DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        (ws, graph_id, version, now_ms),
    )


def _one(conn: sqlite3.Connection, where: str, *params: Any) -> StoredVersion | None:
    row = conn.execute(f"SELECT {_INFO}, v.graph, v.plan {_FROM} {where}", params).fetchone()
    if row is None:
        return None
    return StoredVersion(info_from_row(row), str(row[7]), str(row[8]))


def saved_documents(path: Path | str, workspace: str) -> list[str]:
    """The current graph documents of `workspace` in the file at `path`, read without opening
    a store: a missing file or missing tables read as none."""
    if str(path) == ":memory:" or not Path(path).exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute(CURRENT_GRAPHS.format(param="?"), (workspace,)).fetchall()
        except sqlite3.OperationalError:  # the workflow tables do not exist yet
            return []
    return [str(row[0]) for row in rows]
