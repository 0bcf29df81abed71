"""``SQLiteStreamLog``: topic logs in a SQLite file (migration ``0006_streams``).

It runs on the store's own connection thread, like the API key table: an
append is one write job, so it joins the store's group commits and is on disk when ``publish``
returns; SQLite's write lock serializes appends from every process sharing the file.

SQLite cannot announce an append to another process, so a subscriber waiting for events
published elsewhere is served by polling topic heads every ``poll_interval_s`` (one query per
tick for all waiting subscribers of a process, only while some wait).
"""

from __future__ import annotations

from inferpipe.store import sql
from inferpipe.store.sqlite.database import Database, Runner
from inferpipe.store.stream_log import HEAD, LogRetention, SQLStreamLog, count_floor, topic_expired

__all__ = ["DEFAULT_POLL_INTERVAL_S", "SQLiteStreamLog"]

#: Seconds between head checks while a subscriber waits for another process's events.
DEFAULT_POLL_INTERVAL_S = 0.05


class SQLiteStreamLog(SQLStreamLog):
    """A :class:`~inferpipe.store.stream_log.StreamLog` in a SQLite file (``Store.stream_log``).

    Args:
        db: The store's database; its connection thread is shared.
        poll_interval_s: Seconds between head polls while a subscriber waits.
    """

    backend = "sqlite"

    def __init__(self, db: Database, *, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        super().__init__(Runner(db), poll_interval_s=poll_interval_s)

    async def append(
        self, topic: str, data: bytes, *, final: bool, now_ms: int, retention: LogRetention
    ) -> tuple[int, int] | None:
        """Assign the next index and insert, in one transaction (see ``StreamLog.append``)."""
        return await self._runner.write(_append, topic, data, final, now_ms, retention)


def _append(
    topic: str, data: bytes, final: bool, now_ms: int, r: LogRetention
) -> sql.Body[tuple[int, int] | None]:
    head = yield from sql.row(HEAD, topic)
    if head is not None and topic_expired(head[1], bool(head[2]), now_ms, r):
        yield from sql.count("DELETE FROM stream_events WHERE topic = ?", topic)
        head = None  # the topic starts over
    if head is not None and head[2]:
        return None
    index = 1 if head is None else head[0] + 1
    ts_ms = now_ms if head is None else max(now_ms, head[1])
    yield from sql.count(
        "INSERT INTO stream_topics (topic, last_idx, last_ts_ms, final) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (topic) DO UPDATE SET last_idx = excluded.last_idx,"
        " last_ts_ms = excluded.last_ts_ms, final = excluded.final",
        topic,
        index,
        ts_ms,
        final,
    )
    yield from sql.count(
        "INSERT INTO stream_events (topic, idx, data, ts_ms, final) VALUES (?, ?, ?, ?, ?)",
        topic,
        index,
        data,
        ts_ms,
        final,
    )
    floor = count_floor(index, r)
    if floor > 0:
        yield from sql.count("DELETE FROM stream_events WHERE topic = ? AND idx <= ?", topic, floor)
    return index, ts_ms
