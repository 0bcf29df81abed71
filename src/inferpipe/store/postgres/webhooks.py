"""`WebhookTable` on PostgreSQL (tables `webhook_records`, `webhook_receipts`, migration 0011)."""

from __future__ import annotations

from typing import Any

from inferpipe.core import json
from inferpipe.store.postgres.database import Conn, Database
from inferpipe.store.webhooks import (
    RECORD_COLUMNS,
    Change,
    RecordKind,
    WebhookRecord,
    record_from_row,
)


class PostgresWebhooks:
    """Webhook records in the same PostgreSQL database as the runs, through the store's pool."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, record: WebhookRecord) -> WebhookRecord:
        async def put(c: Conn) -> WebhookRecord:
            found = await c.fetchrow(
                f"INSERT INTO webhook_records ({RECORD_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (workspace, kind, id) DO UPDATE SET parent = excluded.parent,"
                " body = excluded.body, updated_at_ms = excluded.updated_at_ms"
                f" RETURNING {RECORD_COLUMNS}",
                record.workspace,
                record.kind.value,
                record.id,
                record.parent,
                json.dumps(record.body).decode(),
                record.created_at_ms,
                record.updated_at_ms,
            )
            assert found is not None  # RETURNING always yields the row
            return _record(tuple(found))

        return await self._db.transaction(put)

    async def get(self, workspace: str, kind: RecordKind, record_id: str) -> WebhookRecord | None:
        found = await self._select(
            "WHERE workspace = $1 AND kind = $2 AND id = $3", workspace, kind.value, record_id
        )
        return found[0] if found else None

    async def update(
        self, workspace: str, kind: RecordKind, record_id: str, change: Change, now_ms: int
    ) -> WebhookRecord | None:
        async def update(c: Conn) -> WebhookRecord | None:
            row = await c.fetchrow(
                f"SELECT {RECORD_COLUMNS} FROM webhook_records"
                " WHERE workspace = $1 AND kind = $2 AND id = $3 FOR UPDATE",
                workspace,
                kind.value,
                record_id,
            )
            if row is None:
                return None
            body = json.dumps(change(_record(tuple(row)).body)).decode()
            updated = await c.fetchrow(
                "UPDATE webhook_records SET body = $4, updated_at_ms = $5"
                " WHERE workspace = $1 AND kind = $2 AND id = $3"
                f" RETURNING {RECORD_COLUMNS}",
                workspace,
                kind.value,
                record_id,
                body,
                now_ms,
            )
            assert updated is not None  # the row is locked above
            return _record(tuple(updated))

        return await self._db.transaction(update)

    async def list_records(
        self,
        workspace: str,
        kind: RecordKind,
        *,
        parent: str | None = None,
        before_ms: int | None = None,
        limit: int = 1000,
    ) -> list[WebhookRecord]:
        where = ["workspace = $1", "kind = $2"]
        params: list[Any] = [workspace, kind.value]
        if parent is not None:
            params.append(parent)
            where.append(f"parent = ${len(params)}")
        if before_ms is not None:
            params.append(before_ms)
            where.append(f"created_at_ms < ${len(params)}")
        params.append(limit)
        clause = (
            f"WHERE {' AND '.join(where)} ORDER BY created_at_ms DESC, id DESC LIMIT ${len(params)}"
        )
        return await self._select(clause, *params)

    async def delete(self, workspace: str, kind: RecordKind, record_id: str) -> bool:
        async def delete(c: Conn) -> bool:
            status = await c.execute(
                "DELETE FROM webhook_records WHERE workspace = $1 AND kind = $2 AND id = $3",
                workspace,
                kind.value,
                record_id,
            )
            return str(status) != "DELETE 0"

        return await self._db.transaction(delete)

    async def receipt(self, workspace: str, source: str, message_id: str) -> str | None:
        async def receipt(c: Conn) -> str | None:
            value = await c.fetchval(
                "SELECT signed_at FROM webhook_receipts"
                " WHERE workspace = $1 AND source = $2 AND message_id = $3",
                workspace,
                source,
                message_id,
            )
            return None if value is None else str(value)

        return await self._db.read(receipt)

    async def put_receipt(
        self, workspace: str, source: str, message_id: str, signed_at: str, now_ms: int
    ) -> None:
        async def put(c: Conn) -> None:
            await c.execute(
                "INSERT INTO webhook_receipts"
                " (workspace, source, message_id, signed_at, received_at_ms)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                workspace,
                source,
                message_id,
                signed_at,
                now_ms,
            )

        await self._db.transaction(put)

    async def purge(self, workspace: str, older_than_ms: int, receipts_before_ms: int) -> int:
        async def purge(c: Conn) -> int:
            deliveries = await c.execute(
                "DELETE FROM webhook_records WHERE workspace = $1 AND kind = $2"
                " AND updated_at_ms < $3",
                workspace,
                RecordKind.DELIVERY.value,
                older_than_ms,
            )
            receipts = await c.execute(
                "DELETE FROM webhook_receipts WHERE workspace = $1 AND received_at_ms < $2"
                " AND signed_at <> ''",
                workspace,
                receipts_before_ms,
            )
            return sum(int(str(s).rsplit(" ", 1)[-1]) for s in (deliveries, receipts))

        return await self._db.transaction(purge)

    async def _select(self, clause: str, *params: Any) -> list[WebhookRecord]:
        async def select(c: Conn) -> list[WebhookRecord]:
            rows = await c.fetch(f"SELECT {RECORD_COLUMNS} FROM webhook_records {clause}", *params)
            return [_record(tuple(r)) for r in rows]

        return await self._db.read(select)


def _record(r: tuple[Any, ...]) -> WebhookRecord:
    body = json.loads(r[4])
    return record_from_row(r, body if isinstance(body, dict) else {})
