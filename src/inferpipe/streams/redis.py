"""Streams on Redis Streams: ``RedisPubSub`` and ``RedisStreamCache`` (redis-py asyncio).

- Publishing is one Lua script: the per-topic index comes from ``HINCRBY`` and becomes the entry
  id (``<index>-0``) of an ``XADD``, so assignment and append are atomic and ids strictly
  increase, whichever process publishes.
- Live delivery is ``XREAD BLOCK`` from the subscriber's cursor: Redis itself holds what a slow
  subscriber has not read yet, so nothing queues up in the client and publishers never wait.
- Retention is enforced in Redis: ``XADD MAXLEN`` (count), ``XTRIM MINID`` (age), and ``PEXPIRE``
  on both keys of a topic (``idle_ttl_ms`` after each publish, ``finished_ttl_ms`` after the
  final event), so a production Redis does not grow without bound.
- A Redis that goes away raises ``StreamUnavailableError`` on publishers and subscribers; blocking
  reads are shorter than the socket timeout, so nothing hangs.

Usage::

    pubsub = RedisPubSub.from_url("redis://localhost:6379/0", Retention(max_events=5000))
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from inferpipe.streams import _codec, _redis_scripts
from inferpipe.streams._redis_scripts import DEFAULT_KEY_PREFIX
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE, CursorSubscription
from inferpipe.streams.errors import (
    CursorExpiredError,
    FutureCursorError,
    PubSubClosedError,
    StreamError,
    StreamUnavailableError,
    TopicFinishedError,
)
from inferpipe.streams.pubsub import (
    ClockMs,
    HistoryPage,
    JSONInput,
    Retention,
    StreamEvent,
    Subscription,
    check_cursor,
    check_limit,
)

__all__ = ["DEFAULT_KEY_PREFIX", "RedisPubSub", "RedisStreamCache", "redis_client"]

#: Longest single XREAD BLOCK; between two, a subscriber checks its topic was not reset.
DEFAULT_BLOCK_MS = 2000
#: Connections per client built by :func:`redis_client`.
DEFAULT_MAX_CONNECTIONS = 256
#: Entries fetched per XREAD.
XREAD_COUNT = 512


def redis_client(
    url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS, socket_timeout_s: float = 10.0
) -> Redis:
    """Build a client tuned for streams.

    - bounded timeouts and a short reconnect budget: a dead server surfaces as
      ``StreamUnavailableError`` within about a second instead of after a long retry loop;
    - a *blocking* pool: a burst of publishes waits for a free connection instead of failing
      with "too many connections". Each waiting subscriber holds one connection for at most
      ``block_ms``, so size ``max_connections`` above the number of concurrent subscribers.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout_s,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=min(socket_timeout_s, 5.0),
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3),
    )
    return Redis.from_pool(pool)


