"""The embedded SQLite store."""

from inferpipe.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
