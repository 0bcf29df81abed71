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
from typing import Any, Self

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from inferpipe.streams import _codec, _redis_scripts
from inferpipe.streams._redis_scripts import DEFAULT_KEY_PREFIX
from inferpipe.streams._subscription import DEFAULT_PAGE_SIZE
from inferpipe.streams.errors import (
    CorruptEventError,
    CursorExpiredError,
    FutureCursorError,
    StreamError,
    StreamUnavailableError,
    TopicFinishedError,
)
from inferpipe.streams.front import StreamFront
from inferpipe.streams.pubsub import (
    ClockMs,
    HistoryPage,
    JSONInput,
    Retention,
    StreamEvent,
    check_cursor,
    check_limit,
)

__all__ = ["DEFAULT_KEY_PREFIX", "RedisPubSub", "RedisStreamCache", "redis_client"]

#: Longest single XREAD BLOCK; between two, a subscriber checks its topic was not reset.
DEFAULT_BLOCK_MS = 2000
#: Connections per client built by :func:`redis_client`.
DEFAULT_MAX_CONNECTIONS = 256
#: Seconds a blocking read may overrun ``block_ms`` before the server is deemed unreachable.
READ_GRACE_S = 5.0
#: Entries fetched per XREAD.
XREAD_COUNT = 512


