"""`WebhookTable` in a SQLite file (tables `webhook_records`, `webhook_receipts`, migration 0011)."""

from __future__ import annotations

import sqlite3
from typing import Any

from inferpipe.core import json
from inferpipe.store.sqlite.database import Database
from inferpipe.store.webhooks import (
    RECORD_COLUMNS,
    Change,
    RecordKind,
    WebhookRecord,
    record_from_row,
)


class SQLiteWebhooks:
    """Webhook records beside the runs, through the store's own connection thread."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, record: WebhookRecord) -> WebhookRecord:
        def put(c: sqlite3.Connection) -> WebhookRecord:
            c.execute(
                f"INSERT INTO webhook_records ({RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (workspace, kind, id) DO UPDATE SET parent = excluded.parent,"
                " body = excluded.body, updated_at_ms = excluded.updated_at_ms",
                (
                    record.workspace,
                    record.kind.value,
                    record.id,
                    record.parent,
                    json.dumps(record.body).decode(),
                    record.created_at_ms,
                    record.updated_at_ms,
                ),
            )
            found = _one(c, record.workspace, record.kind, record.id)
            assert found is not None  # written just above, in this transaction
            return found

        return await self._db.write(put)

    async def get(self, workspace: str, kind: RecordKind, record_id: str) -> WebhookRecord | None:
        return await self._db.read(lambda c: _one(c, workspace, kind, record_id))

    async def update(
        self, workspace: str, kind: RecordKind, record_id: str, change: Change, now_ms: int
    ) -> WebhookRecord | None:
        def update(c: sqlite3.Connection) -> WebhookRecord | None:
            found = _one(c, workspace, kind, record_id)
            if found is None:
                return None
            c.execute(
                "UPDATE webhook_records SET body = ?, updated_at_ms = ?"
                " WHERE workspace = ? AND kind = ? AND id = ?",
                (json.dumps(change(found.body)).decode(), now_ms, workspace, kind.value, record_id),
            )
            return _one(c, workspace, kind, record_id)

        return await self._db.write(update)

    async def list_records(
        self,
        workspace: str,
        kind: RecordKind,
        *,
        parent: str | None = None,
        before_ms: int | None = None,
        limit: int = 1000,
    ) -> list[WebhookRecord]:
        where = ["workspace = ?", "kind = ?"]
        params: list[Any] = [workspace, kind.value]
        if parent is not None:
            where.append("parent = ?")
            params.append(parent)
        if before_ms is not None:
            where.append("created_at_ms < ?")
            params.append(before_ms)
        clause = f"WHERE {' AND '.join(where)} ORDER BY created_at_ms DESC, id DESC LIMIT ?"
        return await self._db.read(lambda c: _select(c, clause, (*params, limit)))

    async def delete(self, workspace: str, kind: RecordKind, record_id: str) -> bool:
        def delete(c: sqlite3.Connection) -> bool:
            cursor = c.execute(
                "DELETE FROM webhook_records WHERE workspace = ? AND kind = ? AND id = ?",
                (workspace, kind.value, record_id),
            )
            return cursor.rowcount > 0

        return await self._db.write(delete)

    async def receipt(self, workspace: str, source: str, message_id: str) -> str | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT signed_at FROM webhook_receipts"
                " WHERE workspace = ? AND source = ? AND message_id = ?",
                (workspace, source, message_id),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    async def put_receipt(
        self, workspace: str, source: str, message_id: str, signed_at: str, now_ms: int
    ) -> None:
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO webhook_receipts"
                " (workspace, source, message_id, signed_at, received_at_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (workspace, source, message_id, signed_at, now_ms),
            )
        )

    async def purge(self, workspace: str, older_than_ms: int, receipts_before_ms: int) -> int:
        def purge(c: sqlite3.Connection) -> int:
            deliveries = c.execute(
                "DELETE FROM webhook_records WHERE workspace = ? AND kind = ?"
                " AND updated_at_ms < ?",
                (workspace, RecordKind.DELIVERY.value, older_than_ms),
            ).rowcount
            receipts = c.execute(
                "DELETE FROM webhook_receipts WHERE workspace = ? AND received_at_ms < ?"
                " AND signed_at <> ''",
                (workspace, receipts_before_ms),
            ).rowcount
            return int(deliveries + receipts)

        return await self._db.write(purge)


def _one(
    c: sqlite3.Connection, workspace: str, kind: RecordKind, record_id: str
) -> WebhookRecord | None:
    found = _select(
        c, "WHERE workspace = ? AND kind = ? AND id = ?", (workspace, kind.value, record_id)
    )
    return found[0] if found else None


def _select(c: sqlite3.Connection, clause: str, params: tuple[Any, ...]) -> list[WebhookRecord]:
    rows = c.execute(f"SELECT {RECORD_COLUMNS} FROM webhook_records {clause}", params).fetchall()
    return [record_from_row(r, _body(r[4])) for r in rows]


def _body(raw: str) -> dict[str, Any]:
    body = json.loads(raw)
    return body if isinstance(body, dict) else {}
