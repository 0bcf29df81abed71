"""Concurrency slots: the running runs per concurrency key of a workspace."""

from __future__ import annotations

import sqlite3
from collections import Counter


class Slots:
    """Running runs per concurrency key in a workspace, and the keys that are full."""

    def __init__(self, conn: sqlite3.Connection, ws: str) -> None:
        self.running: Counter[str] = Counter()
        self.full: set[str] = set()
        rows = conn.execute(
            "SELECT concurrency_key1, concurrency_limit1, concurrency_key2, concurrency_limit2,"
            " singleton_key FROM runs WHERE workspace = ? AND status = 'running'"
            " AND (concurrency_key1 IS NOT NULL OR singleton_key IS NOT NULL)",
            (ws,),
        ).fetchall()
        limits: dict[str, int] = {}
        for row in rows:
            for key, limit in ((row[0], row[1]), (row[2], row[3]), (row[4], 1)):
                if key:
                    self.running[key] += 1
                    limits[key] = max(limit, limits.get(key, 0))
        self.full = {k for k, n in self.running.items() if n >= limits[k]}

    def blocking(self, keys: list[tuple[str, int]]) -> tuple[str, int] | None:
        """The first key with no free slot for a run holding `keys`."""
        for key, limit in keys:
            if self.running[key] >= limit:
                self.full.add(key)
                return key, limit
        return None

    def hold(self, keys: list[tuple[str, int]]) -> None:
        for key, limit in keys:
            self.running[key] += 1
            if self.running[key] >= limit:
                self.full.add(key)
