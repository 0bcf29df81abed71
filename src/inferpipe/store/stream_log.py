"""The ``StreamLog`` protocol: the stream topic tables of every store (``Store.stream_log``).

A log is two tables (see the ``0006_streams.sql`` migrations):

- ``stream_topics(topic, last_idx, last_ts_ms, final)`` - each topic's head: the index counter,
  the newest timestamp (kept non-decreasing, so trimming by age cuts a prefix) and the final mark;
- ``stream_events(topic, idx, data, ts_ms, final)`` - retained events, ``data`` as JSON bytes.

An append updates the head and inserts the event in one transaction: the head's row lock (or
SQLite's write lock) serializes appends per topic, so indices are assigned without gaps or
duplicates whichever process publishes, and index order is commit order.

The log implements storage only and keeps event data as bytes. Retention *policy*, cursor
validation and decoding live in ``inferpipe.streams.store.StorePubSub`` so every dialect behaves
identically; each call receives the policy and the time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from inferpipe.store import sql

#: Called with (topic, index) when another process (or this one) appended to a topic.
OnAppend = Callable[[str, int], None]
#: Called when notifications may have been missed (a LISTEN connection was re-established).
OnLost = Callable[[], None]
#: Stops a watch started by ``StreamLog.watch``.
StopWatch = Callable[[], Awaitable[None]]


class LogRetention(Protocol):
    """What a log needs of a stream retention policy (``inferpipe.streams.Retention``)."""

    @property
    def max_events(self) -> int | None: ...
    @property
    def max_age_ms(self) -> int | None: ...
    @property
    def finished_ttl_ms(self) -> int | None: ...
    @property
    def idle_ttl_ms(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A retained event as stored: its data as JSON bytes."""

    index: int
    data: bytes
    ts_ms: int
    final: bool


#: Rows deleted per statement by ``purge``, so other writers get the database in between.
PURGE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class LogSlice:
    """Retained events after a cursor, read in one snapshot with the topic's head.

    Attributes:
        events: Retained entries with index > the cursor, oldest first, none above ``last_index``.
        last_index: The topic's last assigned index (0 for an unknown or expired topic).
        finished: Whether the topic's final event was appended.
        oldest_index: The oldest retained index (``last_index + 1`` when nothing is retained).
    """

    events: list[LogEntry]
    last_index: int
    finished: bool
    oldest_index: int


@dataclass(frozen=True, slots=True)
class Purged:
    """What one ``purge`` removed."""

    topics: int
    events: int


class StreamLog(Protocol):
    """Topic logs in the application's database (SQLite, PostgreSQL).

    Implementations raise ``StoreError`` (from ``inferpipe.core.errors``) when the database
    fails; ``StorePubSub`` translates it.
    """

    @property
    def backend(self) -> str:
        """The database's name in error messages (``"sqlite"``, ``"postgres"``)."""
        ...

    @property
    def poll_interval_s(self) -> float | None:
        """How often a waiting subscriber checks topic heads, for appends by other processes
        that no notification announces (None: never)."""
        ...

    async def append(
        self, topic: str, data: bytes, *, final: bool, now_ms: int, retention: LogRetention
    ) -> tuple[int, int] | None:
        """Assign the next index and store the event, trimming by count, in one transaction.

        An expired topic (see ``topic_expired``) starts over at index 1.

        Returns:
            The event's index and timestamp (``now_ms``, or the topic's newest if later);
            None, storing nothing, when the topic already has its final event.
        """
        ...

    async def read(
        self, topic: str, after: int, limit: int | None, *, now_ms: int, retention: LogRetention
    ) -> LogSlice:
        """Read retained events with index > ``after`` (at most ``limit``; 0 reads only the
        head) in one snapshot. Does not validate ``after``."""
        ...

    async def heads(
        self, topics: Sequence[str], *, now_ms: int, retention: LogRetention
    ) -> dict[str, int]:
        """The last index of each known, unexpired topic among ``topics``."""
        ...

    async def clear(self, topic: str, *, now_ms: int, retention: LogRetention) -> None:
        """Delete the topic's events and final mark; keep its index counter."""
        ...

    async def purge(self, *, now_ms: int, retention: LogRetention) -> Purged:
        """Delete expired topics and events older than ``retention.max_age_ms``."""
        ...

    async def watch(self, on_append: OnAppend, on_lost: OnLost) -> StopWatch | None:
        """Start delivering appends made by any process (None: the log cannot notify)."""
        ...


