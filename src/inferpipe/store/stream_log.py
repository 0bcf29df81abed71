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


def entry_from_row(idx: int, data: bytes, ts_ms: int, final: object) -> LogEntry:
    """An entry from a ``stream_events`` row."""
    return LogEntry(int(idx), bytes(data), int(ts_ms), bool(final))
