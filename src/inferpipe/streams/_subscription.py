"""The one subscription algorithm every backend uses: history is the truth, live is a fast path.

A subscription keeps a *position* (the highest index it has accepted) and two sources:

- a live *feed* of new events, opened **before** history is read, so nothing published during
  the switch-over can fall between the two;
- a history reader, which returns retained events after a position.

Events at or below the position are duplicates and are skipped; an event above ``position + 1``
means the feed lost something (overflow, a dropped message, a trimmed stream), so the
subscription reads the gap from history. If history no longer covers it, the consumer gets
``SubscriberOverflowError`` - never a silent gap. This makes exactly-once, in-order delivery
independent of how each backend delivers live events.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self

from inferpipe.streams.errors import CursorExpiredError, StreamError, SubscriberOverflowError
from inferpipe.streams.pubsub import HistoryPage, StreamEvent

#: Reads ``(topic, after, limit)`` from history, validating the cursor.
HistoryReader = Callable[[str, int | None, int | None], Awaitable[HistoryPage]]

#: Events fetched per history read while catching up.
DEFAULT_PAGE_SIZE = 1000


class FeedGap(Exception):  # noqa: N818 - a signal between feed and subscription, not a failure
    """Raised by a feed that lost events; the subscription then catches up from history."""


class EventFeed(Protocol):
    """A live source of events for one topic."""

    async def receive(self, after: int) -> list[StreamEvent]:
        """Wait for events newer than ``after`` (older ones may be included and are skipped).

        Returns ``[]`` once the feed is closed. Raises ``FeedGap`` if events were lost and
        ``StreamError`` if the backend failed.
        """
        ...

    async def close(self) -> None:
        """Stop the feed and wake a pending ``receive``."""
        ...


class CursorSubscription:
    """Exactly-once, in-order subscription over a live feed and a history reader.

    Start it with :meth:`start_replay` or :meth:`start_live`; both read history eagerly so
    cursor errors are raised by the ``subscribe*`` call, not by the first iteration.
    """

    def __init__(
        self,
        topic: str,
        feed: EventFeed,
        history: HistoryReader,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        idle_check_s: float | None = None,
    ) -> None:
        self._topic = topic
        self._feed = feed
        self._history = history
        self._page_size = page_size
        # Re-read history after this long without live events, for feeds that may lose a
        # message without knowing it (a network transport): bounds the wait, never hangs.
        self._idle_check_s = idle_check_s
        self._pending: deque[StreamEvent] = deque()
        self._position = 0
        self._cursor: int | None = None
        self._catch_up = False
        self._done = False

    async def start_replay(self, after: int | None) -> None:
        """Begin with the history after ``after`` (all retained if None), then live events."""
        page = await self._first_read(after, self._page_size)
        self._cursor = after
        if after is not None:
            self._position = after
        elif page.events:
            self._position = page.events[0].index - 1
        else:
            self._position = page.last_index
        self._accept(page.events)  # retained history is contiguous
        self._catch_up = len(page.events) >= self._page_size
        if not page.events and page.finished:
            await self.close()  # the client already saw the final event

    async def start_live(self) -> None:
        """Begin with the events published after this call returns."""
        head = await self._first_read(None, 0)
        self._cursor = self._position = head.last_index
        if head.finished:
            await self.close()

    async def _first_read(self, after: int | None, limit: int) -> HistoryPage:
        try:
            return await self._history(self._topic, after, limit)
        except BaseException:
            await self._feed.close()
            raise

    @property
    def topic(self) -> str:
        """The subscribed topic."""
        return self._topic

    @property
    def cursor(self) -> int | None:
        """Index of the last event delivered (or the start position), to resume from."""
        return self._cursor

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        while True:
            if self._done:
                raise StopAsyncIteration
            if self._pending:
                return await self._deliver(self._pending.popleft())
            try:
                if self._catch_up:
                    await self._read_history()
                else:
                    await self._read_feed()
            except StreamError:
                await self.close()
                raise
            except Exception as exc:
                # A backend's own exception (a bug, an untranslated driver error): consumers
                # handle stream failures as StreamError only.
                await self.close()
                raise StreamError(
                    f"the stream of topic {self._topic!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            except BaseException:
                await self.close()
                raise

    async def _deliver(self, event: StreamEvent) -> StreamEvent:
        self._cursor = event.index
        if event.final:
            await self.close()
        return event

    async def _read_history(self) -> None:
        try:
            page = await self._history(self._topic, self._position, self._page_size)
        except CursorExpiredError as exc:
            raise SubscriberOverflowError(self._topic, self._position, exc.oldest_index) from exc
        self._accept(page.events)
        self._catch_up = len(page.events) >= self._page_size

    async def _read_feed(self) -> None:
        try:
            if self._idle_check_s is None:
                batch = await self._feed.receive(self._position)
            else:
                async with asyncio.timeout(self._idle_check_s):
                    batch = await self._feed.receive(self._position)
        except (FeedGap, TimeoutError):
            self._catch_up = True
            return
        if not batch:
            self._done = True  # the feed was closed
            return
        if not self._accept(batch):
            self._catch_up = True

    def _accept(self, events: list[StreamEvent]) -> bool:
        """Queue the events that extend the position; False if a gap was found."""
        for event in events:
            if event.index <= self._position:
                continue  # already delivered or queued: history and live overlap
            if event.index != self._position + 1:
                return False
            self._pending.append(event)
            self._position = event.index
            if event.final:
                break
        return True

    async def close(self) -> None:
        """Unsubscribe; pending and later ``__anext__`` calls stop the iteration."""
        self._pending.clear()
        if not self._done:
            self._done = True
            await self._feed.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
