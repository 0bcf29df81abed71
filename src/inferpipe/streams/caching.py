"""``CachingPubSub``: history and exact resumption added to any live-only transport.

A :class:`LivePubSub` only fans JSON messages out to current subscribers (in-process queues,
Redis PUB/SUB, PostgreSQL NOTIFY, ...). A :class:`StreamCache` assigns indices and keeps
history. ``CachingPubSub(live, cache)`` combines them into a full :class:`PubSub`: publish
appends to the cache first (the index is assigned atomically there), then announces the event
on the live transport; subscribers read history for anything the live path missed.

Usage::

    pubsub = CachingPubSub(MemoryLivePubSub(), MemoryStreamCache())               # one process
    pubsub = CachingPubSub(MemoryLivePubSub(), RedisStreamCache.from_url(url))    # shared history

Note that a live transport in one process only wakes subscribers in that process; for several
processes use a distributed live transport, or :class:`~inferpipe.streams.redis.RedisPubSub`.
"""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Protocol, Self

from inferpipe.streams import _codec
from inferpipe.streams._memory_log import MemoryStreamCache
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE, CursorSubscription, FeedGap
from inferpipe.streams.errors import MessagesLostError, PubSubClosedError
from inferpipe.streams.pubsub import (
    HistoryPage,
    JSONInput,
    JSONValue,
    StreamEvent,
    Subscription,
    check_cursor,
)

__all__ = [
    "CachingPubSub",
    "LivePubSub",
    "LiveSubscription",
    "MemoryStreamCache",
    "StreamCache",
]

#: Default seconds without a live message after which a subscriber re-checks the cache.
DEFAULT_IDLE_CHECK_S = 5.0


class StreamCache(Protocol):
    """Per-topic history with atomic index assignment (memory, Redis, ...)."""

    async def append(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Assign the next index and store the event, atomically; apply retention.

        Raises:
            TopicFinishedError: The topic already has a final event.
            InvalidPayloadError: ``data`` is not JSON or too large.
        """
        ...

    async def read(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        """Read retained events after ``after`` together with the topic's head.

        ``limit=0`` reads only the head. Raises ``CursorExpiredError`` / ``FutureCursorError``.
        """
        ...

    async def clear(self, topic: str) -> None:
        """Drop history and the final mark; keep the index counter (see ``PubSub``)."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


class LiveSubscription(Protocol):
    """Messages of one topic published after subscribing, in publish order.

    ``__anext__`` raises :class:`~inferpipe.streams.errors.MessagesLostError` when messages were
    dropped, and ``StopAsyncIteration`` once closed.
    """

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> JSONValue: ...

    async def close(self) -> None: ...


class LivePubSub(Protocol):
    """A live-only transport: fan-out of JSON messages per topic, no history, no indices."""

    async def publish(self, topic: str, message: JSONValue) -> None:
        """Deliver ``message`` to the topic's current subscribers."""
        ...

    async def subscribe(self, topic: str) -> LiveSubscription:
        """Subscribe to messages published after this call returns."""
        ...

    async def close(self) -> None:
        """End every subscription and release resources."""
        ...


class _LiveFeed:
    """Adapts a ``LiveSubscription`` to the feed a ``CursorSubscription`` reads."""

    def __init__(self, topic: str, live: LivePubSub, subscription: LiveSubscription) -> None:
        self._topic = topic
        self._live = live
        self._subscription = subscription
        self._closed = False

    async def receive(self, after: int) -> list[StreamEvent]:
        try:
            message = await anext(self._subscription)
        except StopAsyncIteration:
            return []
        except MessagesLostError as exc:
            await self._subscription.close()
            if self._closed:
                return []
            # Re-subscribe *before* the caller reads the gap from the cache, so nothing
            # published in between can be missed.
            self._subscription = await self._live.subscribe(self._topic)
            raise FeedGap from exc
        return [_codec.message_to_event(self._topic, message)]

    async def close(self) -> None:
        self._closed = True
        await self._subscription.close()


class CachingPubSub:
    """A :class:`~inferpipe.streams.pubsub.PubSub` made of a live transport and a cache.

    Args:
        inner: The live-only transport; owned (closed by ``close()``).
        cache: Where indices are assigned and history is kept; owned.
        page_size: Events per cache read when replaying or catching up.
        idle_check_s: A subscriber that hears nothing live for this long re-reads the cache, so
            a message lost by the transport without notice delays delivery instead of hanging
            it. ``None`` disables the check.
    """

    def __init__(
        self,
        inner: LivePubSub,
        cache: StreamCache,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        idle_check_s: float | None = DEFAULT_IDLE_CHECK_S,
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._page_size = page_size
        self._idle_check_s = idle_check_s
        self._subscriptions: weakref.WeakSet[CursorSubscription] = weakref.WeakSet()
        self._closed = False

    async def publish(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Append to the cache, then announce on the live transport (see ``PubSub.publish``)."""
        self._check_open()
        event = await self._cache.append(_codec.check_topic(topic), data, final=final)
        await self._inner.publish(topic, _codec.event_to_message(event))
        return event

    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe to live events (see ``PubSub.subscribe``)."""
        feed = await self._open_feed(topic)
        subscription = await CursorSubscription.open_live(
            topic, feed, self._read, page_size=self._page_size, idle_check_s=self._idle_check_s
        )
        self._subscriptions.add(subscription)
        return subscription

    async def subscribe_with_replay(self, topic: str, after: int | None = None) -> Subscription:
        """History after ``after``, then live (see ``PubSub.subscribe_with_replay``)."""
        check_cursor(after)
        feed = await self._open_feed(topic)
        subscription = await CursorSubscription.open_replay(
            topic,
            feed,
            self._read,
            after,
            page_size=self._page_size,
            idle_check_s=self._idle_check_s,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def get_history(
        self, topic: str, after: int | None = None, limit: int | None = None
    ) -> list[StreamEvent]:
        """Retained events after ``after`` (see ``PubSub.get_history``)."""
        self._check_open()
        page = await self._cache.read(_codec.check_topic(topic), check_cursor(after), limit)
        return page.events

    async def clear_topic(self, topic: str) -> None:
        """Drop the topic's history (see ``PubSub.clear_topic``)."""
        self._check_open()
        await self._cache.clear(_codec.check_topic(topic))

    async def close(self) -> None:
        """End every subscription, then close the transport and the cache."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._inner.close()
        await self._cache.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _open_feed(self, topic: str) -> _LiveFeed:
        self._check_open()
        _codec.check_topic(topic)
        return _LiveFeed(topic, self._inner, await self._inner.subscribe(topic))

    async def _read(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        self._check_open()
        return await self._cache.read(topic, after, limit)

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("CachingPubSub")
