"""In-process streams: ``MemoryPubSub`` (full PubSub) and ``MemoryLivePubSub`` (live-only).

Both are for one process and one event loop. Publishing never blocks on subscribers: each
subscriber has a bounded queue. When it fills up (a consumer that stopped reading), the queue is
dropped and the subscriber is told it lost messages:

- a ``MemoryPubSub`` subscriber then resumes from history, transparently; only if retention has
  already trimmed the events it missed does it get ``SubscriberOverflowError``;
- a ``MemoryLivePubSub`` subscriber gets ``MessagesLostError`` (``CachingPubSub`` recovers from
  its cache).

Memory per subscriber is therefore bounded by ``max_queue`` events, and per topic by retention.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from types import TracebackType
from typing import Generic, Self, TypeVar

from inferpipe.streams import _codec
from inferpipe.streams._memory_log import MemoryStreamCache
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE, CursorSubscription, FeedGap
from inferpipe.streams.errors import MessagesLostError, PubSubClosedError
from inferpipe.streams.pubsub import (
    ClockMs,
    HistoryPage,
    JSONInput,
    JSONValue,
    Retention,
    StreamEvent,
    Subscription,
    check_cursor,
    check_limit,
    wall_clock_ms,
)

__all__ = ["DEFAULT_MAX_QUEUE", "MemoryLivePubSub", "MemoryPubSub"]

#: Default number of undelivered events a subscriber may hold before it is marked as lagging.
DEFAULT_MAX_QUEUE = 1000

_T = TypeVar("_T")


class _Lost(Exception):  # noqa: N818 - internal signal
    """The mailbox overflowed since the last take."""


class _Mailbox(Generic[_T]):
    """A bounded, non-blocking single-consumer queue that remembers overflowing."""

    def __init__(self, max_items: int) -> None:
        self._max_items = max_items
        self._items: deque[_T] = deque()
        self._lost = False
        self._closed = False
        self._wakeup = asyncio.Event()

    def put(self, item: _T) -> None:
        if self._closed:
            return
        if len(self._items) >= self._max_items:
            # Drop everything rather than block the publisher; the consumer is told.
            self._items.clear()
            self._lost = True
        else:
            self._items.append(item)
        self._wakeup.set()

    async def take(self) -> list[_T]:
        """Return queued items (``[]`` once closed); raise ``_Lost`` after an overflow."""
        while not self._items and not self._lost and not self._closed:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._closed:
            return []
        if self._lost:
            self._lost = False
            raise _Lost
        items = list(self._items)
        self._items.clear()
        return items

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._wakeup.set()


class _QueueFeed:
    """A ``MemoryPubSub`` subscriber's live feed."""

    def __init__(self, max_queue: int, members: weakref.WeakSet[_QueueFeed]) -> None:
        self.mailbox: _Mailbox[StreamEvent] = _Mailbox(max_queue)
        self._members = members
        members.add(self)

    async def receive(self, after: int) -> list[StreamEvent]:
        try:
            return await self.mailbox.take()
        except _Lost:
            raise FeedGap from None

    async def close(self) -> None:
        self.mailbox.close()
        self._members.discard(self)


