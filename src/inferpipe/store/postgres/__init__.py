"""The PostgreSQL store: many workers on many machines sharing one database."""

from __future__ import annotations

from inferpipe.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
