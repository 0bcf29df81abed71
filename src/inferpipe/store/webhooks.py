"""Webhook rows: the `webhook_records` and `webhook_receipts` tables of every store.

A record is one source, subscription or delivery of a workspace, its fields as JSON; what they
mean (schemes, filters, attempts) is the webhooks feature's (`inferpipe.webhooks`). Signing
secrets reach this table sealed only.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

RECORD_COLUMNS = "workspace, kind, id, parent, body, created_at_ms, updated_at_ms"
"""The `webhook_records` columns in the order `record_from_row` reads them."""


class RecordKind(enum.StrEnum):
    """What a webhook record is."""

    SOURCE = "source"  #: an incoming source, by name
    SUBSCRIPTION = "subscription"  #: an outgoing subscription, by id
    DELIVERY = "delivery"  #: one lifecycle event to one subscription, with its attempts


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    """A row of `webhook_records`. `parent`: a delivery's subscription id, else empty."""

    workspace: str
    kind: RecordKind
    id: str
    body: dict[str, Any]
    created_at_ms: int
    updated_at_ms: int
    parent: str = ""


Change = Callable[[dict[str, Any]], dict[str, Any]]
"""A record's new body from its current one (pure: it may run again on a retried write)."""


class WebhookTable(Protocol):
    """Storage of webhook records and receipts (`Store.webhooks`, for all workspaces)."""

    async def put(self, record: WebhookRecord) -> WebhookRecord:
        """Insert or replace; returns the row as stored (the first `created_at_ms` kept)."""

    async def get(
        self, workspace: str, kind: RecordKind, record_id: str
    ) -> WebhookRecord | None: ...

    async def update(
        self, workspace: str, kind: RecordKind, record_id: str, change: Change, now_ms: int
    ) -> WebhookRecord | None:
        """Replace a record's body by `change(body)` in one transaction (no lost update when
        two writers change it at once); None when there is no such record."""

    async def list_records(
        self,
        workspace: str,
        kind: RecordKind,
        *,
        parent: str | None = None,
        before_ms: int | None = None,
        limit: int = 1000,
    ) -> list[WebhookRecord]:
        """Newest first; only children of `parent` and created before `before_ms` when given."""

    async def delete(self, workspace: str, kind: RecordKind, record_id: str) -> bool:
        """False when there was no such record."""

    async def receipt(self, workspace: str, source: str, message_id: str) -> str | None:
        """The signed timestamp a source accepted `message_id` with, None when it did not."""

    async def put_receipt(
        self, workspace: str, source: str, message_id: str, signed_at: str, now_ms: int
    ) -> None:
        """Record an accepted message (the first signed timestamp is kept)."""

    async def purge(self, workspace: str, older_than_ms: int, receipts_before_ms: int) -> int:
        """Delete a workspace's deliveries last changed before `older_than_ms` and its
        receipts from before `receipts_before_ms`; returns how many rows. A receipt with no
        signed timestamp (a scheme that signs none, e.g. GitHub's) is kept: it alone tells a
        replay of that request from a new one, however old the request."""


def record_from_row(r: tuple[Any, ...], body: dict[str, Any]) -> WebhookRecord:
    """A `WebhookRecord` from a row selected as `RECORD_COLUMNS`, its body decoded."""
    return WebhookRecord(
        workspace=r[0],
        kind=RecordKind(r[1]),
        id=r[2],
        parent=r[3],
        body=body,
        created_at_ms=int(r[5]),
        updated_at_ms=int(r[6]),
    )