@contextlib.contextmanager
def _redis_errors(topic: str) -> Iterator[None]:
    """Translate redis-py errors into stream errors, at this single boundary."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        raise StreamUnavailableError("redis", f"{type(exc).__name__}: {exc}") from exc
    except redis_errors.ResponseError as exc:
        if str(exc).startswith("TOPIC_FINISHED"):
            raise TopicFinishedError(topic) from exc
        raise StreamError(f"redis rejected a stream command on {topic!r}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise StreamError(f"redis error on topic {topic!r}: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_to_event(topic: str, entry_id: Any, fields: Mapping[Any, Any]) -> StreamEvent:
    fields = {_text(key): value for key, value in fields.items()}
    return StreamEvent(
        topic=topic,
        index=int(_text(entry_id).partition("-")[0]),
        data=_codec.decode_data(fields["d"]),
        ts_ms=int(_text(fields["t"])),
        final=_text(fields["f"]) == "1",
    )


def _flat_fields(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStreamCache:
    """A :class:`~inferpipe.streams.caching.StreamCache` in Redis Streams (see module doc).

    Args:
        client: A ``redis.asyncio.Redis``; closed by ``close()`` only if ``owns_client``.
        retention: Limits on age, count and topic lifetime, enforced by Redis.
        key_prefix: Prefix of every key written.
        clock_ms: Timestamp source; ``None`` uses the Redis server's clock (one clock for every
            publisher). Tests inject a fake clock.
        max_payload_bytes: Largest accepted encoded event data.
    """

    def __init__(
        self,
        client: Redis,
        retention: Retention | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock_ms: ClockMs | None = None,
        max_payload_bytes: int = _codec.DEFAULT_MAX_PAYLOAD_BYTES,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.retention = retention if retention is not None else Retention()
        self.key_prefix = key_prefix
        self._clock_ms = clock_ms
        self._max_payload_bytes = max_payload_bytes
        self._owns_client = owns_client
        self._publish = client.register_script(_redis_scripts.PUBLISH)
        self._read = client.register_script(_redis_scripts.READ)
        self._clear = client.register_script(_redis_scripts.CLEAR)

    @classmethod
    def from_url(cls, url: str, retention: Retention | None = None, **options: Any) -> Self:
        """Connect to ``url`` with :func:`redis_client`; the cache owns the client."""
        return cls(redis_client(url), retention, owns_client=True, **options)

    def keys(self, topic: str) -> tuple[str, str]:
        """The (stream, meta) keys holding ``topic``."""
        return _redis_scripts.topic_keys(self.key_prefix, topic)

    async def append(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Assign the next index and append, atomically (see ``StreamCache.append``)."""
        _codec.check_topic(topic)
        raw = _codec.encode_data(topic, data, self._max_payload_bytes)
        r = self.retention
        args = [
            raw,
            "1" if final else "0",
            self._now_arg(),
            r.max_events or 0,
            r.max_age_ms or 0,
            r.idle_ttl_ms or 0,
            r.finished_ttl_ms or 0,
        ]
        with _redis_errors(topic):
            index, ts_ms = await self._publish(keys=self.keys(topic), args=args)
        return StreamEvent(topic, int(index), _codec.decode_data(raw), int(_text(ts_ms)), final)

    async def read(self, topic: str, after: int | None, limit: int | None) -> HistoryPage:
        """Read history with the topic's head, trimming by age first (see ``StreamCache``)."""
        _codec.check_topic(topic)
        check_cursor(after)
        check_limit(limit)
        args = [
            "" if after is None else after,
            -1 if limit is None else limit,
            self._now_arg(),
            self.retention.max_age_ms or 0,
        ]
        with _redis_errors(topic):
            reply = await self._read(keys=self.keys(topic), args=args)
        status, last, oldest = _text(reply[0]), int(reply[1]), int(reply[2])
        if status == "ahead":
            raise FutureCursorError(topic, after or 0, last)
        if status == "expired":
            raise CursorExpiredError(topic, after or 0, oldest)
        events = [_entry_to_event(topic, eid, _flat_fields(flat)) for eid, flat in reply[4]]
        return HistoryPage(events, last, bool(reply[3]))

    async def clear(self, topic: str) -> None:
        """Drop history and the final mark; keep the index counter."""
        _codec.check_topic(topic)
        with _redis_errors(topic):
            await self._clear(keys=self.keys(topic), args=[self.retention.idle_ttl_ms or 0])

    async def close(self) -> None:
        """Close the client if this cache owns it."""
        if self._owns_client:
            await self.client.aclose()

    def _now_arg(self) -> str:
        return "" if self._clock_ms is None else str(self._clock_ms())


class _Readers:
    """The blocking reads of one ``RedisPubSub``: open feeds and reads left to finish alone.

    redis-py may swallow the cancellation of an in-flight command (redis/redis-py#2028,
    #2579), so a closed feed never cancels its ``XREAD``: it abandons it, and the read ends
    by itself within ``block_ms``. ``close()`` waits for those, so nothing outlives the pubsub.
    """

    def __init__(self) -> None:
        # Weak: a subscription dropped without close() is forgotten once collected.
        self.feeds: weakref.WeakSet[_XReadFeed] = weakref.WeakSet()
        self._abandoned: set[asyncio.Future[Any]] = set()

    def abandon(self, read: asyncio.Future[Any]) -> None:
        self._abandoned.add(read)
        read.add_done_callback(self._forget)

    def _forget(self, read: asyncio.Future[Any]) -> None:
        self._abandoned.discard(read)
        if not read.cancelled():
            read.exception()  # retrieved: an error after abandonment concerns nobody

    async def close(self, timeout_s: float) -> None:
        for feed in list(self.feeds):
            await feed.close()
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=timeout_s)


