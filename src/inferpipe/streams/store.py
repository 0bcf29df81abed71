"""``StorePubSub``: streams in the application's own database (SQLite or PostgreSQL).

A worker and an API server in separate processes share streams with no extra service, and a
topic's history survives the producer that crashed: it is rows in the same database as the runs.

- **Appends** are one transaction each (:class:`StreamLog`): the index is assigned and the event
  stored atomically, the topic trimmed to ``Retention.max_events``.
- **Live delivery**: subscribers in the publishing process are woken at once; other processes
  learn of appends by ``LISTEN/NOTIFY`` on PostgreSQL, and on SQLite by a short poll of the
  waited-on topics' heads (``poll_interval_s``, only while a subscriber waits).
- **Retention** by age and count, and topic expiry, are applied on every read (a cursor older
  than what is retained gets ``CursorExpiredError``, exactly as on the other backends); rows are
  deleted by the count trim of each append, by an opportunistic :meth:`StorePubSub.purge` every
  ``purge_interval_ms`` of publishing, and by any caller of ``purge``.

On SQLite every publish is a durable commit through the store's writer thread (group commit
batches concurrent publishes); on PostgreSQL, a transaction on the store's pool.

Usage::

    store = SQLiteStore("app.db")
    await store.open()                           # applies the streams migration
    pubsub = StorePubSub.for_store(store, Retention(max_events=5000))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Self, TypeVar

from inferpipe.core.errors import StoreError
from inferpipe.store.base import Store
from inferpipe.store.stream_log import LogEntry, LogSlice, Purged, StopWatch, StreamLog
from inferpipe.streams import _codec
from inferpipe.streams._store_feed import FeedHub, LogFeed
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE
from inferpipe.streams.errors import (
    CursorExpiredError,
    FutureCursorError,
    StreamUnavailableError,
    TopicFinishedError,
)
from inferpipe.streams.front import StreamFront
from inferpipe.streams.pubsub import (
    ClockMs,
    HistoryPage,
    JSONInput,
    Retention,
    StreamEvent,
    wall_clock_ms,
)

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "PURGE_INTERVAL_MS",
    "LogSlice",
    "Purged",
    "StorePubSub",
    "StreamLog",
]

_log = logging.getLogger("inferpipe.streams")
_T = TypeVar("_T")

#: Events buffered per subscriber from in-process publishes before it resumes from the log.
DEFAULT_MAX_QUEUE = 1000
#: How often (ms of publishing) a pubsub deletes what retention no longer keeps.
PURGE_INTERVAL_MS = 60_000


class _StoreLog:
    """A ``StreamCache`` on a :class:`StreamLog`: encoding, retention and cursor checks, and
    database failures translated at this one boundary."""

    def __init__(
        self,
        log: StreamLog,
        retention: Retention,
        clock_ms: ClockMs,
        max_payload_bytes: int,
        purge_interval_ms: int | None,
    ) -> None:
        self.log = log
        self.retention = retention
        self._clock_ms = clock_ms
        self._max_payload_bytes = max_payload_bytes
        self._purge_interval_ms = purge_interval_ms
        self._purged_at_ms: int | None = None
        self._purging: asyncio.Task[None] | None = None

    async def append(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        raw = _codec.encode_data(topic, data, self._max_payload_bytes)
        now_ms = self._clock_ms()
        appended = await self._call(
            self.log.append(topic, raw, final=final, now_ms=now_ms, retention=self.retention)
        )
        if appended is None:
            raise TopicFinishedError(topic)
        index, ts_ms = appended
        self._maybe_purge(now_ms)
        return StreamEvent(topic, index, _codec.decode_data(topic, raw), ts_ms, final)

    async def read(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        """Validates the cursor against the retained range."""
        found = await self._slice(topic, after or 0, limit)
        if after is not None:
            if after > found.last_index:
                raise FutureCursorError(topic, after, found.last_index)
            if after < found.oldest_index - 1:
                raise CursorExpiredError(topic, after, found.oldest_index)
        return HistoryPage(_events(topic, found.events), found.last_index, found.finished)

    async def read_after(self, topic: str, after: int, limit: int) -> list[StreamEvent]:
        """A stale feed's read: whatever is retained after ``after`` (gaps are the
        subscription's to detect), or ``FutureCursorError`` if the topic restarted below it."""
        found = await self._slice(topic, after, limit)
        if found.last_index < after:
            raise FutureCursorError(topic, after, found.last_index)
        return _events(topic, found.events)

    async def read_heads(self, topics: Sequence[str]) -> dict[str, int]:
        now_ms = self._clock_ms()
        return await self._call(self.log.heads(topics, now_ms=now_ms, retention=self.retention))

    async def clear(self, topic: str) -> None:
        now_ms = self._clock_ms()
        await self._call(self.log.clear(topic, now_ms=now_ms, retention=self.retention))

    async def purge(self) -> Purged:
        now_ms = self._clock_ms()
        return await self._call(self.log.purge(now_ms=now_ms, retention=self.retention))

    async def close(self) -> None:
        if self._purging is not None:
            with contextlib.suppress(Exception):
                await self._purging

    async def _slice(self, topic: str, after: int, limit: int | None) -> LogSlice:
        now_ms = self._clock_ms()
        return await self._call(
            self.log.read(topic, after, limit, now_ms=now_ms, retention=self.retention)
        )

    def _maybe_purge(self, now_ms: int) -> None:
        if self._purge_interval_ms is None or (self._purging and not self._purging.done()):
            return
        if self._purged_at_ms is None:
            self._purged_at_ms = now_ms  # the first publish starts the interval
        if now_ms - self._purged_at_ms < self._purge_interval_ms:
            return
        self._purged_at_ms = now_ms
        self._purging = asyncio.create_task(self._purge_quietly(now_ms))

    async def _purge_quietly(self, now_ms: int) -> None:
        try:
            purged = await self.log.purge(now_ms=now_ms, retention=self.retention)
        except Exception:
            _log.warning("could not purge expired stream events", exc_info=True)
            return
        if purged.topics or purged.events:
            _log.debug("purged %d topics and %d events", purged.topics, purged.events)

    async def _call(self, operation: Awaitable[_T]) -> _T:
        try:
            return await operation
        except StoreError as exc:
            raise StreamUnavailableError(self.log.backend, str(exc)) from exc


