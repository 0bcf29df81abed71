"""Redis-only behaviour: bounded keys, expiry, several clients, and a server that goes away."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from inferpipe.streams.caching import CachingPubSub
from inferpipe.streams.errors import CorruptEventError, FutureCursorError, StreamUnavailableError
from inferpipe.streams.memory import MemoryLivePubSub
from inferpipe.streams.pubsub import Retention
from inferpipe.streams.redis import RedisPubSub, RedisStreamCache, redis_client
from tests.servers import start_redis
from tests.streams.test_conformance import WAIT_S, drain, indices, publish_many, take

_prefixes = itertools.count()


MakeRedisPubSub = Callable[..., RedisPubSub]


@pytest.fixture
async def make_redis_pubsub(redis_url: str) -> AsyncIterator[MakeRedisPubSub]:
    """Builds RedisPubSubs on the session server, each in its own key space unless told."""
    made: list[RedisPubSub] = []

    def make(retention: Retention | None = None, **options: Any) -> RedisPubSub:
        options.setdefault("key_prefix", f"redis-test:{next(_prefixes)}:")
        pubsub = RedisPubSub(redis_client(redis_url), retention, owns_client=True, **options)
        made.append(pubsub)
        return pubsub

    yield make
    for pubsub in made:
        await pubsub.close()


async def test_count_retention_bounds_the_stream(make_redis_pubsub: MakeRedisPubSub) -> None:
    pubsub = make_redis_pubsub(Retention(max_events=100))
    await publish_many(pubsub, "t", 300)
    stream_key, _ = pubsub.cache.keys("t")
    assert await pubsub.cache.client.xlen(stream_key) == 100
    assert indices(await pubsub.get_history("t"))[0] == 201


async def test_topic_keys_expire_when_idle_and_after_final(
    make_redis_pubsub: MakeRedisPubSub,
) -> None:
    retention = Retention(idle_ttl_ms=600_000, finished_ttl_ms=60_000)
    pubsub = make_redis_pubsub(retention)
    client = pubsub.cache.client
    await pubsub.publish("t", 1)
    for key in pubsub.cache.keys("t"):
        assert 60_000 < await client.pttl(key) <= 600_000
    await pubsub.publish("t", 2, final=True)
    for key in pubsub.cache.keys("t"):
        assert 0 < await client.pttl(key) <= 60_000
    no_expiry = make_redis_pubsub(Retention(idle_ttl_ms=None, finished_ttl_ms=None))
    await no_expiry.publish("t", 1)
    assert await client.pttl(no_expiry.cache.keys("t")[0]) == -1


async def test_keys_share_a_cluster_hash_slot(make_redis_pubsub: MakeRedisPubSub) -> None:
    stream_key, meta_key = make_redis_pubsub().cache.keys("run/abc")
    assert stream_key.endswith("{run/abc}:e")
    assert meta_key.endswith("{run/abc}:m")


async def test_indices_are_atomic_across_clients(
    make_redis_pubsub: MakeRedisPubSub,
) -> None:
    first = make_redis_pubsub(key_prefix="shared-atomic:")
    second = make_redis_pubsub(key_prefix="shared-atomic:")
    events = await asyncio.gather(
        *(pubsub.publish("t", n) for n in range(100) for pubsub in (first, second))
    )
    assert sorted(e.index for e in events) == list(range(1, 201))
    assert indices(await first.get_history("t")) == list(range(1, 201))


async def test_stream_survives_its_producer_and_reconnecting_consumers(
    make_redis_pubsub: MakeRedisPubSub,
) -> None:
    """A producer dies mid-stream; another process continues; consumers miss nothing."""
    producer = make_redis_pubsub(key_prefix="shared-recovery:")
    staying = make_redis_pubsub(key_prefix="shared-recovery:")
    watcher = await staying.subscribe_with_replay("run/1")
    await publish_many(producer, "run/1", 5)
    await producer.close()  # the worker is gone; its events are not
    reconnecting = make_redis_pubsub(key_prefix="shared-recovery:")
    seen = await take(await reconnecting.subscribe_with_replay("run/1"), 3)
    successor = make_redis_pubsub(key_prefix="shared-recovery:")
    await publish_many(successor, "run/1", 4, final=True)
    resumed = await reconnecting.subscribe_with_replay("run/1", after=seen[-1].index)
    assert indices(await drain(watcher)) == list(range(1, 10))
    assert indices(seen + await drain(resumed)) == list(range(1, 10))


async def test_subscriber_notices_a_topic_reset_below_its_cursor(
    make_redis_pubsub: MakeRedisPubSub,
) -> None:
    pubsub = make_redis_pubsub(block_ms=50)
    await publish_many(pubsub, "t", 5)
    sub = await pubsub.subscribe("t")
    # Simulate both keys expiring while the subscriber waits, then a new run starting over.
    await pubsub.cache.client.delete(*pubsub.cache.keys("t"))
    await pubsub.publish("t", "restarted")
    with pytest.raises(FutureCursorError) as caught:
        await take(sub, 1)
    assert (caught.value.after, caught.value.last_index) == (5, 1)


async def test_block_is_capped_below_the_socket_timeout(redis_url: str) -> None:
    client = Redis.from_url(redis_url, socket_timeout=1.0)
    pubsub = RedisPubSub(client, block_ms=60_000, owns_client=True)
    assert pubsub.block_ms == 500
    await pubsub.close()


async def test_redis_going_away_is_a_clear_error(tmp_path: Path) -> None:
    url, stop = start_redis(tmp_path / "doomed")
    pubsub = RedisPubSub.from_url(url)
    cached = CachingPubSub(MemoryLivePubSub(), RedisStreamCache.from_url(url))
    try:
        sub = await pubsub.subscribe("t")
        await pubsub.publish("t", "before")
        assert indices(await take(sub, 1)) == [1]
        reader = asyncio.create_task(take(sub, 1))
        stop()
        with pytest.raises(StreamUnavailableError) as caught:
            async with asyncio.timeout(WAIT_S):
                await reader
        assert caught.value.retryable
        assert caught.value.code == "stream_unavailable"
        with pytest.raises(StreamUnavailableError):
            await pubsub.publish("t", "after")
        with pytest.raises(StreamUnavailableError):
            await cached.publish("t", "after")
        with pytest.raises(StreamUnavailableError):
            await pubsub.subscribe_with_replay("t", after=1)
    finally:
        stop()
        await pubsub.close()
        await cached.close()


async def test_resp3_and_decoded_responses_are_understood(redis_url: str) -> None:
    for options in ({"protocol": 3}, {"decode_responses": True}):
        client = Redis.from_url(redis_url, **options)
        pubsub = RedisPubSub(client, key_prefix=f"resp:{options}:", owns_client=True)
        sub = await pubsub.subscribe_with_replay("t")
        await publish_many(pubsub, "t", 3, final=True)
        events = await drain(sub)
        assert [(e.index, e.data, e.final) for e in events] == [
            (1, {"n": 0}, False),
            (2, {"n": 1}, False),
            (3, {"n": 2}, True),
        ]
        await pubsub.close()


class FreezingProxy:
    """A TCP proxy to Redis that can go silent without closing anything (a dead network path)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            if self.frozen.is_set():
                return  # swallow everything from now on, keep sockets open
            sink.write(data)
            await sink.drain()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_silent_connection_loss_is_an_error_not_a_hang(redis_url: str) -> None:
    proxy = FreezingProxy(urlsplit(redis_url).port or 6379)
    port = await proxy.start()
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=None)
    pubsub = RedisPubSub(client, block_ms=50, read_grace_s=0.2, owns_client=True)
    try:
        sub = await pubsub.subscribe("t")
        await pubsub.publish("t", 1)
        assert indices(await take(sub, 1)) == [1]
        proxy.frozen.set()
        with pytest.raises(StreamUnavailableError, match="no reply"):
            async with asyncio.timeout(WAIT_S):
                await anext(sub)
    finally:
        await proxy.close()
        await pubsub.close()


