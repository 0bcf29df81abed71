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
from typing import Generic, Self, TypeVar

from inferpipe.streams import _codec
from inferpipe.streams._memory_log import DEFAULT_MAX_TOPICS, MemoryStreamCache
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE, FeedGap
from inferpipe.streams.errors import MessagesLostError, PubSubClosedError
from inferpipe.streams.front import StreamFront
from inferpipe.streams.pubsub import (
    ClockMs,
    JSONInput,
    JSONValue,
    Retention,
    StreamEvent,
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

    def __init__(self, max_items: int, members: weakref.WeakSet[_Mailbox[_T]]) -> None:
        self._max_items = max_items
        self._items: deque[_T] = deque()
        self._lost = False
        self._closed = False
        self._wakeup = asyncio.Event()
        self._members = members
        members.add(self)

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

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._wakeup.set()
        self._members.discard(self)


class _Hub(Generic[_T]):
    """The mailboxes of one process, by topic."""

    def __init__(self, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._max_queue = max_queue
        # Weak: a subscription dropped without close() stops costing fan-out once collected.
        self.boxes: dict[str, weakref.WeakSet[_Mailbox[_T]]] = {}

    def open(self, topic: str) -> _Mailbox[_T]:
        return _Mailbox(self._max_queue, self.boxes.setdefault(topic, weakref.WeakSet()))

    def put(self, topic: str, item: _T) -> None:
        boxes = self.boxes.get(topic)
        if boxes is None:
            return
        for box in boxes:
            box.put(item)
        if not boxes:
            del self.boxes[topic]

    def close(self) -> None:
        for boxes in self.boxes.values():
            for box in list(boxes):
                box.close()
        self.boxes.clear()


class _QueueFeed:
    """A ``MemoryPubSub`` subscriber's live feed."""

    def __init__(self, mailbox: _Mailbox[StreamEvent]) -> None:
        self._mailbox = mailbox

    async def receive(self, after: int) -> list[StreamEvent]:
        try:
            return await self._mailbox.take()
        except _Lost:
            raise FeedGap from None

    async def close(self) -> None:
        self._mailbox.close()


class _QueueLive:
    """The live transport of a ``MemoryPubSub``: the event itself, in each subscriber's queue."""

    def __init__(self, hub: _Hub[StreamEvent]) -> None:
        self._hub = hub

    async def open(self, topic: str) -> _QueueFeed:
        return _QueueFeed(self._hub.open(topic))

    async def announce(self, event: StreamEvent) -> None:
        self._hub.put(event.topic, event)

    async def close(self) -> None:
        self._hub.close()


class MemoryPubSub(StreamFront):
    """A :class:`~inferpipe.streams.pubsub.PubSub` in process memory, with history and replay.

    Publishing never suspends: the append and the fan-out are atomic for other coroutines.

    Args:
        retention: History limits; also bounds how far a lagging subscriber can fall behind.
        clock_ms: Wall clock in ms (inject a fake one in tests).
        max_queue: Undelivered events buffered per subscriber before it resumes from history.
        max_payload_bytes: Largest accepted encoded event data.
        page_size: Events per history read while replaying.
        max_topics: Most topics held (None: no limit); past it the oldest finished topic is
            dropped, else the longest idle, never one with subscribers.

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
        max_topics: int | None = DEFAULT_MAX_TOPICS,
    ) -> None:
        hub: _Hub[StreamEvent] = _Hub(max_queue)
        self._hub = hub
        self._feeds = hub.boxes
        self._memory_log = log = MemoryStreamCache(
            retention,
            clock_ms=clock_ms,
            max_payload_bytes=max_payload_bytes,
            keep_alive=lambda topic: bool(hub.boxes.get(topic)),
            max_topics=max_topics,
        )
        super().__init__(log, _QueueLive(hub), page_size=page_size)

    async def publish(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Append, then hand the event to the topic's subscribers, without suspending (see
        ``PubSub.publish``)."""
        self._check_open()
        event = self._memory_log.append_now(topic, data, final=final)
        self._hub.put(topic, event)
        return event


class _MemoryLiveSubscription:
    def __init__(self, topic: str, mailbox: _Mailbox[JSONValue]) -> None:
        self._topic = topic
        self._mailbox = mailbox
        self._ready: deque[JSONValue] = deque()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> JSONValue:
        if not self._ready:
            try:
                self._ready.extend(await self._mailbox.take())
            except _Lost:
                raise MessagesLostError(self._topic, "subscriber queue overflowed") from None
            if not self._ready:
                raise StopAsyncIteration
        return self._ready.popleft()

    async def close(self) -> None:
        self._ready.clear()
        self._mailbox.close()


class MemoryLivePubSub:
    """A live-only :class:`~inferpipe.streams.caching.LivePubSub` in process memory.

    Args:
        max_queue: Messages buffered per subscriber; on overflow the subscriber's next read
            raises ``MessagesLostError`` and delivery continues with newer messages.
    """

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self._hub: _Hub[JSONValue] = _Hub(max_queue)
        self._closed = False

    async def publish(self, topic: str, message: JSONValue) -> None:
        """Deliver ``message`` to the topic's current subscribers, without blocking."""
        self._check_open()
        self._hub.put(topic, message)

    async def subscribe(self, topic: str) -> _MemoryLiveSubscription:
        """Subscribe to messages published from now on."""
        self._check_open()
        return _MemoryLiveSubscription(topic, self._hub.open(topic))

    async def close(self) -> None:
        """End every subscription."""
        self._closed = True
        self._hub.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("MemoryLivePubSub")
