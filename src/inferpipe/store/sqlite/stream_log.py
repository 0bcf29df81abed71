"""``SQLiteStreamLog``: topic logs in a SQLite file (migration ``0006_streams``).

It runs on the store's own connection thread, like the API key table: an
append is one write job, so it joins the store's group commits and is on disk when ``publish``
returns; SQLite's write lock serializes appends from every process sharing the file.

SQLite cannot announce an append to another process, so a subscriber waiting for events
published elsewhere is served by polling topic heads every ``poll_interval_s`` (one query per
tick for all waiting subscribers of a process, only while some wait).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from inferpipe.store.sqlite.database import Database
from inferpipe.store.stream_log import (
    PURGE_BATCH,
    LogRetention,
    LogSlice,
    OnAppend,
    OnLost,
    Purged,
    StopWatch,
    age_floor_ms,
    count_floor,
    entry_from_row,
    topic_expired,
)

__all__ = ["DEFAULT_POLL_INTERVAL_S", "SQLiteStreamLog"]

#: Seconds between head checks while a subscriber waits for another process's events.
DEFAULT_POLL_INTERVAL_S = 0.05
#: Topics per ``IN (...)`` list when reading heads.
_HEADS_CHUNK = 500

_HEAD = "SELECT last_idx, last_ts_ms, final FROM stream_topics WHERE topic = ?"


class SQLiteStreamLog:
    """A :class:`~inferpipe.store.stream_log.StreamLog` in a SQLite file (``Store.stream_log``).

    Args:
        db: The store's database; its connection thread is shared.
        poll_interval_s: Seconds between head polls while a subscriber waits.
    """

    backend = "sqlite"

    def __init__(self, db: Database, *, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self._db = db
        self._poll_interval_s = poll_interval_s

    @property
    def poll_interval_s(self) -> float:
        """Seconds between head polls while a subscriber waits."""
        return self._poll_interval_s

    async def append(
        self, topic: str, data: bytes, *, final: bool, now_ms: int, retention: LogRetention
    ) -> tuple[int, int] | None:
        """Assign the next index and insert, in one transaction (see ``StreamLog.append``)."""
        return await self._db.write(lambda c: _append(c, topic, data, final, now_ms, retention))

    async def read(
        self, topic: str, after: int, limit: int | None, *, now_ms: int, retention: LogRetention
    ) -> LogSlice:
        """Retained events after ``after`` with the head, in one snapshot."""
        return await self._db.read(lambda c: _read(c, topic, after, limit, now_ms, retention))

    async def heads(
        self, topics: Sequence[str], *, now_ms: int, retention: LogRetention
    ) -> dict[str, int]:
        """The last index of each live topic among ``topics``."""
        return await self._db.read(lambda c: _heads(c, topics, now_ms, retention))

    async def clear(self, topic: str, *, now_ms: int, retention: LogRetention) -> None:
        """Delete the topic's events and final mark; keep its counter."""
        await self._db.write(lambda c: _clear(c, topic, now_ms, retention))

    async def purge(self, *, now_ms: int, retention: LogRetention) -> Purged:
        """Delete expired topics and aged events, a batch per transaction."""
        topics = events = 0
        while True:
            found = await self._db.write(lambda c: _purge_topics(c, now_ms, retention))
            topics, events = topics + found[0], events + found[1]
            if found[0] < PURGE_BATCH:
                break
        if retention.max_age_ms is not None:
            cutoff_ms = age_floor_ms(now_ms, retention)
            while True:
                deleted = await self._db.write(lambda c: _purge_aged(c, cutoff_ms))
                events += deleted
                if deleted < PURGE_BATCH:
                    break
        return Purged(topics, events)

    async def watch(self, on_append: OnAppend, on_lost: OnLost) -> StopWatch | None:
        """SQLite has no notifications: subscribers poll (see ``poll_interval_s``)."""
        return None


def _append(
    c: sqlite3.Connection, topic: str, data: bytes, final: bool, now_ms: int, r: LogRetention
) -> tuple[int, int] | None:
    head = c.execute(_HEAD, (topic,)).fetchone()
    if head is not None and topic_expired(head[1], bool(head[2]), now_ms, r):
        c.execute("DELETE FROM stream_events WHERE topic = ?", (topic,))
        head = None  # the topic starts over
    if head is not None and head[2]:
        return None
    index = 1 if head is None else head[0] + 1
    ts_ms = now_ms if head is None else max(now_ms, head[1])
    c.execute(
        "INSERT INTO stream_topics (topic, last_idx, last_ts_ms, final) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (topic) DO UPDATE SET last_idx = excluded.last_idx,"
        " last_ts_ms = excluded.last_ts_ms, final = excluded.final",
        (topic, index, ts_ms, int(final)),
    )
    c.execute(
        "INSERT INTO stream_events (topic, idx, data, ts_ms, final) VALUES (?, ?, ?, ?, ?)",
        (topic, index, data, ts_ms, int(final)),
    )
    floor = count_floor(index, r)
    if floor > 0:
        c.execute("DELETE FROM stream_events WHERE topic = ? AND idx <= ?", (topic, floor))
    return index, ts_ms


