"""API key rows: the record every store keeps in its `api_keys` table, and the table's protocol.

Hashing, prefixes and policy are the server's (`inferpipe.server.keys`); a store only keeps rows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_RATE_LIMIT_PER_MIN = 1200
"""Requests per minute a new key may make unless told otherwise (None: unlimited)."""


class Role(enum.StrEnum):
    """What a key may do."""

    ADMIN = "admin"  #: read and write: send events, invoke, cancel, re-run
    READ = "read"  #: read only; mutations answer 403


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: str
    workspace: str
    name: str
    prefix: str
    role: Role
    created_at_ms: int
    hash: str = ""
    revoked_at_ms: int | None = None
    rate_limit_per_min: int | None = DEFAULT_RATE_LIMIT_PER_MIN

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None


KEY_COLUMNS = (
    "id, workspace, name, prefix, role, created_at_ms, hash, revoked_at_ms, rate_limit_per_min"
)
"""The `api_keys` columns in the order `key_from_row` reads them."""


def key_from_row(row: tuple[Any, ...]) -> ApiKey:
    """An `ApiKey` from a row selected as `KEY_COLUMNS`."""
    return ApiKey(
        id=row[0],
        workspace=row[1],
        name=row[2],
        prefix=row[3],
        role=Role(row[4]),
        created_at_ms=int(row[5]),
        hash=row[6],
        revoked_at_ms=None if row[7] is None else int(row[7]),
        rate_limit_per_min=row[8],
    )


class KeyStore(Protocol):
    """Storage of API keys (`Store.keys`, for all workspaces); no hashing and no policy."""

    async def insert(self, key: ApiKey) -> None: ...

    async def by_prefix(self, prefix: str) -> list[ApiKey]:
        """Keys whose prefix is exactly `prefix` (normally one)."""

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def list_keys(self, workspace: str | None = None) -> list[ApiKey]:
        """Keys, oldest first, of one workspace or of all."""

    async def revoke(self, key_id: str, now_ms: int) -> bool:
        """Mark a key revoked; False when there is no such key."""

    async def workspaces(self) -> list[str]:
        """Workspaces that have or had a key (revoked keys count: their runs still need a
        worker, and their data a retention policy)."""