def topic_expired(last_ts_ms: int, final: bool, now_ms: int, retention: LogRetention) -> bool:
    """Whether a topic is gone: ``finished_ttl_ms`` after its final event, else ``idle_ttl_ms``
    after its last append (a producer that crashed and never finished)."""
    ttl_ms = retention.finished_ttl_ms if final else retention.idle_ttl_ms
    return ttl_ms is not None and now_ms >= last_ts_ms + ttl_ms


def count_floor(last_index: int, retention: LogRetention) -> int:
    """Events at or below this index are beyond ``max_events``."""
    return 0 if retention.max_events is None else max(0, last_index - retention.max_events)


def age_floor_ms(now_ms: int, retention: LogRetention) -> int:
    """Events older than this (ts_ms below it) are beyond ``max_age_ms``."""
    return 0 if retention.max_age_ms is None else now_ms - retention.max_age_ms


HEAD = "SELECT last_idx, last_ts_ms, final FROM stream_topics WHERE topic = ?"
"""A topic's head row: its last index, newest timestamp and final mark."""
_HEADS_CHUNK = 500
"""Topics per ``IN (...)`` list when reading heads."""


class SQLStreamLog:
    """The dialect-independent part of a ``StreamLog`` in the store's database, run by the
    dialect's ``sql.Runner``; a dialect adds ``append`` (and ``watch`` if it can notify)."""

    backend: str

    def __init__(self, runner: sql.Runner, *, poll_interval_s: float) -> None:
        self._runner = runner
        self._poll_interval_s = poll_interval_s

    @property
    def poll_interval_s(self) -> float:
        """Seconds between head polls while a subscriber waits."""
        return self._poll_interval_s

    async def read(
        self, topic: str, after: int, limit: int | None, *, now_ms: int, retention: LogRetention
    ) -> LogSlice:
        """Retained events after ``after`` with the head, in one snapshot."""
        return await self._runner.snapshot(_read, topic, after, limit, now_ms, retention)

    async def heads(
        self, topics: Sequence[str], *, now_ms: int, retention: LogRetention
    ) -> dict[str, int]:
        """The last index of each live topic among ``topics``."""
        return await self._runner.read(_heads, topics, now_ms, retention)

    async def clear(self, topic: str, *, now_ms: int, retention: LogRetention) -> None:
        """Delete the topic's events and final mark; keep its counter."""
        await self._runner.write(_clear, topic, now_ms, retention)

    async def purge(self, *, now_ms: int, retention: LogRetention) -> Purged:
        """Delete expired topics and aged events, a batch per transaction."""
        topics = events = 0
        while True:
            found = await self._runner.write(_purge_topics, now_ms, retention)
            topics, events = topics + found[0], events + found[1]
            if found[0] < PURGE_BATCH:
                break
        if retention.max_age_ms is not None:
            while True:
                deleted = await self._runner.write(_purge_aged, age_floor_ms(now_ms, retention))
                events += deleted
                if deleted < PURGE_BATCH:
                    break
        return Purged(topics, events)

    async def watch(self, on_append: OnAppend, on_lost: OnLost) -> StopWatch | None:
        """No notifications: subscribers poll (see ``poll_interval_s``)."""
        return None