def _read(
    c: sqlite3.Connection, topic: str, after: int, limit: int | None, now_ms: int, r: LogRetention
) -> LogSlice:
    c.execute("BEGIN")  # one snapshot for the head and the events
    try:
        head = c.execute(_HEAD, (topic,)).fetchone()
        if head is None or topic_expired(head[1], bool(head[2]), now_ms, r):
            return LogSlice([], 0, False, 1)
        last, final = int(head[0]), bool(head[2])
        oldest_row = c.execute(
            "SELECT idx FROM stream_events WHERE topic = ? AND idx > ? AND ts_ms >= ?"
            " ORDER BY idx LIMIT 1",
            (topic, count_floor(last, r), age_floor_ms(now_ms, r)),
        ).fetchone()
        oldest = last + 1 if oldest_row is None else int(oldest_row[0])
        events = []
        if limit != 0:
            rows = c.execute(
                "SELECT idx, data, ts_ms, final FROM stream_events"
                " WHERE topic = ? AND idx > ? AND idx <= ? ORDER BY idx LIMIT ?",
                (topic, max(after, oldest - 1), last, -1 if limit is None else limit),
            ).fetchall()
            events = [entry_from_row(*row) for row in rows]
        return LogSlice(events, last, final, oldest)
    finally:
        c.execute("COMMIT")


def _heads(
    c: sqlite3.Connection, topics: Sequence[str], now_ms: int, r: LogRetention
) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(topics), _HEADS_CHUNK):
        chunk = list(topics[start : start + _HEADS_CHUNK])
        marks = ", ".join("?" * len(chunk))
        rows: list[Any] = c.execute(
            "SELECT topic, last_idx, last_ts_ms, final FROM stream_topics"
            f" WHERE topic IN ({marks})",
            chunk,
        ).fetchall()
        for topic, last, ts_ms, final in rows:
            if not topic_expired(ts_ms, bool(final), now_ms, r):
                found[topic] = int(last)
    return found


def _clear(c: sqlite3.Connection, topic: str, now_ms: int, r: LogRetention) -> None:
    head = c.execute(_HEAD, (topic,)).fetchone()
    c.execute("DELETE FROM stream_events WHERE topic = ?", (topic,))
    if head is None:
        return
    if topic_expired(head[1], bool(head[2]), now_ms, r):
        c.execute("DELETE FROM stream_topics WHERE topic = ?", (topic,))
        return
    c.execute(
        "UPDATE stream_topics SET final = 0, last_ts_ms = max(last_ts_ms, ?) WHERE topic = ?",
        (now_ms, topic),
    )


def _expired_clause(now_ms: int, r: LogRetention) -> tuple[str, list[int]]:
    """SQL selecting expired topics (by ``topic_expired``), or ``("", [])`` if none can be."""
    parts: list[str] = []
    params: list[int] = []
    if r.finished_ttl_ms is not None:
        parts.append("(final = 1 AND last_ts_ms <= ?)")
        params.append(now_ms - r.finished_ttl_ms)
    if r.idle_ttl_ms is not None:
        parts.append("(final = 0 AND last_ts_ms <= ?)")
        params.append(now_ms - r.idle_ttl_ms)
    return " OR ".join(parts), params


def _purge_topics(c: sqlite3.Connection, now_ms: int, r: LogRetention) -> tuple[int, int]:
    clause, params = _expired_clause(now_ms, r)
    if not clause:
        return 0, 0
    topics = [
        row[0]
        for row in c.execute(
            f"SELECT topic FROM stream_topics WHERE {clause} LIMIT ?", (*params, PURGE_BATCH)
        )
    ]
    events = 0
    for topic in topics:
        events += c.execute("DELETE FROM stream_events WHERE topic = ?", (topic,)).rowcount
        c.execute("DELETE FROM stream_topics WHERE topic = ?", (topic,))
    return len(topics), events


def _purge_aged(c: sqlite3.Connection, cutoff_ms: int) -> int:
    return c.execute(
        "DELETE FROM stream_events WHERE rowid IN"
        " (SELECT rowid FROM stream_events WHERE ts_ms < ? LIMIT ?)",
        (cutoff_ms, PURGE_BATCH),
    ).rowcount
