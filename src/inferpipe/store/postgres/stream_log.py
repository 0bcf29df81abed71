"""``PostgresStreamLog``: topic logs in a PostgreSQL database (migration ``0006``).

- An append is one statement on the store's pool, committing by itself: an upsert of the
  topic's head row assigns the index (its row lock, held until the commit, makes appends to a
  topic commit in index order), and the same statement inserts the event, trims by count and
  sends ``NOTIFY inferpipe_streams`` with ``'<index> <topic>'``, delivered when it commits.
- Each pubsub listens on the process's one LISTEN connection (``Notifications``); after a
  reconnection every subscriber re-reads the log (notifications sent meanwhile are lost), and a
  slow poll of waited-on topics' heads backs the notifications up.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferpipe.store.postgres.database import Conn, Database
from inferpipe.store.postgres.listener import Notifications
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

__all__ = ["CHANNEL", "DEFAULT_POLL_INTERVAL_S", "PostgresStreamLog"]

#: NOTIFY channel of stream appends; the payload is ``'<index> <topic>'``.
CHANNEL = "inferpipe_streams"
#: Seconds between head checks while a subscriber waits: a safety net behind NOTIFY.
DEFAULT_POLL_INTERVAL_S = 2.0

# $1 topic, $2 now_ms, $3 final, $4 finished_ttl_ms, $5 idle_ttl_ms (0: none). No row back
# means the topic has a final event. An expired topic starts over at index 1.
_EXPIRED = (
    "((t.final AND $4::bigint > 0 AND t.last_ts_ms <= $2::bigint - $4::bigint)"
    " OR (NOT t.final AND $5::bigint > 0 AND t.last_ts_ms <= $2::bigint - $5::bigint))"
)
_APPEND = f"""
WITH head AS (
    INSERT INTO stream_topics AS t (topic, last_idx, last_ts_ms, final) VALUES ($1, 1, $2, $3)
    ON CONFLICT (topic) DO UPDATE SET
        last_idx = CASE WHEN {_EXPIRED} THEN 1 ELSE t.last_idx + 1 END,
        last_ts_ms = CASE WHEN {_EXPIRED} THEN $2 ELSE GREATEST(t.last_ts_ms, $2) END,
        final = $3
    WHERE NOT t.final OR {_EXPIRED}
    RETURNING last_idx, last_ts_ms
), added AS (
    INSERT INTO stream_events (topic, idx, data, ts_ms, final)
    SELECT $1, last_idx, $6, last_ts_ms, $3 FROM head
    ON CONFLICT (topic, idx) DO UPDATE
        SET data = excluded.data, ts_ms = excluded.ts_ms, final = excluded.final
), restarted AS (
    DELETE FROM stream_events WHERE topic = $1 AND idx > 1
      AND EXISTS (SELECT 1 FROM head WHERE last_idx = 1)
), trimmed AS (
    DELETE FROM stream_events WHERE topic = $1 AND $7::bigint > 0
      AND idx <= (SELECT last_idx FROM head) - $7::bigint
)
SELECT last_idx, last_ts_ms, pg_notify($8, last_idx::text || ' ' || $1) FROM head
"""
"""One statement, so one round trip that commits by itself: the head's row lock is never held
while waiting for this process (a worker paused mid-append would otherwise block every other
publisher of the topic). $1 topic, $2 now_ms, $3 final, $4 finished_ttl_ms, $5 idle_ttl_ms
(0: none), $6 data, $7 max_events (0: none), $8 channel. No row back means the topic has a
final event. An expired topic starts over at index 1: its old event 1 is overwritten and the
others deleted (all sub-statements see the rows as they were before it)."""
_HEAD = "SELECT last_idx, last_ts_ms, final FROM stream_topics WHERE topic = $1"
# $1 now_ms, $2 finished_ttl_ms, $3 idle_ttl_ms (0: none), $4 batch size.
_PURGE_TOPICS = """
DELETE FROM stream_topics WHERE topic IN (
    SELECT topic FROM stream_topics t
    WHERE (t.final AND $2::bigint > 0 AND t.last_ts_ms <= $1::bigint - $2::bigint)
       OR (NOT t.final AND $3::bigint > 0 AND t.last_ts_ms <= $1::bigint - $3::bigint)
    LIMIT $4 FOR UPDATE SKIP LOCKED
) RETURNING topic
"""


class PostgresStreamLog:
    """A :class:`~inferpipe.store.stream_log.StreamLog` in PostgreSQL (``Store.stream_log``).

    Args:
        db: The store's pool, shared.
        notifications: The process's LISTEN connection to the database, shared.
        poll_interval_s: Seconds between head polls while a subscriber waits (a safety net).
    """

    backend = "postgres"

    def __init__(
        self,
        db: Database,
        notifications: Notifications,
        *,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self._db = db
        self._notifications = notifications
        self._poll_interval_s = poll_interval_s

    @property
    def poll_interval_s(self) -> float:
        """Seconds between head polls while a subscriber waits."""
        return self._poll_interval_s

    async def append(
        self, topic: str, data: bytes, *, final: bool, now_ms: int, retention: LogRetention
    ) -> tuple[int, int] | None:
        """Assign the next index and insert, in one statement (see ``StreamLog.append``)."""
        args = (
            topic,
            now_ms,
            final,
            retention.finished_ttl_ms or 0,
            retention.idle_ttl_ms or 0,
            data,
            retention.max_events or 0,
            CHANNEL,
        )

        async def append(c: Conn) -> tuple[int, int] | None:
            head = await c.fetchrow(_APPEND, *args)
            if head is None:
                return None
            return int(head[0]), int(head[1])

        return await self._db.read(append)

    async def read(
        self, topic: str, after: int, limit: int | None, *, now_ms: int, retention: LogRetention
    ) -> LogSlice:
        """Retained events after ``after`` with the head, in one snapshot."""

        async def read(c: Conn) -> LogSlice:
            await c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            head = await c.fetchrow(_HEAD, topic)
            if head is None or topic_expired(head[1], head[2], now_ms, retention):
                return LogSlice([], 0, False, 1)
            last, final = int(head[0]), bool(head[2])
            oldest = await c.fetchval(
                "SELECT idx FROM stream_events WHERE topic = $1 AND idx > $2 AND ts_ms >= $3"
                " ORDER BY idx LIMIT 1",
                topic,
                count_floor(last, retention),
                age_floor_ms(now_ms, retention),
            )
            oldest = last + 1 if oldest is None else int(oldest)
            if limit == 0:
                return LogSlice([], last, final, oldest)
            rows = await c.fetch(
                "SELECT idx, data, ts_ms, final FROM stream_events"
                " WHERE topic = $1 AND idx > $2 AND idx <= $3 ORDER BY idx LIMIT $4",
                topic,
                max(after, oldest - 1),
                last,
                limit,
            )
            return LogSlice([entry_from_row(*r) for r in rows], last, final, oldest)

        return await self._db.transaction(read)

    async def heads(
        self, topics: Sequence[str], *, now_ms: int, retention: LogRetention
    ) -> dict[str, int]:
        """The last index of each live topic among ``topics``."""

        async def heads(c: Conn) -> dict[str, int]:
            rows = await c.fetch(
                "SELECT topic, last_idx, last_ts_ms, final FROM stream_topics"
                " WHERE topic = ANY($1::text[])",
                list(topics),
            )
            return {
                r[0]: int(r[1]) for r in rows if not topic_expired(r[2], r[3], now_ms, retention)
            }

        return await self._db.read(heads)

    async def clear(self, topic: str, *, now_ms: int, retention: LogRetention) -> None:
        """Delete the topic's events and final mark; keep its counter."""

        async def clear(c: Conn) -> None:
            head = await c.fetchrow(_HEAD + " FOR UPDATE", topic)
            await c.execute("DELETE FROM stream_events WHERE topic = $1", topic)
            if head is None:
                return
            if topic_expired(head[1], head[2], now_ms, retention):
                await c.execute("DELETE FROM stream_topics WHERE topic = $1", topic)
                return
            await c.execute(
                "UPDATE stream_topics SET final = FALSE,"
                " last_ts_ms = GREATEST(last_ts_ms, $2) WHERE topic = $1",
                topic,
                now_ms,
            )

        await self._db.transaction(clear)

    async def purge(self, *, now_ms: int, retention: LogRetention) -> Purged:
        """Delete expired topics and aged events, a batch per transaction."""
        topics = events = 0
        finished_ttl = retention.finished_ttl_ms or 0
        idle_ttl = retention.idle_ttl_ms or 0
        while finished_ttl or idle_ttl:
            found = await self._db.transaction(
                lambda c: _purge_topics(c, now_ms, finished_ttl, idle_ttl)
            )
            topics, events = topics + found[0], events + found[1]
            if found[0] < PURGE_BATCH:
                break
        if retention.max_age_ms is not None:
            cutoff_ms = age_floor_ms(now_ms, retention)
            while True:
                deleted = await self._db.transaction(lambda c: _purge_aged(c, cutoff_ms))
                events += deleted
                if deleted < PURGE_BATCH:
                    break
        return Purged(topics, events)

    async def watch(self, on_append: OnAppend, on_lost: OnLost) -> StopWatch | None:
        """LISTEN for appends on the process's LISTEN connection."""

        def on_notify(payload: str) -> None:
            index, _, topic = payload.partition(" ")
            if index.isdigit() and topic:
                on_append(topic, int(index))

        return await self._notifications.subscribe(CHANNEL, on_notify, on_lost)


async def _purge_topics(c: Conn, now_ms: int, finished_ttl: int, idle_ttl: int) -> tuple[int, int]:
    # Row locks (SKIP LOCKED: a topic being appended to is not idle) keep a concurrent append
    # from restarting a topic whose events are being deleted.
    rows = await c.fetch(_PURGE_TOPICS, now_ms, finished_ttl, idle_ttl, PURGE_BATCH)
    topics = [r[0] for r in rows]
    if not topics:
        return 0, 0
    status = await c.execute("DELETE FROM stream_events WHERE topic = ANY($1::text[])", topics)
    return len(topics), _rowcount(status)


async def _purge_aged(c: Conn, cutoff_ms: int) -> int:
    status = await c.execute(
        "DELETE FROM stream_events WHERE (topic, idx) IN"
        " (SELECT topic, idx FROM stream_events WHERE ts_ms < $1 LIMIT $2)",
        cutoff_ms,
        PURGE_BATCH,
    )
    return _rowcount(status)


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``DELETE 12``."""
    return int(status.rsplit(" ", 1)[-1])
