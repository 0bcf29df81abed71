"""``StreamFront``: the one ``PubSub`` of every backend, over a log and a live transport.

A backend supplies two small parts and the front does the rest (validation, history, live
subscriptions with exact replay from an index, close semantics) the same way for all:

- a :class:`StreamCache` - the *log*: assigns indices atomically, keeps history under
  retention (process memory, a table of the store, a Redis stream);
- a :class:`Live` transport - wakes subscribers of new events (in-process queues, PostgreSQL
  NOTIFY through the store's shared LISTEN connection, ``XREAD BLOCK``, any ``LivePubSub``).

Publishing appends to the log first, then announces the event live. A subscription opens its
live feed before it reads history (``CursorSubscription``), so nothing falls between the two,
and reads any gap the feed leaves from the log: exactly once, in order, whatever the transport.
"""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Protocol, Self

from inferpipe.streams import _codec
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE, CursorSubscription, EventFeed
from inferpipe.streams.errors import PubSubClosedError
from inferpipe.streams.pubsub import (
    HistoryPage,
    JSONInput,
    StreamEvent,
    Subscription,
    check_cursor,
    check_limit,
)

__all__ = ["Live", "StreamCache", "StreamFront"]


class StreamCache(Protocol):
    """Per-topic history with atomic index assignment (memory, store, Redis, ...)."""

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


class Live(Protocol):
    """How a backend wakes subscribers: one feed per subscription, told of each append."""

    async def open(self, topic: str) -> EventFeed:
        """A feed of the events appended from now on (it may also return older ones)."""
        ...

    async def announce(self, event: StreamEvent) -> None:
        """``event`` was just appended by this process."""
        ...

    async def close(self) -> None:
        """End every feed and release resources."""
        ...


class StreamFront:
    """A :class:`~inferpipe.streams.pubsub.PubSub` made of a log and a live transport.

    Args:
        log: Where indices are assigned and history is kept; closed by ``close()``.
        live: How subscribers are woken; closed by ``close()``.
        page_size: Events per log read while replaying or catching up.
        idle_check_s: A subscriber that hears nothing live for this long re-reads the log (for
            transports that may lose a message without knowing it); None: never.
    """

    def __init__(
        self,
        log: StreamCache,
        live: Live,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        idle_check_s: float | None = None,
    ) -> None:
        self._log = log
        self._live = live
        self._page_size = page_size
        self._idle_check_s = idle_check_s
        # Weak: a subscription dropped without close() is not kept alive by the front.
        self._subscriptions: weakref.WeakSet[CursorSubscription] = weakref.WeakSet()
        self._closed = False

    async def publish(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Append to the log, then announce live (see ``PubSub.publish``)."""
        self._check_open()
        event = await self._log.append(_codec.check_topic(topic), data, final=final)
        await self._live.announce(event)
        return event

    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe to live events (see ``PubSub.subscribe``)."""
        return await self._subscribe(topic, None, replay=False)

    async def subscribe_with_replay(self, topic: str, after: int | None = None) -> Subscription:
        """History after ``after``, then live (see ``PubSub.subscribe_with_replay``)."""
        return await self._subscribe(topic, check_cursor(after), replay=True)

    async def get_history(
        self, topic: str, after: int | None = None, limit: int | None = None
    ) -> list[StreamEvent]:
        """Retained events after ``after`` (see ``PubSub.get_history``)."""
        self._check_open()
        _codec.check_topic(topic)
        page = await self._log.read(topic, check_cursor(after), check_limit(limit))
        return page.events

    async def clear_topic(self, topic: str) -> None:
        """Drop the topic's history and final mark, keep its counter (see ``PubSub``)."""
        self._check_open()
        await self._log.clear(_codec.check_topic(topic))

    async def close(self) -> None:
        """End every subscription, then close the live transport and the log."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._live.close()
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

    async def _subscribe(self, topic: str, after: int | None, *, replay: bool) -> Subscription:
        self._check_open()
        _codec.check_topic(topic)
        feed = await self._live.open(topic)
        if self._closed:  # closed while the transport was opening
            await feed.close()
            self._check_open()
        sub = CursorSubscription(
            topic, feed, self._read, page_size=self._page_size, idle_check_s=self._idle_check_s
        )
        await (sub.start_replay(after) if replay else sub.start_live())
        self._subscriptions.add(sub)
        return sub

    async def _read(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        self._check_open()
        return await self._log.read(topic, after, limit)

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError(type(self).__name__)
