"""`KeyStore` on PostgreSQL (table `api_keys`, migration 0002)."""

from __future__ import annotations

from typing import Any

from inferpipe.store.keys import KEY_COLUMNS, ApiKey, key_from_row
from inferpipe.store.postgres.database import Conn, Database


class PostgresKeys:
    """API keys in the same database as the runs, through the store's pool."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, key: ApiKey) -> None:
        async def insert(c: Conn) -> None:
            await c.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                key.id,
                key.workspace,
                key.name,
                key.prefix,
                key.role.value,
                key.created_at_ms,
                key.hash,
                key.revoked_at_ms,
                key.rate_limit_per_min,
            )

        await self._db.transaction(insert)

    async def by_prefix(self, prefix: str) -> list[ApiKey]:
        return await self._select("WHERE prefix = $1", prefix)

    async def get(self, key_id: str) -> ApiKey | None:
        found = await self._select("WHERE id = $1", key_id)
        return found[0] if found else None

    async def list_keys(self, workspace: str | None = None) -> list[ApiKey]:
        if workspace is None:
            return await self._select("ORDER BY created_at_ms, id")
        return await self._select("WHERE workspace = $1 ORDER BY created_at_ms, id", workspace)

    async def revoke(self, key_id: str, now_ms: int) -> bool:
        async def revoke(c: Conn) -> bool:
            found = await c.fetchval("SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE", key_id)
            if found is None:
                return False
            await c.execute(
                "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
                now_ms,
                key_id,
            )
            return True

        return await self._db.transaction(revoke)

    async def workspaces(self) -> list[str]:
        async def select(c: Conn) -> list[str]:
            rows = await c.fetch("SELECT DISTINCT workspace FROM api_keys ORDER BY workspace")
            return [str(r[0]) for r in rows]

        return await self._db.read(select)

    async def _select(self, clause: str, *params: Any) -> list[ApiKey]:
        async def select(c: Conn) -> list[ApiKey]:
            rows = await c.fetch(f"SELECT {KEY_COLUMNS} FROM api_keys {clause}", *params)
            return [key_from_row(tuple(r)) for r in rows]

        return await self._db.read(select)
