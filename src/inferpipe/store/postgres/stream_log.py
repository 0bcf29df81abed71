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

from inferpipe.store import sql
from inferpipe.store.postgres.database import Database, Runner
from inferpipe.store.postgres.listener import Notifications
from inferpipe.store.stream_log import LogRetention, OnAppend, OnLost, SQLStreamLog, StopWatch

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


class PostgresStreamLog(SQLStreamLog):
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
        super().__init__(Runner(db), poll_interval_s=poll_interval_s)
        self._notifications = notifications

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
        head = await self._runner.read(sql.row, _APPEND, *args)  # no `?` to number
        return None if head is None else (int(head[0]), int(head[1]))

    async def watch(self, on_append: OnAppend, on_lost: OnLost) -> StopWatch | None:
        """LISTEN for appends on the process's LISTEN connection."""

        def on_notify(payload: str) -> None:
            index, _, topic = payload.partition(" ")
            if index.isdigit() and topic:
                on_append(topic, int(index))

        return await self._notifications.subscribe(CHANNEL, on_notify, on_lost)