class MemoryPubSub:
    """A :class:`~inferpipe.streams.pubsub.PubSub` in process memory, with history and replay.

    Args:
        retention: History limits; also bounds how far a lagging subscriber can fall behind.
        clock_ms: Wall clock in ms (inject a fake one in tests).
        max_queue: Undelivered events buffered per subscriber before it resumes from history.
        max_payload_bytes: Largest accepted encoded event data.
        page_size: Events per history read while replaying.

    Usage::

        pubsub = MemoryPubSub(Retention(max_events=1000))
        async with await pubsub.subscribe_with_replay("run/r1") as sub:
            async for event in sub:
                ...
    """

    def __init__(
        self,
        retention: Retention | None = None,
        *,
        clock_ms: ClockMs = wall_clock_ms,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_payload_bytes: int = _codec.DEFAULT_MAX_PAYLOAD_BYTES,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._log = MemoryStreamCache(
            retention,
            clock_ms=clock_ms,
            max_payload_bytes=max_payload_bytes,
            keep_alive=self._has_subscribers,
        )
        self._max_queue = max_queue
        self._page_size = page_size
        # Weak: a subscription dropped without close() stops costing fan-out once collected.
        self._feeds: dict[str, weakref.WeakSet[_QueueFeed]] = {}
        self._closed = False

    async def publish(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Append and fan out, without suspending (see ``PubSub.publish``)."""
        self._check_open()
        event = self._log.append_now(topic, data, final=final)
        feeds = self._feeds.get(topic)
        if feeds is not None:
            for feed in feeds:
                feed.mailbox.put(event)
            if not feeds:
                del self._feeds[topic]
        return event

    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe to live events (see ``PubSub.subscribe``)."""
        feed = self._open_feed(topic)
        return await CursorSubscription.open_live(
            topic, feed, self._read, page_size=self._page_size
        )

    async def subscribe_with_replay(self, topic: str, after: int | None = None) -> Subscription:
        """History after ``after``, then live (see ``PubSub.subscribe_with_replay``)."""
        check_cursor(after)
        feed = self._open_feed(topic)
        return await CursorSubscription.open_replay(
            topic, feed, self._read, after, page_size=self._page_size
        )

    async def get_history(
        self, topic: str, after: int | None = None, limit: int | None = None
    ) -> list[StreamEvent]:
        """Retained events after ``after`` (see ``PubSub.get_history``)."""
        self._check_open()
        _codec.check_topic(topic)
        return self._log.read_now(topic, check_cursor(after), check_limit(limit)).events

    async def clear_topic(self, topic: str) -> None:
        """Drop the topic's history (see ``PubSub.clear_topic``)."""
        self._check_open()
        await self._log.clear(_codec.check_topic(topic))

    async def close(self) -> None:
        """End every subscription and drop all topics."""
        if self._closed:
            return
        self._closed = True
        for feeds in self._feeds.values():
            for feed in list(feeds):
                feed.mailbox.close()
        self._feeds.clear()
        await self._log.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open_feed(self, topic: str) -> _QueueFeed:
        self._check_open()
        _codec.check_topic(topic)
        return _QueueFeed(self._max_queue, self._feeds.setdefault(topic, weakref.WeakSet()))

    async def _read(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        self._check_open()
        return self._log.read_now(topic, after, limit)

    def _has_subscribers(self, topic: str) -> bool:
        return bool(self._feeds.get(topic))

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("MemoryPubSub")


class _MemoryLiveSubscription:
    def __init__(
        self, topic: str, max_queue: int, members: weakref.WeakSet[_MemoryLiveSubscription]
    ) -> None:
        self._topic = topic
        self.mailbox: _Mailbox[JSONValue] = _Mailbox(max_queue)
        self._ready: deque[JSONValue] = deque()
        self._members = members
        members.add(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> JSONValue:
        if not self._ready:
            try:
                self._ready.extend(await self.mailbox.take())
            except _Lost:
                raise MessagesLostError(self._topic, "subscriber queue overflowed") from None
            if not self._ready:
                raise StopAsyncIteration
        return self._ready.popleft()

    async def close(self) -> None:
        self._ready.clear()
        self.mailbox.close()
        self._members.discard(self)


class MemoryLivePubSub:
    """A live-only :class:`~inferpipe.streams.caching.LivePubSub` in process memory.

    Args:
        max_queue: Messages buffered per subscriber; on overflow the subscriber's next read
            raises ``MessagesLostError`` and delivery continues with newer messages.
    """

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._max_queue = max_queue
        self._subscriptions: dict[str, weakref.WeakSet[_MemoryLiveSubscription]] = {}
        self._closed = False

    async def publish(self, topic: str, message: JSONValue) -> None:
        """Deliver ``message`` to the topic's current subscribers, without blocking."""
        self._check_open()
        subscriptions = self._subscriptions.get(topic)
        if subscriptions is None:
            return
        if not subscriptions:
            del self._subscriptions[topic]
            return
        for subscription in subscriptions:
            subscription.mailbox.put(message)

    async def subscribe(self, topic: str) -> _MemoryLiveSubscription:
        """Subscribe to messages published from now on."""
        self._check_open()
        members = self._subscriptions.setdefault(topic, weakref.WeakSet())
        return _MemoryLiveSubscription(topic, self._max_queue, members)

    async def close(self) -> None:
        """End every subscription."""
        self._closed = True
        for subscriptions in self._subscriptions.values():
            for subscription in list(subscriptions):
                subscription.mailbox.close()
        self._subscriptions.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("MemoryLivePubSub")