def redis_client(
    url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS, socket_timeout_s: float = 10.0
) -> Redis:
    """Build a client tuned for streams.

    - bounded timeouts and a short reconnect budget: a dead server surfaces as
      ``StreamUnavailableError`` within about a second instead of after a long retry loop;
    - a *blocking* pool: a burst of publishes waits for a free connection instead of failing
      with "too many connections" (subscribers block on their own connections, not these).
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


# Field names in the order the publish script writes them, as bytes or decoded text.
_LAYOUTS = {(b"t", b"f", b"d"), ("t", "f", "d")}


def _entry_to_event(topic: str, entry_id: Any, fields: Any) -> StreamEvent:
    """Build an event from a stream entry (flat ``[t, ts, f, final, d, data]`` or a mapping).

    Raises:
        CorruptEventError: The entry was not written by the publish script.
    """
    try:
        return _parse_entry(topic, entry_id, fields)
    except (KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        detail = f"malformed Redis stream entry {entry_id!r}: {type(exc).__name__}: {exc}"
        raise CorruptEventError(topic, detail) from exc


def _parse_entry(topic: str, entry_id: Any, fields: Any) -> StreamEvent:
    if (
        isinstance(fields, list | tuple)
        and len(fields) == 6
        and (fields[0], fields[2], fields[4]) in _LAYOUTS
    ):
        ts_ms, final, data = fields[1], fields[3], fields[5]  # fast path: replaying thousands
    else:
        named = fields if isinstance(fields, Mapping) else _flat_fields(fields)
        by_name = {_text(key): value for key, value in named.items()}
        ts_ms, final, data = by_name["t"], by_name["f"], by_name["d"]
    return StreamEvent(
        topic=topic,
        index=int(_text(entry_id).partition("-")[0]),
        data=_codec.decode_data(topic, data),
        ts_ms=int(ts_ms),
        final=final in (b"1", "1"),
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
        return StreamEvent(
            topic, int(index), _codec.decode_data(topic, raw), int(_text(ts_ms)), final
        )

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
        events = [_entry_to_event(topic, eid, flat) for eid, flat in reply[4]]
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


class _XReadFeed:
    """Live feed of one subscriber: ``XREAD BLOCK`` from its position, on its own connection.

    The blocking read runs on a dedicated connection (outside the pool, so waiting subscribers
    never starve publishers) whose Redis client id is known, so ``close()`` can end a pending
    read at once with ``CLIENT UNBLOCK`` rather than by cancelling it - redis-py may swallow
    or mishandle such a cancellation (redis/redis-py#2028, #2579).
    """

    def __init__(
        self,
        cache: RedisStreamCache,
        topic: str,
        block_ms: int,
        read_grace_s: float,
        feeds: weakref.WeakSet[_XReadFeed],
    ) -> None:
        self._cache = cache
        self._read_grace_s = read_grace_s
        self._topic = topic
        self._stream_key = cache.keys(topic)[0]
        self._block_ms = block_ms
        self._feeds = feeds
        feeds.add(self)
        self._connection: AbstractConnection | None = None
        self._client_id: int | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    async def receive(self, after: int) -> list[StreamEvent]:
        while not self._closed:
            entries = await self._xread(after)
            if entries:
                return [_entry_to_event(self._topic, eid, fields) for eid, fields in entries]
            if self._closed:
                break
            # Nothing new for a whole block: make sure the topic was not cleared away and
            # restarted below our cursor, which XREAD alone would never notice.
            head = await self._cache.read(self._topic, None, 0)
            if head.last_index < after:
                raise FutureCursorError(self._topic, after, head.last_index)
        return []

    async def _xread(self, after: int) -> list[tuple[Any, Any]]:
        self._idle.clear()
        try:
            connection = await self._connect()
            if self._closed:
                return []
            # Our own deadline too: a client built without a socket timeout must not let a
            # silently dropped connection (no RST) hang the subscriber.
            with _redis_errors(self._topic):
                async with asyncio.timeout(self._block_ms / 1000 + self._read_grace_s):
                    await connection.send_command(
                        "XREAD", "COUNT", XREAD_COUNT, "BLOCK", self._block_ms,
                        "STREAMS", self._stream_key, f"{after}-0",
                    )  # fmt: skip
                    reply = await connection.read_response()
        except TimeoutError as exc:
            await self._disconnect()
            if self._closed:
                return []
            raise StreamUnavailableError("redis", "no reply to a blocking read in time") from exc
        except asyncio.CancelledError:
            await self._disconnect()  # the connection's state is unknown now
            raise
        except Exception:
            await self._disconnect()
            if self._closed:
                return []  # closing broke the read: not an error
            raise
        finally:
            self._idle.set()
        if self._closed:
            await self._disconnect()
        return _raw_entries(reply)

    async def _connect(self) -> AbstractConnection:
        if self._connection is None:
            pool = self._cache.client.connection_pool
            connection = pool.connection_class(**pool.connection_kwargs)
            with _redis_errors(self._topic):
                await connection.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py
                await connection.send_command("CLIENT", "ID")
                self._client_id = int(await connection.read_response())
            self._connection = connection
        return self._connection

    async def _disconnect(self) -> None:
        connection, self._connection, self._client_id = self._connection, None, None
        if connection is not None:
            await connection.disconnect()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._feeds.discard(self)
        deadline_s = asyncio.get_running_loop().time() + self._block_ms / 1000 + 1
        while not self._idle.is_set() and asyncio.get_running_loop().time() < deadline_s:
            if self._client_id is not None:
                with contextlib.suppress(redis_errors.RedisError):
                    await self._cache.client.client_unblock(self._client_id)
            # Retry briefly: the read may not have reached the server when we unblocked.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._idle.wait()
        if self._idle.is_set():
            await self._disconnect()


def _raw_entries(reply: Any) -> list[tuple[Any, Any]]:
    """Parse a raw XREAD reply: RESP2 ``[[key, entries]]`` or RESP3 ``{key: entries}``."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else [item[1] for item in reply]
    return [(eid, fields) for entries in streams for eid, fields in entries]


class _XReadLive:
    """The live transport of a ``RedisPubSub``: each feed blocks in ``XREAD`` on the stream,
    so a publish needs no announcement."""

    def __init__(self, cache: RedisStreamCache, block_ms: int, read_grace_s: float) -> None:
        self._cache = cache
        self._block_ms = block_ms
        self._read_grace_s = read_grace_s
        self._feeds: weakref.WeakSet[_XReadFeed] = weakref.WeakSet()

    async def open(self, topic: str) -> _XReadFeed:
        return _XReadFeed(self._cache, topic, self._block_ms, self._read_grace_s, self._feeds)

    async def announce(self, event: StreamEvent) -> None:
        """Blocked readers wake up by themselves."""

    async def close(self) -> None:
        for feed in list(self._feeds):
            await feed.close()


class RedisPubSub(StreamFront):
    """A :class:`~inferpipe.streams.pubsub.PubSub` on Redis Streams, shared by processes.

    Args:
        client: A ``redis.asyncio.Redis``; closed by ``close()`` only if ``owns_client``.
        retention: Limits enforced inside Redis (see module doc).
        key_prefix: Prefix of every key written.
        clock_ms: Timestamp source; ``None`` (default) uses the Redis server clock.
        block_ms: Longest single blocking read; capped below the client's socket timeout.
        read_grace_s: How long a blocking read may overrun ``block_ms`` before the subscriber
            gets ``StreamUnavailableError`` (a connection that died without a word).
        page_size: Events per history read while replaying.
        max_payload_bytes: Largest accepted encoded event data.

    Each subscription that waits for live events opens one dedicated connection (outside the
    client's pool), closed with the subscription: always close subscriptions (``async with``).
    Closing the pubsub ends pending blocking reads with ``CLIENT UNBLOCK``.
    """

    def __init__(
        self,
        client: Redis,
        retention: Retention | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock_ms: ClockMs | None = None,
        block_ms: int = DEFAULT_BLOCK_MS,
        read_grace_s: float = READ_GRACE_S,
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
        live = _XReadLive(self._cache, block_ms, read_grace_s)
        super().__init__(self._cache, live, page_size=page_size)

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
