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

from typing import Protocol, Self

from inferpipe.streams import _codec
from inferpipe.streams._memory_log import MemoryStreamCache
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE, FeedGap
from inferpipe.streams.errors import MessagesLostError
from inferpipe.streams.front import StreamCache, StreamFront
from inferpipe.streams.pubsub import JSONValue, StreamEvent

__all__ = [
    "CachingPubSub",
    "LivePubSub",
    "LiveSubscription",
    "MemoryStreamCache",
    "StreamCache",
]

#: Default seconds without a live message after which a subscriber re-checks the cache.
DEFAULT_IDLE_CHECK_S = 5.0


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


class _Announcer:
    """A ``LivePubSub`` as the front's live transport: events travel as JSON messages."""

    def __init__(self, inner: LivePubSub) -> None:
        self._inner = inner

    async def open(self, topic: str) -> _LiveFeed:
        return _LiveFeed(topic, self._inner, await self._inner.subscribe(topic))

    async def announce(self, event: StreamEvent) -> None:
        await self._inner.publish(event.topic, _codec.event_to_message(event))

    async def close(self) -> None:
        await self._inner.close()


class CachingPubSub(StreamFront):
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
        super().__init__(cache, _Announcer(inner), page_size=page_size, idle_check_s=idle_check_s)
