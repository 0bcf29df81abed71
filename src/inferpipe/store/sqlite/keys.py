"""`KeyStore` on a SQLite file (table `api_keys`, migration 0002)."""

from __future__ import annotations

import sqlite3
from typing import Any

from inferpipe.store.keys import KEY_COLUMNS, ApiKey, key_from_row
from inferpipe.store.sqlite.database import Database


class SQLiteKeys:
    """API keys beside the runs, through the store's connection thread (so key writes take
    part in its group commits and need no second connection)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, key: ApiKey) -> None:
        await self._db.write(
            lambda c: c.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.workspace,
                    key.name,
                    key.prefix,
                    key.role.value,
                    key.created_at_ms,
                    key.hash,
                    key.revoked_at_ms,
                    key.rate_limit_per_min,
                ),
            )
        )

    async def by_prefix(self, prefix: str) -> list[ApiKey]:
        return await self._select("WHERE prefix = ?", (prefix,))

    async def get(self, key_id: str) -> ApiKey | None:
        found = await self._select("WHERE id = ?", (key_id,))
        return found[0] if found else None

    async def list_keys(self, workspace: str | None = None) -> list[ApiKey]:
        if workspace is None:
            return await self._select("ORDER BY created_at_ms, id", ())
        return await self._select("WHERE workspace = ? ORDER BY created_at_ms, id", (workspace,))

    async def revoke(self, key_id: str, now_ms: int) -> bool:
        def revoke(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is None:
                return False
            c.execute(
                "UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL",
                (now_ms, key_id),
            )
            return True

        return await self._db.write(revoke)

    async def workspaces(self) -> list[str]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT DISTINCT workspace FROM api_keys ORDER BY workspace"
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def _select(self, clause: str, params: tuple[Any, ...]) -> list[ApiKey]:
        sql = f"SELECT {KEY_COLUMNS} FROM api_keys {clause}"
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return [key_from_row(r) for r in rows]
