"""`GraphTable` on PostgreSQL (tables of migration 0003_workflows.sql).

The versions live beside the runs they explain, through the store's own pool (the `Store`
and its workspace, as for API keys). Concurrent saves of one graph, from any number of
processes, are serialized by a transaction-scoped advisory lock on (workspace, graph id), so
each gets its own version number and an unchanged document never makes a second version.
"""

from __future__ import annotations

from typing import Any

from inferpipe.core.errors import StoreError
from inferpipe.store.graphs import (
    CURRENT_GRAPHS,
    INFO_COLUMNS,
    VERSIONS_FROM,
    StoredVersion,
    VersionInfo,
    info_from_row,
)
from inferpipe.store.postgres.database import Conn, Database, lock_key

CONNECT_TIMEOUT_S = 10.0
"""How long `saved_documents` waits for a connection."""

SAVE_LOCK_PREFIX = "workflow-graph:"
"""Advisory lock name of a graph's saves: the prefix keeps it apart from event-name locks."""

_INFO = INFO_COLUMNS
_FROM = VERSIONS_FROM


class PostgresGraphs:
    """One workspace's graph versions in PostgreSQL, shared by every worker and API process
    on the database."""

    def __init__(self, db: Database, workspace: str) -> None:
        self._db = db
        self.workspace = workspace

    def for_workspace(self, workspace: str) -> PostgresGraphs:
        return PostgresGraphs(self._db, workspace)

    async def append(self, row: StoredVersion) -> tuple[StoredVersion, bool]:
        async def append(conn: Conn) -> tuple[StoredVersion, bool]:
            return await self._append_in(conn, row)

        return await self._db.transaction(append)

    async def _append_in(self, conn: Conn, row: StoredVersion) -> tuple[StoredVersion, bool]:
        ws, info = self.workspace, row.info
        lock = lock_key(ws, SAVE_LOCK_PREFIX + info.graph_id)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        current = await _one(
            conn,
            "WHERE v.workspace = $1 AND v.graph_id = $2 AND h.version IS NOT NULL",
            ws,
            info.graph_id,
        )
        if current is not None and current.info.document_hash == info.document_hash:
            return current, False
        latest = await conn.fetchval(
            "SELECT COALESCE(MAX(version), 0) FROM workflow_versions"
            " WHERE workspace = $1 AND graph_id = $2",
            ws,
            info.graph_id,
        )
        version = int(latest) + 1
        await conn.execute(
            "INSERT INTO workflow_versions (workspace, graph_id, version, name, content_hash,"
            " document_hash, graph, plan, created_at_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            ws,
            info.graph_id,
            version,
            info.name,
            info.content_hash,
            info.document_hash,
            row.graph_json,
            row.plan_json,
            info.created_at_ms,
        )
        await _point(conn, ws, info.graph_id, version, info.created_at_ms)
        stored = await _one(
            conn,
            "WHERE v.workspace = $1 AND v.graph_id = $2 AND v.version = $3",
            ws,
            info.graph_id,
            version,
        )
        assert stored is not None  # inserted just above, in this transaction
        return stored, True

    async def fetch(
        self, graph_id: str, version: int | None, content_hash: str | None
    ) -> StoredVersion | None:
        where = "WHERE v.workspace = $1 AND v.graph_id = $2"
        params: list[Any] = [self.workspace, graph_id]
        if version is not None:
            where += " AND v.version = $3"
            params.append(version)
        elif content_hash is not None:
            where += " AND v.content_hash = $3 ORDER BY v.version DESC LIMIT 1"
            params.append(content_hash)
        else:
            where += " AND h.version IS NOT NULL"

        async def fetch(conn: Conn) -> StoredVersion | None:
            return await _one(conn, where, *params)

        return await self._db.read(fetch)

    async def infos(self, graph_id: str) -> list[VersionInfo]:
        sql = (
            f"SELECT {_INFO} {_FROM} WHERE v.workspace = $1 AND v.graph_id = $2 ORDER BY v.version"
        )

        async def select(conn: Conn) -> list[VersionInfo]:
            return [
                info_from_row(tuple(r)) for r in await conn.fetch(sql, self.workspace, graph_id)
            ]

        return await self._db.read(select)

    async def heads(self) -> list[VersionInfo]:
        sql = (
            f"SELECT {_INFO} {_FROM} WHERE v.workspace = $1 AND h.version IS NOT NULL"
            " ORDER BY v.graph_id"
        )

        async def select(conn: Conn) -> list[VersionInfo]:
            return [info_from_row(tuple(r)) for r in await conn.fetch(sql, self.workspace)]

        return await self._db.read(select)

    async def set_current(self, graph_id: str, version: int, now_ms: int) -> bool:
        async def move(conn: Conn) -> bool:
            found = await conn.fetchval(
                "SELECT 1 FROM workflow_versions WHERE workspace = $1 AND graph_id = $2"
                " AND version = $3",
                self.workspace,
                graph_id,
                version,
            )
            if found is None:
                return False
            await _point(conn, self.workspace, graph_id, version, now_ms)
            return True

        return await self._db.transaction(move)


async def _point(conn: Conn, ws: str, graph_id: str, version: int, now_ms: int) -> None:
    await conn.execute(
        "INSERT INTO workflow_heads (workspace, graph_id, version, updated_at_ms)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (workspace, graph_id)"
        " DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        ws,
        graph_id,
        version,
        now_ms,
    )


async def _one(conn: Conn, where: str, *params: Any) -> StoredVersion | None:
    row = await conn.fetchrow(f"SELECT {_INFO}, v.graph, v.plan {_FROM} {where}", *params)
    if row is None:
        return None
    values = tuple(row)
    return StoredVersion(info_from_row(values), str(values[7]), str(values[8]))


async def saved_documents(url: str, workspace: str) -> list[str]:
    """The current graph documents of `workspace` in the database at `url`, read over a
    connection of its own without opening a store: missing tables read as none.

    Raises:
        StoreError: the database cannot be reached or read.
    """
    import asyncpg  # noqa: PLC0415 - PostgreSQL support is optional

    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
        try:
            if not await conn.fetchval("SELECT to_regclass('workflow_heads') IS NOT NULL"):
                return []
            rows = await conn.fetch(CURRENT_GRAPHS.format(param="$1"), workspace)
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot read the saved workflow graphs from PostgreSQL: {exc}") from exc
    return [str(row[0]) for row in rows]