def _read(
    topic: str, after: int, limit: int | None, now_ms: int, r: LogRetention
) -> sql.Body[LogSlice]:
    head = yield from sql.row(HEAD, topic)
    if head is None or topic_expired(head[1], bool(head[2]), now_ms, r):
        return LogSlice([], 0, False, 1)
    last, final = int(head[0]), bool(head[2])
    oldest_row = yield from sql.row(
        "SELECT idx FROM stream_events WHERE topic = ? AND idx > ? AND ts_ms >= ?"
        " ORDER BY idx LIMIT 1",
        topic,
        count_floor(last, r),
        age_floor_ms(now_ms, r),
    )
    oldest = last + 1 if oldest_row is None else int(oldest_row[0])
    if limit == 0:
        return LogSlice([], last, final, oldest)
    query = (
        "SELECT idx, data, ts_ms, final FROM stream_events"
        " WHERE topic = ? AND idx > ? AND idx <= ? ORDER BY idx"
    )
    params: tuple[object, ...] = (topic, max(after, oldest - 1), last)
    if limit is not None:
        query, params = query + " LIMIT ?", (*params, limit)
    found = yield from sql.rows(query, *params)
    events = [LogEntry(int(i), bytes(data), int(ts), bool(f)) for i, data, ts, f in found]
    return LogSlice(events, last, final, oldest)


def _heads(topics: Sequence[str], now_ms: int, r: LogRetention) -> sql.Body[dict[str, int]]:
    heads: dict[str, int] = {}
    for start in range(0, len(topics), _HEADS_CHUNK):
        chunk = topics[start : start + _HEADS_CHUNK]
        found = yield from sql.rows(
            "SELECT topic, last_idx, last_ts_ms, final FROM stream_topics"
            f" WHERE topic IN ({sql.marks(chunk)})",
            *chunk,
        )
        for topic, last, ts_ms, final in found:
            if not topic_expired(ts_ms, bool(final), now_ms, r):
                heads[topic] = int(last)
    return heads


def _clear(topic: str, now_ms: int, r: LogRetention) -> sql.Body[None]:
    head = yield from sql.row(HEAD, topic, lock="FOR UPDATE")
    yield from sql.count("DELETE FROM stream_events WHERE topic = ?", topic)
    if head is None:
        return
    if topic_expired(head[1], bool(head[2]), now_ms, r):
        yield from sql.count("DELETE FROM stream_topics WHERE topic = ?", topic)
        return
    yield from sql.count(
        "UPDATE stream_topics SET final = ?, last_ts_ms = ? WHERE topic = ?",
        False,
        max(now_ms, int(head[1])),
        topic,
    )


def _purge_topics(now_ms: int, r: LogRetention) -> sql.Body[tuple[int, int]]:
    parts: list[str] = []
    params: list[object] = []
    if r.finished_ttl_ms is not None:
        parts.append("(final AND last_ts_ms <= ?)")
        params.append(now_ms - r.finished_ttl_ms)
    if r.idle_ttl_ms is not None:
        parts.append("(NOT final AND last_ts_ms <= ?)")
        params.append(now_ms - r.idle_ttl_ms)
    if not parts:
        return 0, 0
    # Row locks (SKIP LOCKED: a topic being appended to is not idle) keep a concurrent append
    # from restarting a topic whose events are being deleted.
    found = yield from sql.rows(
        f"SELECT topic FROM stream_topics WHERE {' OR '.join(parts)} LIMIT ?",
        *params,
        PURGE_BATCH,
        lock="FOR UPDATE SKIP LOCKED",
    )
    topics = [t for (t,) in found]
    if not topics:
        return 0, 0
    events = yield from sql.count(
        f"DELETE FROM stream_events WHERE topic IN ({sql.marks(topics)})", *topics
    )
    yield from sql.count(f"DELETE FROM stream_topics WHERE topic IN ({sql.marks(topics)})", *topics)
    return len(topics), events


def _purge_aged(cutoff_ms: int) -> sql.Body[int]:
    return sql.count(
        "DELETE FROM stream_events WHERE (topic, idx) IN"
        " (SELECT topic, idx FROM stream_events WHERE ts_ms < ? LIMIT ?)",
        cutoff_ms,
        PURGE_BATCH,
    )