class _XReadFeed:
    """Live feed of one subscriber: ``XREAD BLOCK`` from its position, interruptible by close."""

    def __init__(
        self, cache: RedisStreamCache, topic: str, block_ms: int, readers: _Readers
    ) -> None:
        self._cache = cache
        self._readers = readers
        readers.feeds.add(self)
        self._topic = topic
        self._stream_key = cache.keys(topic)[0]
        self._block_ms = block_ms
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive(self, after: int) -> list[StreamEvent]:
        while not self._closed.done():
            entries = await self._xread(after)
            if entries:
                return [_entry_to_event(self._topic, eid, fields) for eid, fields in entries]
            if self._closed.done():
                break
            # Nothing new for a whole block: make sure the topic was not cleared away and
            # restarted below our cursor, which XREAD alone would never notice.
            head = await self._cache.read(self._topic, None, 0)
            if head.last_index < after:
                raise FutureCursorError(self._topic, after, head.last_index)
        return []

    async def _xread(self, after: int) -> list[tuple[Any, Mapping[Any, Any]]]:
        read = asyncio.ensure_future(
            self._cache.client.xread(
                {self._stream_key: f"{after}-0"}, count=XREAD_COUNT, block=self._block_ms
            )
        )
        waiters: set[asyncio.Future[Any]] = {read, self._closed}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():  # closed, or the consumer itself was cancelled
                self._readers.abandon(read)
        if not read.done():
            return []
        with _redis_errors(self._topic):
            reply = read.result()
        if not reply:
            return []
        streams = reply.values() if isinstance(reply, dict) else [item[1] for item in reply]
        return [(eid, fields) for entries in streams for eid, fields in _flatten(entries)]

    async def close(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        self._readers.feeds.discard(self)


def _flatten(entries: Any) -> Iterator[tuple[Any, Mapping[Any, Any]]]:
    # RESP3 replies wrap each stream's entry list in one more list; RESP2 entries are tuples.
    if entries and isinstance(entries[0], list):
        entries = entries[0]
    for eid, fields in entries:
        yield eid, fields if isinstance(fields, Mapping) else _flat_fields(fields)


class RedisPubSub:
    """A :class:`~inferpipe.streams.pubsub.PubSub` on Redis Streams, shared by processes.

    Args:
        client: A ``redis.asyncio.Redis``; closed by ``close()`` only if ``owns_client``.
        retention: Limits enforced inside Redis (see module doc).
        key_prefix: Prefix of every key written.
        clock_ms: Timestamp source; ``None`` (default) uses the Redis server clock.
        block_ms: Longest single blocking read; capped below the client's socket timeout.
        page_size: Events per history read while replaying.
        max_payload_bytes: Largest accepted encoded event data.

    Each waiting subscriber holds one pooled connection while it blocks.
    """

    def __init__(
        self,
        client: Redis,
        retention: Retention | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock_ms: ClockMs | None = None,
        block_ms: int = DEFAULT_BLOCK_MS,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_payload_bytes: int = _codec.DEFAULT_MAX_PAYLOAD_BYTES,
        owns_client: bool = False,
    ) -> None:
        self._cache = RedisStreamCache(
            client,
            retention,
            key_prefix=key_prefix,
            clock_ms=clock_ms,
            max_payload_bytes=max_payload_bytes,
            owns_client=owns_client,
        )
        socket_timeout_s = client.connection_pool.connection_kwargs.get("socket_timeout")
        if isinstance(socket_timeout_s, int | float):
            # A block longer than the socket timeout would turn every quiet period into an error.
            block_ms = min(block_ms, max(1, int(socket_timeout_s * 500)))
        self._block_ms = block_ms
        self._page_size = page_size
        self._readers = _Readers()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, retention: Retention | None = None, **options: Any) -> Self:
        """Connect to ``url`` with :func:`redis_client`; the pubsub owns the client."""
        return cls(redis_client(url), retention, owns_client=True, **options)

    @property
    def block_ms(self) -> int:
        """Longest single blocking read, after capping below the socket timeout."""
        return self._block_ms

    @property
    def cache(self) -> RedisStreamCache:
        """The underlying history store (keys, client, retention)."""
        return self._cache

    async def publish(self, topic: str, data: JSONInput, *, final: bool = False) -> StreamEvent:
        """Append atomically; blocked subscribers wake up (see ``PubSub.publish``)."""
        self._check_open()
        return await self._cache.append(topic, data, final=final)

    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe to live events (see ``PubSub.subscribe``)."""
        feed = self._open_feed(topic)
        return await CursorSubscription.open_live(
            topic, feed, self._cache.read, page_size=self._page_size
        )

    async def subscribe_with_replay(self, topic: str, after: int | None = None) -> Subscription:
        """History after ``after``, then live (see ``PubSub.subscribe_with_replay``)."""
        check_cursor(after)
        feed = self._open_feed(topic)
        return await CursorSubscription.open_replay(
            topic, feed, self._cache.read, after, page_size=self._page_size
        )

    async def get_history(
        self, topic: str, after: int | None = None, limit: int | None = None
    ) -> list[StreamEvent]:
        """Retained events after ``after`` (see ``PubSub.get_history``)."""
        self._check_open()
        return (await self._cache.read(topic, after, limit)).events

    async def clear_topic(self, topic: str) -> None:
        """Drop the topic's history (see ``PubSub.clear_topic``)."""
        self._check_open()
        await self._cache.clear(topic)

    async def close(self) -> None:
        """End every subscription, then close the client if owned.

        Waits (at most ``block_ms``) for blocking reads of closed subscriptions to return.
        """
        if self._closed:
            return
        self._closed = True
        await self._readers.close(timeout_s=self._block_ms / 1000 + 1)
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

    def _open_feed(self, topic: str) -> _XReadFeed:
        self._check_open()
        _codec.check_topic(topic)
        return _XReadFeed(self._cache, topic, self._block_ms, self._readers)

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubClosedError("RedisPubSub")
