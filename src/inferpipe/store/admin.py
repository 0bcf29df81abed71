"""Database administration behind `inferpipe db migrate` and `inferpipe db status`.

Both work on SQLite and PostgreSQL URLs (or $INFERPIPE_DATABASE_URL, or the embedded default)::

    await admin.migrate("postgresql://inferpipe@db/inferpipe")
    {"dialect": "postgres", "version": 2, "applied_now": ["0001_initial.sql", ...], ...}
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from inferpipe.store import database_url, store_from_url
from inferpipe.store.migrations import migration_files


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL with its password hidden, for display."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def status(url: str | None = None) -> dict[str, Any]:
    """The schema version, the applied migrations and the pending ones; changes nothing.

    Returns:
        ``{"dialect", "url" (password hidden), "version", "applied": [{"version", "name",
        "applied_at_ms"}], "pending": [names]}``
    """
    url = database_url(url)
    if _is_postgres(url):
        from inferpipe.store.postgres import schema  # noqa: PLC0415 - needs asyncpg
        from inferpipe.store.postgres.database import Database  # noqa: PLC0415

        db = Database(url)
        await db.start()
        try:
            found = await schema.status(db)
        finally:
            await db.close()
    else:
        found = await asyncio.to_thread(_sqlite_status, _sqlite_path(url))
    return {**found, "url": redact_url(url)}


async def migrate(url: str | None = None) -> dict[str, Any]:
    """Apply pending migrations (safe while other processes start or migrate too).

    Returns:
        The status afterwards, with ``"applied_now"``: the migrations this call applied.
    """
    url = database_url(url)
    before = await status(url)
    store = store_from_url(url)
    await store.open()  # applies pending migrations (under an advisory lock on PostgreSQL)
    await store.close()
    after = await status(url)
    done_before = {m["name"] for m in before["applied"]}
    after["applied_now"] = [m["name"] for m in after["applied"] if m["name"] not in done_before]
    return after


def _sqlite_path(url: str) -> str:
    store = store_from_url(url)
    path: str = getattr(store, "path", ":memory:")
    return path


def _sqlite_status(path: str) -> dict[str, Any]:
    applied: list[tuple[int, str, int]] = []
    if path != ":memory:" and Path(path).exists():
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
            if exists:
                applied = conn.execute(
                    "SELECT version, name, applied_at_ms FROM schema_migrations ORDER BY version"
                ).fetchall()
        finally:
            conn.close()
    done = {row[0] for row in applied}
    return {
        "dialect": "sqlite",
        "version": max(done, default=0),
        "applied": [{"version": v, "name": n, "applied_at_ms": at} for v, n, at in applied],
        "pending": [name for v, name, _ in migration_files("sqlite") if v not in done],
    }