async def test_a_malformed_entry_reaches_readers_as_a_stream_error(
    make_redis_pubsub: MakeRedisPubSub,
) -> None:
    pubsub = make_redis_pubsub()
    await pubsub.publish("t", {"n": 1})
    stream_key, meta_key = pubsub.cache.keys("t")
    client = pubsub.cache.client
    # Entries written by something other than the publish script: data that is not JSON, then
    # an entry without the expected fields.
    await client.hincrby(meta_key, "last", 1)  # the head covers each entry added by hand
    await client.xadd(stream_key, {"t": "1", "f": "0", "d": b"{not json"}, id="2-0")
    with pytest.raises(CorruptEventError, match="not JSON"):
        await pubsub.get_history("t")
    with pytest.raises(CorruptEventError):
        await pubsub.subscribe_with_replay("t", after=1)
    async with await pubsub.subscribe("t") as live:
        await client.hincrby(meta_key, "last", 1)
        await client.xadd(stream_key, {"t": "1", "f": "0", "d": b"]"}, id="3-0")
        with pytest.raises(CorruptEventError):
            await asyncio.wait_for(anext(live), WAIT_S)
    await client.hincrby(meta_key, "last", 1)
    await client.xadd(stream_key, {"x": "y"}, id="4-0")
    with pytest.raises(CorruptEventError, match="malformed Redis stream entry"):
        await pubsub.get_history("t", after=3)
