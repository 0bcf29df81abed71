"""The public ``PubSub`` protocol: per-topic ordered events with history and exact resumption.

A *topic* is an ordered log of :class:`StreamEvent`. ``publish`` assigns each event the next index
of its topic (1, 2, 3, ...; strictly increasing, never reused while the topic is retained). A
consumer that remembers the last index it saw can come back with ``subscribe_with_replay(topic,
after=index)`` and receive exactly the events it missed and then the live ones: no gap, no
duplicate, in order. When that is impossible (the events were trimmed by retention) it gets a
:class:`~inferpipe.streams.errors.CursorExpiredError` instead of a silent gap.

A topic ends with a *final* event (``publish(..., final=True)``): every subscription stops after
delivering it, further publishes raise ``TopicFinishedError``, and the topic expires after
``Retention.finished_ttl_ms``.

Usage::

    pubsub = MemoryPubSub()
    await pubsub.publish("run/r1", {"token": "Hel"})
    async with await pubsub.subscribe_with_replay("run/r1", after=None) as sub:
        async for event in sub:             # history, then live, until the final event
            print(event.index, event.data)

Implementations: :class:`~inferpipe.streams.memory.MemoryPubSub` (one process),
:class:`~inferpipe.streams.redis.RedisPubSub` (Redis Streams) and
:class:`~inferpipe.streams.caching.CachingPubSub` (history added to any live-only transport).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, TypeAlias, runtime_checkable

from inferpipe.core.topics import JSONValue, StreamEvent
from inferpipe.streams.errors import InvalidCursorError

#: What ``publish`` accepts: any JSON-serializable value (read-only containers are fine).
JSONInput: TypeAlias = (
    "Mapping[str, JSONInput] | Sequence[JSONInput] | str | int | float | bool | None"
)
#: A source of wall-clock time in milliseconds since the epoch (injectable for tests).
ClockMs: TypeAlias = Callable[[], int]

_HOUR_MS = 3_600_000


def wall_clock_ms() -> int:
    """Return the current wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a topic's history is kept, so no backend grows without bound.

    ``None`` disables a limit. Events are dropped once older than ``max_age_ms`` or beyond the
    newest ``max_events``; a whole topic (history *and* index counter) is dropped
    ``finished_ttl_ms`` after its final event, or ``idle_ttl_ms`` after its last publish (a
    producer that crashed and never finished).
    """

    max_age_ms: int | None = 24 * _HOUR_MS
    max_events: int | None = 10_000
    finished_ttl_ms: int | None = _HOUR_MS
    idle_ttl_ms: int | None = 24 * _HOUR_MS

    def __post_init__(self) -> None:
        for name in ("max_age_ms", "max_events", "finished_ttl_ms", "idle_ttl_ms"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"Retention.{name} must be an int or None, got {value!r}")
            if value is not None and value < 1:
                raise ValueError(f"Retention.{name} must be >= 1 or None, got {value}")


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A slice of a topic's retained history, read atomically with the topic's head.

    Attributes:
        events: Retained events after the requested cursor, oldest first.
        last_index: The topic's last assigned index at read time (0 if none).
        finished: Whether the topic's final event has been published.
    """

    events: list[StreamEvent]
    last_index: int
    finished: bool


@runtime_checkable
class Subscription(Protocol):
    """An async iterator of :class:`StreamEvent` on one topic.

    Iteration stops after the topic's final event or after ``close()``. Always close it (or use
    it as an async context manager): closing unsubscribes.
    """

    @property
    def topic(self) -> str:
        """The subscribed topic."""
        ...

    @property
    def cursor(self) -> int | None:
        """Index of the last event delivered (or the start position), to resume from."""
        ...

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> StreamEvent: ...

    async def close(self) -> None:
        """Unsubscribe; pending and future ``__anext__`` calls stop the iteration."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class PubSub(Protocol):
    """Per-topic ordered events with history and exactly-once resumption.

    Failures are reported with :class:`~inferpipe.streams.errors.StreamError` subclasses; a
    ``limit`` that is not a non-negative int raises ``ValueError``.
    """

    async def publish(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Append ``data`` to ``topic`` and deliver it to live subscribers.

        Args:
            topic: Topic name (non-empty string).
            data: A JSON-serializable value.
            final: Mark this event as the topic's last one.

        Returns:
            The stored event, with its assigned index and timestamp.

        Raises:
            TopicFinishedError: The topic already ended.
            InvalidPayloadError: ``data`` is not JSON or is too large.
            StreamUnavailableError: The backend is unreachable.
        """
        ...

    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe to events published from now on (no history).

        On a finished topic the subscription ends at once.
        """
        ...

    async def get_history(
        self, topic: str, after: int | None = None, limit: int | None = None
    ) -> list[StreamEvent]:
        """Return retained events with index > ``after`` (all retained if None), oldest first.

        Raises:
            CursorExpiredError: Events right after ``after`` are no longer retained.
            FutureCursorError: ``after`` is greater than the topic's last index.
        """
        ...

    async def subscribe_with_replay(self, topic: str, after: int | None = None) -> Subscription:
        """Subscribe to history after ``after``, then live events, each exactly once, in order.

        Raises:
            CursorExpiredError: Events right after ``after`` are no longer retained.
            FutureCursorError: ``after`` is greater than the topic's last index.
        """
        ...

    async def clear_topic(self, topic: str) -> None:
        """Drop the topic's retained history and its final mark.

        The index counter is kept until the topic expires, so indices are never reused: a client
        holding an old cursor gets ``CursorExpiredError`` rather than a silently wrong stream.
        Live subscribers keep receiving new events; one that had not yet read the dropped
        events may get ``SubscriberOverflowError``.
        """
        ...

    async def close(self) -> None:
        """Release resources and end every open subscription."""
        ...


def parse_cursor(value: str | int | None) -> int | None:
    """Parse a client-supplied cursor (``?after=``, ``Last-Event-ID``) into an index.

    Returns ``None`` for a missing or empty value.

    Raises:
        InvalidCursorError: The value is not a non-negative integer.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidCursorError(value)
    if isinstance(value, int):
        if value < 0:
            raise InvalidCursorError(value)
        return value
    text = value.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise InvalidCursorError(value)
    return int(text)


def check_limit(value: int | None) -> int | None:
    """Validate a ``limit`` argument: None (no limit) or a non-negative int."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {value!r}")
    return value


def check_cursor(value: int | None) -> int | None:
    """Validate an ``after`` argument given by code (not parsed from text)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidCursorError(value)
    return value


__all__ = [
    "ClockMs",
    "HistoryPage",
    "JSONInput",
    "JSONValue",
    "PubSub",
    "Retention",
    "StreamEvent",
    "Subscription",
    "check_cursor",
    "check_limit",
    "parse_cursor",
    "wall_clock_ms",
]
