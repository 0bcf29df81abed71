"""Live delivery for ``StorePubSub``: in-process wake-ups, notifications and polling.

Each subscription's :class:`LogFeed` learns of new events three ways:

- an event published by this process is handed over at once (``FeedHub.publish``), without a
  database read;
- an append announced by another process (PostgreSQL NOTIFY) marks the feed *stale*: it reads
  the log after its position;
- where nothing announces other processes' appends (SQLite), one poller per hub reads the heads
  of the topics that subscribers are waiting on, every ``poll_interval_s``, and marks feeds
  whose topic moved. The poller runs only while some subscriber waits, and costs one query per
  tick however many subscribers there are.

Whatever a feed returns, ``CursorSubscription`` skips what it already has and reads any gap from
history, so these paths may overlap or race freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from inferpipe.streams._subscription import FeedGap
from inferpipe.streams.errors import StreamError
from inferpipe.streams.pubsub import StreamEvent

_log = logging.getLogger("inferpipe.streams")

#: Reads events with index > ``after`` (at most ``limit``) for a stale feed.
ReadAfter = Callable[[str, int, int], Awaitable[list[StreamEvent]]]
#: Reads the last index of each topic (absent: unknown or expired).
ReadHeads = Callable[[Sequence[str]], Awaitable[dict[str, int]]]


class LogFeed:
    """The live feed of one subscription (an ``EventFeed``)."""

    def __init__(self, hub: FeedHub, topic: str, max_queue: int, page_size: int) -> None:
        self.topic = topic
        self._hub = hub
        self._max_queue = max_queue
        self._page_size = page_size
        self._queue: deque[StreamEvent] = deque()
        self._wake = asyncio.Event()
        self._position = 0  # everything up to here was delivered (or is queued) upstream
        self._seen = 0  # the highest index this feed has handed over or read
        # Set when the log may hold events this feed was not handed. Not needed at first: the
        # feed opens (and the hub listens) before the subscription reads history.
        self._stale = False
        self._lost = False
        self._error: StreamError | None = None
        self._closed = False

    def push(self, event: StreamEvent) -> None:
        """An event published by this process: queue it, or note the overflow."""
        if self._closed:
            return
        if len(self._queue) >= self._max_queue:
            self._queue.clear()  # never block the publisher; the subscriber reads history
            self._lost = True
        else:
            self._queue.append(event)
            self._seen = max(self._seen, event.index)
        self._wake.set()

    def notice(self, last_index: int | None) -> None:
        """The topic's head is now ``last_index`` (None: unknown); read the log if it moved."""
        if last_index is None or last_index > self._seen or last_index < self._position:
            self._stale = True
            self._wake.set()

    def fail(self, error: StreamError) -> None:
        """End the pending and next ``receive`` with ``error``."""
        self._error = error
        self._wake.set()

    async def receive(self, after: int) -> list[StreamEvent]:
        """Events newer than ``after`` (possibly with older ones), ``[]`` once closed."""
        self._position = after
        self._seen = max(self._seen, after)
        while not self._closed:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._lost:
                self._lost = False
                raise FeedGap
            if self._queue:
                events = list(self._queue)
                self._queue.clear()
                return events
            if self._stale:
                self._stale = False
                events = await self._hub.read_after(self.topic, after, self._page_size)
                if events:
                    self._seen = max(self._seen, events[-1].index)
                    return events
                continue
            self._wake.clear()
            self._hub.waiting(self)
            try:
                await self._wake.wait()
            finally:
                self._hub.done_waiting(self)
        return []

    async def close(self) -> None:
        """Stop the feed and wake a pending ``receive``."""
        self._closed = True
        self._queue.clear()
        self._wake.set()
        self._hub.discard(self)


class FeedHub:
    """The feeds of one ``StorePubSub``, by topic, and the poller that serves them.

    Args:
        read_after: Reads a stale feed's new events.
        read_heads: Reads topic heads for the poller.
        poll_interval_s: Seconds between polls while a feed waits; None disables polling.
    """

    def __init__(
        self, read_after: ReadAfter, read_heads: ReadHeads, poll_interval_s: float | None
    ) -> None:
        self.read_after = read_after
        self._read_heads = read_heads
        self._poll_interval_s = poll_interval_s
        # Weak: a subscription dropped without close() stops costing fan-out once collected.
        self._feeds: dict[str, weakref.WeakSet[LogFeed]] = {}
        self._waiting: set[LogFeed] = set()
        self._poller: asyncio.Task[None] | None = None

    def open(self, topic: str, max_queue: int, page_size: int) -> LogFeed:
        """A new feed on ``topic``."""
        feed = LogFeed(self, topic, max_queue, page_size)
        self._feeds.setdefault(topic, weakref.WeakSet()).add(feed)
        return feed

    def discard(self, feed: LogFeed) -> None:
        self._waiting.discard(feed)
        feeds = self._feeds.get(feed.topic)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self._feeds[feed.topic]

    def publish(self, event: StreamEvent) -> None:
        """Hand an event published by this process to the topic's feeds."""
        for feed in list(self._feeds.get(event.topic, ())):
            feed.push(event)

    def notice(self, topic: str, last_index: int) -> None:
        """Another process (or this one) appended ``last_index`` to ``topic``."""
        for feed in list(self._feeds.get(topic, ())):
            feed.notice(last_index)

    def notice_all(self) -> None:
        """Appends may have gone unannounced: every feed re-reads the log."""
        for feeds in list(self._feeds.values()):
            for feed in list(feeds):
                feed.notice(None)

    def waiting(self, feed: LogFeed) -> None:
        self._waiting.add(feed)
        if self._poll_interval_s is not None and (self._poller is None or self._poller.done()):
            self._poller = asyncio.create_task(self._poll(self._poll_interval_s))

    def done_waiting(self, feed: LogFeed) -> None:
        self._waiting.discard(feed)

    async def close(self) -> None:
        """Close every feed and stop the poller."""
        for feeds in list(self._feeds.values()):
            for feed in list(feeds):
                await feed.close()
        self._feeds.clear()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _poll(self, interval_s: float) -> None:
        while self._waiting:
            await asyncio.sleep(interval_s)
            feeds = list(self._waiting)
            if not feeds:
                return
            try:
                heads = await self._read_heads(sorted({feed.topic for feed in feeds}))
            except Exception as exc:
                _log.warning("stream poll failed: %s", exc)
                error = exc if isinstance(exc, StreamError) else StreamError(f"poll failed: {exc}")
                for feed in feeds:
                    feed.fail(error)  # a subscriber must not wait forever on a broken database
                continue
            for feed in feeds:
                feed.notice(heads.get(feed.topic, 0))
