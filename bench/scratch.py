"""A throwaway database on a PostgreSQL server, for a bench run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def database_on(server: str, prefix: str) -> AsyncIterator[str]:
    """A fresh database on the server at `server` (a postgresql:// URL), dropped on the way
    out even with connections still open; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()
