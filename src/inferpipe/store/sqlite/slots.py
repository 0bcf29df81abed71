"""Concurrency slots: the running runs per concurrency key of a workspace."""

from __future__ import annotations

import sqlite3
from collections import Counter


def running_slots(conn: sqlite3.Connection, ws: str) -> tuple[Counter[str], set[str]]:
    """Running runs per concurrency (and singleton) key in a workspace, and the keys that are
    full."""
    counts: Counter[str] = Counter()
    limits: dict[str, int] = {}
    rows = conn.execute(
        "SELECT concurrency_key1, concurrency_limit1, concurrency_key2, concurrency_limit2,"
        " singleton_key FROM runs WHERE workspace = ? AND status = 'running'"
        " AND (concurrency_key1 IS NOT NULL OR singleton_key IS NOT NULL)",
        (ws,),
    ).fetchall()
    for row in rows:
        for key, limit in ((row[0], row[1]), (row[2], row[3]), (row[4], 1)):
            if key:
                counts[key] += 1
                limits[key] = max(limit, limits.get(key, 0))
    return counts, {k for k, n in counts.items() if n >= limits[k]}
