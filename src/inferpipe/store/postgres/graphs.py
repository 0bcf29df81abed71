"""`GraphTable` on PostgreSQL (tables of migration 0003_workflows.sql).

The versions live beside the runs they explain, through the store's own pool; a graph's saves
are serialized by a transaction-scoped advisory lock on (workspace, graph id).
"""

from __future__ import annotations

from inferpipe.core.errors import StoreError
from inferpipe.store import sql
from inferpipe.store.graphs import CURRENT_GRAPHS, SQLGraphs
from inferpipe.store.postgres.database import Database, Runner

CONNECT_TIMEOUT_S = 10.0
"""How long `saved_documents` waits for a connection."""


class PostgresGraphs(SQLGraphs):
    """One workspace's graph versions in PostgreSQL, shared by every worker and API process
    on the database."""

    def __init__(self, db: Database, workspace: str) -> None:
        super().__init__(Runner(db), workspace)


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
            rows = await conn.fetch(sql.numbered(CURRENT_GRAPHS), workspace)
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot read the saved workflow graphs from PostgreSQL: {exc}") from exc
    return [str(row[0]) for row in rows]
