"""Versioned migrations, applied under an advisory lock so processes starting together are safe."""

from __future__ import annotations

import time
from typing import Any

from asyncpg import exceptions as pgexc

from inferpipe.core.errors import MigrationError
from inferpipe.store.migrations import migration_files
from inferpipe.store.postgres.database import Conn, Database

MIGRATION_LOCK = 0x696E_6670_6D69_6772
"""The advisory lock every process takes while it migrates ("infpmigr")."""

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
)


async def _applied(conn: Conn) -> list[tuple[int, str, int]]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    rows = await conn.fetch(
        "SELECT version, name, applied_at_ms FROM schema_migrations ORDER BY version"
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def _migrate(conn: Conn) -> list[str]:
    # A session lock (not a transaction one): each migration commits on its own, and a
    # process that starts while another migrates waits here, then finds nothing left to do.
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(_CREATE_TABLE)
        done = {version for version, _, _ in await _applied(conn)}
        applied: list[str] = []
        for version, name, sql in migration_files("postgres"):
            if version in done:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at_ms)"
                        " VALUES ($1, $2, $3)",
                        version,
                        name,
                        int(time.time() * 1000),
                    )
            except pgexc.PostgresSyntaxError as exc:
                raise MigrationError(f"migration {name} failed: {exc}") from exc
            except pgexc.PostgresError as exc:
                if isinstance(exc, pgexc.PostgresConnectionError):
                    raise
                raise MigrationError(f"migration {name} failed: {exc}") from exc
            applied.append(name)
        return applied
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def migrate(db: Database) -> list[str]:
    """Apply pending migrations; returns the names of those applied now."""
    return await db.read(_migrate)


async def status(db: Database) -> dict[str, Any]:
    """The applied and pending migrations."""
    applied = await db.read(_applied)
    done = {version for version, _, _ in applied}
    pending = [name for version, name, _ in migration_files("postgres") if version not in done]
    return {
        "dialect": "postgres",
        "version": max(done, default=0),
        "applied": [{"version": v, "name": n, "applied_at_ms": at} for v, n, at in applied],
        "pending": pending,
    }
