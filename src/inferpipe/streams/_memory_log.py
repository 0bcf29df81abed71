"""``MemoryStreamCache``: per-topic history in process memory, bounded by retention."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from inferpipe.streams import _codec
from inferpipe.streams.errors import (
    CursorExpiredError,
    FutureCursorError,
    PubSubClosedError,
    TopicFinishedError,
)
from inferpipe.streams.pubsub import (
    ClockMs,
    HistoryPage,
    JSONInput,
    Retention,
    StreamEvent,
    check_cursor,
    check_limit,
    wall_clock_ms,
)

#: How often (ms) an append sweeps every topic for expiry; reads expire topics lazily anyway.
SWEEP_INTERVAL_MS = 1000


@dataclass(slots=True)
class _TopicLog:
    events: deque[StreamEvent] = field(default_factory=deque)
    last_index: int = 0
    finished: bool = False
    last_ts_ms: int = 0

    @property
    def oldest_index(self) -> int:
        return self.events[0].index if self.events else self.last_index + 1


class MemoryStreamCache:
    """A :class:`~inferpipe.streams.caching.StreamCache` held in one process's memory.

    Not thread-safe: use it from one event loop. Every operation completes without suspending,
    so appends are atomic with respect to other coroutines.

    Args:
        retention: Limits on age, count and topic lifetime.
        clock_ms: Wall clock in ms (inject a fake one in tests).
        max_payload_bytes: Largest accepted encoded event data.
        keep_alive: Topics for which it returns True are never expired (a ``MemoryPubSub``
            keeps topics with live subscribers, whose cursors would break if indices restarted).
    """

    def __init__(
        self,
        retention: Retention | None = None,
        *,
        clock_ms: ClockMs = wall_clock_ms,
        max_payload_bytes: int = _codec.DEFAULT_MAX_PAYLOAD_BYTES,
        keep_alive: Callable[[str], bool] | None = None,
    ) -> None:
        self._retention = retention if retention is not None else Retention()
        self._clock_ms = clock_ms
        self._max_payload_bytes = max_payload_bytes
        self._keep_alive = keep_alive
        self._topics: dict[str, _TopicLog] = {}
        self._swept_at_ms = 0
        self._closed = False

    @property
    def retention(self) -> Retention:
        """The retention limits in force."""
        return self._retention

    @property
    def topic_count(self) -> int:
        """Number of topics currently held (expired ones are counted until swept)."""
        return len(self._topics)

    def append_now(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Synchronous :meth:`append`, for callers that must not suspend in between."""
        self._check_open()
        _codec.check_topic(topic)
        # Encode then decode: validates the payload exactly as Redis would, and stores a copy
        # the publisher can no longer mutate.
        stored = _codec.decode_data(topic, _codec.encode_data(topic, data, self._max_payload_bytes))
        now_ms = self._clock_ms()
        self._sweep(now_ms)
        log = self._live_log(topic, now_ms)
        if log is None:
            log = self._topics[topic] = _TopicLog()
        if log.finished:
            raise TopicFinishedError(topic)
        # Timestamps never go backwards within a topic, so trimming by age can stop early.
        log.last_ts_ms = max(now_ms, log.last_ts_ms)
        log.last_index += 1
        log.finished = final
        event = StreamEvent(topic, log.last_index, stored, log.last_ts_ms, final)
        log.events.append(event)
        self._trim(log, now_ms)
        return event

    async def append(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Assign the next index and store the event (see ``StreamCache.append``)."""
        return self.append_now(topic, data, final=final)

    def read_now(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        """Synchronous :meth:`read`."""
        self._check_open()
        check_cursor(after)
        check_limit(limit)
        now_ms = self._clock_ms()
        log = self._live_log(topic, now_ms)
        if log is None:
            log = _TopicLog()  # unknown or expired: empty, index 0
        else:
            self._trim(log, now_ms)
        oldest = log.oldest_index
        start = 0
        if after is not None:
            if after > log.last_index:
                raise FutureCursorError(topic, after, log.last_index)
            if after < oldest - 1:
                raise CursorExpiredError(topic, after, oldest)
            start = after + 1 - oldest  # retained events are contiguous
        stop = None if limit is None else start + limit
        events = list(itertools.islice(log.events, start, stop))
        return HistoryPage(events, log.last_index, log.finished)

    async def read(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        """Read history with the topic's head (see ``StreamCache.read``)."""
        return self.read_now(topic, after, limit)

    async def clear(self, topic: str) -> None:
        """Drop history and the final mark; keep the index counter."""
        self._check_open()
        now_ms = self._clock_ms()
        log = self._live_log(topic, now_ms)
        if log is not None:
            log.events.clear()
            log.finished = False
            log.last_ts_ms = max(now_ms, log.last_ts_ms)

    async def close(self) -> None:
        """Drop everything; later calls raise ``PubSubClosedError``."""
        self._closed = True
        self._topics.clear()

    def _trim(self, log: _TopicLog, now_ms: int) -> None:
        max_events, max_age_ms = self._retention.max_events, self._retention.max_age_ms
        if max_events is not None:
            while len(log.events) > max_events:
                log.events.popleft()
        if max_age_ms is not None:
            cutoff_ms = now_ms - max_age_ms
            while log.events and log.events[0].ts_ms < cutoff_ms:
                log.events.popleft()

    def _expired(self, topic: str, log: _TopicLog, now_ms: int) -> bool:
        ttl_ms = self._retention.finished_ttl_ms if log.finished else self._retention.idle_ttl_ms
        if ttl_ms is None or now_ms < log.last_ts_ms + ttl_ms:
            return False
        return self._keep_alive is None or not self._keep_alive(topic)

    def _live_log(self, topic: str, now_ms: int) -> _TopicLog | None:
        log = self._topics.get(topic)
        if log is not None and self._expired(topic, log, now_ms):
            del self._topics[topic]
            return None
        return log

    def _sweep(self, now_ms: int) -> None:
        if now_ms - self._swept_at_ms < SWEEP_INTERVAL_MS:
            return
        self._swept_at_ms = now_ms
        for topic, log in list(self._topics.items()):
            if self._expired(topic, log, now_ms):
                del self._topics[topic]

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("MemoryStreamCache")
