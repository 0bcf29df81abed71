"""``MemoryStreamCache``: per-topic history in process memory, bounded by retention and by a
count of topics.

Topics are kept in two queues ordered by their last event, open ones and finished ones, so
expiry is found at the queues' heads: a sweep touches only what expires, however many topics
are held. Over ``max_topics``, the oldest finished topic goes first, then the longest idle.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict, deque
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

#: Topics held by default; past it the oldest finished (else the longest idle) is dropped.
DEFAULT_MAX_TOPICS = 10_000


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
        max_topics: Most topics held (None: no limit); a dropped topic is as an expired one.
    """

    def __init__(
        self,
        retention: Retention | None = None,
        *,
        clock_ms: ClockMs = wall_clock_ms,
        max_payload_bytes: int = _codec.DEFAULT_MAX_PAYLOAD_BYTES,
        keep_alive: Callable[[str], bool] | None = None,
        max_topics: int | None = DEFAULT_MAX_TOPICS,
    ) -> None:
        if max_topics is not None and max_topics < 1:
            raise ValueError(f"max_topics must be >= 1 or None, got {max_topics}")
        self._retention = retention if retention is not None else Retention()
        self._clock_ms = clock_ms
        self._max_payload_bytes = max_payload_bytes
        self._keep_alive = keep_alive
        self._max_topics = max_topics
        # Oldest last event first: the head of each queue is the next to expire.
        self._open: OrderedDict[str, _TopicLog] = OrderedDict()
        self._finished: OrderedDict[str, _TopicLog] = OrderedDict()
        self._next_due_ms: float = math.inf
        """No topic expires before this (a sweep before it would find nothing)."""
        self._closed = False

    @property
    def retention(self) -> Retention:
        """The retention limits in force."""
        return self._retention

    @property
    def topic_count(self) -> int:
        """Number of topics currently held (expired ones are counted until swept)."""
        return len(self._open) + len(self._finished)

    def append_now(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Synchronous :meth:`append`, for callers that must not suspend in between."""
        self._check_open()
        _codec.check_topic(topic)
        # Encode then decode: validates the payload exactly as Redis would, and stores a copy
        # the publisher can no longer mutate.
        stored = _codec.decode_data(topic, _codec.encode_data(topic, data, self._max_payload_bytes))
        now_ms = self._clock_ms()
        if now_ms >= self._next_due_ms:
            self._sweep(now_ms)
        log = self._live_log(topic, now_ms) or _TopicLog()
        if log.finished:
            raise TopicFinishedError(topic)
        # Timestamps never go backwards within a topic, so trimming by age can stop early.
        log.last_ts_ms = max(now_ms, log.last_ts_ms)
        log.last_index += 1
        log.finished = final
        event = StreamEvent(topic, log.last_index, stored, log.last_ts_ms, final)
        log.events.append(event)
        self._trim(log, now_ms)
        self._requeue(topic, log)
        if self._max_topics is not None and self.topic_count > self._max_topics:
            self._evict(topic)
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
            self._requeue(topic, log)

    async def close(self) -> None:
        """Drop everything; later calls raise ``PubSubClosedError``."""
        self._closed = True
        self._open.clear()
        self._finished.clear()

    def _trim(self, log: _TopicLog, now_ms: int) -> None:
        max_events, max_age_ms = self._retention.max_events, self._retention.max_age_ms
        if max_events is not None:
            while len(log.events) > max_events:
                log.events.popleft()
        if max_age_ms is not None:
            cutoff_ms = now_ms - max_age_ms
            while log.events and log.events[0].ts_ms < cutoff_ms:
                log.events.popleft()

    def _due(self, log: _TopicLog, now_ms: int) -> bool:
        return now_ms >= self._due_at(log)

    def _due_at(self, log: _TopicLog) -> float:
        ttl_ms = self._retention.finished_ttl_ms if log.finished else self._retention.idle_ttl_ms
        return math.inf if ttl_ms is None else log.last_ts_ms + ttl_ms

    def _alive(self, topic: str) -> bool:
        return self._keep_alive is not None and self._keep_alive(topic)

    def _expired(self, topic: str, log: _TopicLog, now_ms: int) -> bool:
        return self._due(log, now_ms) and not self._alive(topic)

    def _live_log(self, topic: str, now_ms: int) -> _TopicLog | None:
        log = self._open.get(topic) or self._finished.get(topic)
        # None expires before the next sweep is due (the queues' heads expire first).
        if log is not None and now_ms >= self._next_due_ms and self._expired(topic, log, now_ms):
            self._drop(topic)
            return None
        return log

    def _requeue(self, topic: str, log: _TopicLog) -> None:
        """Put ``topic`` at the tail of its queue: it has the newest last event."""
        queue = self._finished if log.finished else self._open
        if topic in queue:
            queue.move_to_end(topic)
        else:
            self._drop(topic)
            queue[topic] = log
        if len(queue) == 1:  # its head: the queue's first to expire
            self._next_due_ms = min(self._next_due_ms, self._due_at(log))

    def _drop(self, topic: str) -> None:
        if self._open.pop(topic, None) is None:
            self._finished.pop(topic, None)

    def _sweep(self, now_ms: int) -> None:
        """Drop the expired topics, found at the heads of the queues."""
        self._next_due_ms = math.inf
        for queue in (self._finished, self._open):
            for _ in range(len(queue)):
                topic, log = next(iter(queue.items()))
                if not self._due(log, now_ms):
                    break  # the head has not expired, so nothing behind it has
                if self._alive(topic):
                    queue.move_to_end(topic)  # kept for its subscribers: look again later
                else:
                    del queue[topic]
            if queue:
                head = next(iter(queue.values()))
                self._next_due_ms = min(self._next_due_ms, self._due_at(head))

    def _evict(self, keep: str) -> None:
        """Drop topics over ``max_topics``: the oldest finished, then the longest idle (never
        ``keep``, just appended to, nor a topic with subscribers)."""
        if self._max_topics is None or self.topic_count <= self._max_topics:
            return
        for queue in (self._finished, self._open):
            for _ in range(len(queue)):
                if self.topic_count <= self._max_topics:
                    return
                topic = next(iter(queue))
                if topic == keep or self._alive(topic):
                    queue.move_to_end(topic)
                else:
                    del queue[topic]

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("MemoryStreamCache")