class _StoreLive:
    """The live transport of a ``StorePubSub`` (see ``_store_feed``): this process's events
    handed over, other processes' announced by the log's notifications or found by polling."""

    def __init__(
        self, log: _StoreLog, max_queue: int, page_size: int, poll_interval_s: float | None
    ) -> None:
        self._log = log
        self._max_queue = max_queue
        self._page_size = page_size
        self._hub = FeedHub(log.read_after, log.read_heads, poll_interval_s)
        self._watching: asyncio.Future[StopWatch | None] | None = None

    async def open(self, topic: str) -> LogFeed:
        # Notifications start once, before the first feed reads history.
        if self._watching is None:
            self._watching = asyncio.ensure_future(
                self._log.log.watch(self._hub.notice, self._hub.notice_all)
            )
        await asyncio.shield(self._watching)
        return self._hub.open(topic, self._max_queue, self._page_size)

    async def announce(self, event: StreamEvent) -> None:
        self._hub.publish(event)

    async def close(self) -> None:
        await self._hub.close()
        if self._watching is not None and not self._watching.cancelled():
            with contextlib.suppress(Exception):
                stop = await self._watching
                if stop is not None:
                    await stop()


class StorePubSub(StreamFront):
    """A :class:`~inferpipe.streams.pubsub.PubSub` on a :class:`StreamLog` (see module doc).

    Args:
        log: Where topics are stored; see :meth:`for_store`. Not closed by ``close()``: it
            borrows the store's connections, and the store outlives the pubsub.
        retention: History limits, applied on every read and trimmed by appends and purges.
        clock_ms: Wall clock in ms (inject a fake one in tests).
        max_queue: Events buffered per subscriber before it resumes from the log.
        max_payload_bytes: Largest accepted encoded event data.
        page_size: Events per log read while replaying or catching up.
        poll_interval_s: Override the log's polling interval (None: the log's default).
        purge_interval_ms: Minimum time between opportunistic purges (None: never).
    """

    def __init__(
        self,
        log: StreamLog,
        retention: Retention | None = None,
        *,
        clock_ms: ClockMs = wall_clock_ms,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_payload_bytes: int = _codec.DEFAULT_MAX_PAYLOAD_BYTES,
        page_size: int = DEFAULT_PAGE_SIZE,
        poll_interval_s: float | None = None,
        purge_interval_ms: int | None = PURGE_INTERVAL_MS,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        retention = retention if retention is not None else Retention()
        self._store_log = _StoreLog(log, retention, clock_ms, max_payload_bytes, purge_interval_ms)
        interval_s = poll_interval_s if poll_interval_s is not None else log.poll_interval_s
        live = _StoreLive(self._store_log, max_queue, page_size, interval_s)
        super().__init__(self._store_log, live, page_size=page_size)

    @classmethod
    def for_store(cls, store: Store, retention: Retention | None = None, **options: Any) -> Self:
        """A pubsub on ``store.stream_log``, sharing the store's connections.

        ``store`` is opened (which applies the streams migration) before the pubsub is first
        used.
        """
        return cls(store.stream_log, retention, **options)

    @property
    def retention(self) -> Retention:
        """The retention limits in force."""
        return self._store_log.retention

    async def purge(self) -> Purged:
        """Delete expired topics and events older than ``max_age_ms`` from the database.

        Runs by itself every ``purge_interval_ms`` while this pubsub publishes; call it from a
        maintenance job when producers are rare.
        """
        self._check_open()
        return await self._store_log.purge()


def _events(topic: str, entries: list[LogEntry]) -> list[StreamEvent]:
    return [
        StreamEvent(topic, e.index, _codec.decode_data(topic, e.data), e.ts_ms, e.final)
        for e in entries
    ]
