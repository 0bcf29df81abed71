"""`SecretTable` in a SQLite file (table `workspace_secrets`, migration 0008)."""

from __future__ import annotations

import sqlite3
from typing import Any

from inferpipe.store.secrets import SECRET_COLUMNS, SealedSecret, secret_from_row
from inferpipe.store.sqlite.database import Database


class SQLiteSecrets:
    """Sealed secrets beside the runs, through the store's own connection thread."""

    def __init__(self, db: Database, path: str) -> None:
        self._db = db
        self.database_file = path

    async def upsert(self, row: SealedSecret) -> SealedSecret:
        def upsert(c: sqlite3.Connection) -> SealedSecret:
            c.execute(
                f"INSERT INTO workspace_secrets ({SECRET_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (workspace, name) DO UPDATE SET ciphertext = excluded.ciphertext,"
                " updated_at_ms = excluded.updated_at_ms",
                (row.workspace, row.name, row.ciphertext, row.created_at_ms, row.updated_at_ms),
            )
            found = _select(c, "WHERE workspace = ? AND name = ?", (row.workspace, row.name))
            return found[0]

        return await self._db.write(upsert)

    async def fetch(self, workspace: str, name: str) -> SealedSecret | None:
        found = await self._db.read(
            lambda c: _select(c, "WHERE workspace = ? AND name = ?", (workspace, name))
        )
        return found[0] if found else None

    async def list_rows(self, workspace: str) -> list[SealedSecret]:
        return await self._db.read(
            lambda c: _select(c, "WHERE workspace = ? ORDER BY name", (workspace,))
        )

    async def delete(self, workspace: str, name: str) -> bool:
        def delete(c: sqlite3.Connection) -> bool:
            cursor = c.execute(
                "DELETE FROM workspace_secrets WHERE workspace = ? AND name = ?", (workspace, name)
            )
            return cursor.rowcount > 0

        return await self._db.write(delete)


def _select(c: sqlite3.Connection, clause: str, params: tuple[Any, ...]) -> list[SealedSecret]:
    rows = c.execute(f"SELECT {SECRET_COLUMNS} FROM workspace_secrets {clause}", params).fetchall()
    return [secret_from_row(r) for r in rows]
