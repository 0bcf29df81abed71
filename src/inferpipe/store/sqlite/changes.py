"""Commits by other connections to a SQLite file (other processes), told to listeners.

SQLite has no notifications: while anyone listens, `PRAGMA data_version` on the store's own
connection is read every `CHECK_INTERVAL_S` (it changes when another connection commits). This
process's own changes are told by the engine's wake-ups, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable

from inferpipe.core.errors import StoreError
from inferpipe.store.sqlite.database import Database

CHECK_INTERVAL_S = 0.25
"""How soon a commit of another process is noticed (one pragma read, no table read)."""


class Changes:
    """One watcher per database file and process, shared by its workspace views."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    async def subscribe(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call `callback` after other connections commit; returns the async unsubscribe."""
        async with self._starting:  # subscribers arriving together start one watcher
            if self._task is None:
                # Read before answering: a commit after this call must count as a change.
                seen = await self._db.read(_data_version)
                self._task = asyncio.create_task(self._watch(seen), name="inferpipe-sqlite-changes")
            self._listeners.append(callback)

        async def unsubscribe() -> None:
            self._listeners.remove(callback)
            if not self._listeners and self._task is not None:
                task, self._task = self._task, None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return unsubscribe

    async def _watch(self, seen: int) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                version = await self._db.read(_data_version)
            except StoreError:
                continue  # closed or failing: the listeners' own reads will say so
            if version != seen:
                for listener in list(self._listeners):
                    listener()
            seen = version


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
