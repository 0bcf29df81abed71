"""Workspace secret rows: the `workspace_secrets` table of every store, values only sealed.

Sealing is `inferpipe.store.sealing`'s; names and policy are the workflows'
(`inferpipe.workflows.secret_store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

SECRET_COLUMNS = "workspace, name, ciphertext, created_at_ms, updated_at_ms"
"""The `workspace_secrets` columns in the order `secret_from_row` reads them."""


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """A row of `workspace_secrets`: the value only as ciphertext."""

    workspace: str
    name: str
    ciphertext: str
    created_at_ms: int
    updated_at_ms: int


def secret_from_row(r: tuple[Any, ...]) -> SealedSecret:
    """A `SealedSecret` from a row selected as `SECRET_COLUMNS`."""
    return SealedSecret(r[0], r[1], r[2], int(r[3]), int(r[4]))


class SecretTable(Protocol):
    """Storage of sealed secrets (`Store.secrets`, for all workspaces); no encryption, no policy."""

    @property
    def database_file(self) -> str | None:
        """The SQLite file holding the rows (or ``":memory:"``), beside which a key file may
        be kept; None for a database server."""

    async def upsert(self, row: SealedSecret) -> SealedSecret:
        """Insert or replace; returns the row as stored (the first `created_at_ms` kept)."""

    async def fetch(self, workspace: str, name: str) -> SealedSecret | None: ...

    async def list_rows(self, workspace: str) -> list[SealedSecret]:
        """A workspace's rows, by name."""

    async def delete(self, workspace: str, name: str) -> bool:
        """False when there was no such secret."""
