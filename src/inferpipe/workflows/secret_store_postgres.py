"""`SecretTable` on the PostgreSQL store's pool (table `workspace_secrets`, migration 0008)."""

from __future__ import annotations

from typing import Any

from inferpipe.store.postgres import PostgresStore
from inferpipe.store.postgres.database import Conn
from inferpipe.workflows.secret_store import SealedSecret

_COLUMNS = "workspace, name, ciphertext, created_at_ms, updated_at_ms"


class PostgresSecretTable:
    """Sealed secrets in the same PostgreSQL database as the runs, through the store's pool."""

    def __init__(self, store: PostgresStore) -> None:
        self._db = store._db  # shared on purpose: one pool per process and database

    async def upsert(self, row: SealedSecret) -> SealedSecret:
        async def upsert(c: Conn) -> SealedSecret:
            found = await c.fetchrow(
                f"INSERT INTO workspace_secrets ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (workspace, name) DO UPDATE SET ciphertext = excluded.ciphertext,"
                f" updated_at_ms = excluded.updated_at_ms RETURNING {_COLUMNS}",
                row.workspace,
                row.name,
                row.ciphertext,
                row.created_at_ms,
                row.updated_at_ms,
            )
            assert found is not None  # RETURNING always yields the row
            return _row(tuple(found))

        return await self._db.transaction(upsert)

    async def fetch(self, workspace: str, name: str) -> SealedSecret | None:
        found = await self._select("WHERE workspace = $1 AND name = $2", workspace, name)
        return found[0] if found else None

    async def list_rows(self, workspace: str) -> list[SealedSecret]:
        return await self._select("WHERE workspace = $1 ORDER BY name", workspace)

    async def delete(self, workspace: str, name: str) -> bool:
        async def delete(c: Conn) -> bool:
            status = await c.execute(
                "DELETE FROM workspace_secrets WHERE workspace = $1 AND name = $2",
                workspace,
                name,
            )
            return str(status) != "DELETE 0"

        return await self._db.transaction(delete)

    async def _select(self, clause: str, *params: Any) -> list[SealedSecret]:
        async def select(c: Conn) -> list[SealedSecret]:
            rows = await c.fetch(f"SELECT {_COLUMNS} FROM workspace_secrets {clause}", *params)
            return [_row(tuple(r)) for r in rows]

        return await self._db.read(select)


def _row(r: tuple[Any, ...]) -> SealedSecret:
    return SealedSecret(r[0], r[1], r[2], int(r[3]), int(r[4]))
