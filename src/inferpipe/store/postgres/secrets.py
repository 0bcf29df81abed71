"""`SecretTable` on PostgreSQL (table `workspace_secrets`, migration 0008)."""

from __future__ import annotations

from typing import Any

from inferpipe.store.postgres.database import Conn, Database
from inferpipe.store.secrets import SECRET_COLUMNS, SealedSecret, secret_from_row


class PostgresSecrets:
    """Sealed secrets in the same PostgreSQL database as the runs, through the store's pool."""

    database_file = None

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, row: SealedSecret) -> SealedSecret:
        async def upsert(c: Conn) -> SealedSecret:
            found = await c.fetchrow(
                f"INSERT INTO workspace_secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (workspace, name) DO UPDATE SET ciphertext = excluded.ciphertext,"
                f" updated_at_ms = excluded.updated_at_ms RETURNING {SECRET_COLUMNS}",
                row.workspace,
                row.name,
                row.ciphertext,
                row.created_at_ms,
                row.updated_at_ms,
            )
            assert found is not None  # RETURNING always yields the row
            return secret_from_row(tuple(found))

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
            rows = await c.fetch(
                f"SELECT {SECRET_COLUMNS} FROM workspace_secrets {clause}", *params
            )
            return [secret_from_row(tuple(r)) for r in rows]

        return await self._db.read(select)
