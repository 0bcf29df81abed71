"""Store-only behaviour: processes sharing a database, purging, polling, a restarted server.

Each pubsub here opens its own store (its own SQLite connection thread or PostgreSQL pool), so
two of them only share what the database shares - as two processes would: events published by
one reach the other's subscribers through NOTIFY (PostgreSQL) or polling (SQLite) alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import inferpipe as ip
from inferpipe.core.errors import ConfigurationError
from inferpipe.store.base import Store
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.store.stream_log import StreamLog
from inferpipe.streams.errors import FutureCursorError, StreamUnavailableError
from inferpipe.streams.pubsub import Retention, wall_clock_ms
from inferpipe.streams.store import Purged, StorePubSub
from tests.store.conftest import PostgresServer
from tests.streams.conftest import BackendSpec, FakeClock
from tests.streams.test_conformance import drain, indices, publish_many, take


@pytest.fixture(params=["store-sqlite", "store-postgres"])
async def spec(request: pytest.FixtureRequest) -> AsyncIterator[BackendSpec]:
    name: str = request.param
    if name == "store-sqlite":
        database = request.getfixturevalue("streams_sqlite_path")
    else:
        database = request.getfixturevalue("streams_postgres").url
    made = BackendSpec(name, database=database)
    yield made
    await made.close_all()


async def process(
    spec: BackendSpec, retention: Retention | None = None, **options: Any
) -> StorePubSub:
    """A pubsub on its own store: another process, as far as delivery is concerned."""
    store = await spec.open_store(empty=not spec.made)
    if spec.name == "store-postgres":
        options.setdefault("poll_interval_s", 60.0)  # only NOTIFY can deliver in time
    pubsub = StorePubSub.for_store(store, retention, **options)
    spec.made.append(pubsub)
    return pubsub


async def event_rows(store: Store, topic: str) -> int:
    if isinstance(store, SQLiteStore):
        sql = "SELECT COUNT(*) FROM stream_events WHERE topic = ?"
        row = await store._db.read(lambda c: c.execute(sql, (topic,)).fetchone())
        return int(row[0])

    async def count(c: Any) -> int:
        return int(await c.fetchval("SELECT COUNT(*) FROM stream_events WHERE topic = $1", topic))

    return int(await store._db.read(count))  # type: ignore[attr-defined]


async def test_events_of_another_process_reach_waiting_subscribers(spec: BackendSpec) -> None:
    producer, consumer = await process(spec), await process(spec)
    live = await consumer.subscribe("t")
    replay = await consumer.subscribe_with_replay("t")
    readers = [asyncio.create_task(drain(live)), asyncio.create_task(drain(replay))]
    await publish_many(producer, "t", 30, final=True)
    assert [indices(events) for events in await asyncio.gather(*readers)] == [
        list(range(1, 31)),
        list(range(1, 31)),
    ]


async def test_indices_are_atomic_across_processes(spec: BackendSpec) -> None:
    first, second = await process(spec), await process(spec)
    events = await asyncio.gather(
        *(pubsub.publish("t", n) for n in range(100) for pubsub in (first, second))
    )
    assert sorted(e.index for e in events) == list(range(1, 201))
    assert indices(await second.get_history("t")) == list(range(1, 201))


async def test_history_outlives_its_producer(spec: BackendSpec) -> None:
    """A producer dies mid-stream; another process continues; consumers miss nothing."""
    producer = await process(spec)
    watcher = await (await process(spec)).subscribe_with_replay("run/1")
    await publish_many(producer, "run/1", 5)
    await producer.close()  # the worker is gone; its events are not
    reconnecting = await process(spec)
    seen = await take(await reconnecting.subscribe_with_replay("run/1"), 3)
    await publish_many(await process(spec), "run/1", 4, final=True)
    resumed = await reconnecting.subscribe_with_replay("run/1", after=seen[-1].index)
    assert indices(await drain(watcher)) == list(range(1, 10))
    assert indices(seen + await drain(resumed)) == list(range(1, 10))


async def test_count_retention_bounds_the_table(spec: BackendSpec) -> None:
    pubsub = await process(spec, Retention(max_events=100))
    await publish_many(pubsub, "t", 300)
    assert await event_rows(spec.stores[-1], "t") == 100
    assert indices(await pubsub.get_history("t"))[0] == 201


async def test_purge_deletes_aged_events_and_expired_topics(spec: BackendSpec) -> None:
    clock = FakeClock()
    retention = Retention(max_age_ms=1000, finished_ttl_ms=5000, idle_ttl_ms=60_000)
    pubsub = await process(spec, retention, clock_ms=clock, purge_interval_ms=None)
    store = spec.stores[-1]
    await publish_many(pubsub, "idle", 3)
    await publish_many(pubsub, "done", 2, final=True)
    clock.advance(2000)
    await pubsub.publish("idle", "fresh")
    assert await pubsub.purge() == Purged(topics=0, events=5)
    assert await event_rows(store, "idle") == 1
    clock.advance(4000)  # "done" finished 6 s ago: past finished_ttl_ms
    assert (await pubsub.purge()).topics == 1
    assert (await pubsub.publish("done", "again")).index == 1  # an expired topic starts over
    assert (await pubsub.publish("idle", "more")).index == 5  # a live one keeps counting


async def test_publishing_purges_by_itself(spec: BackendSpec) -> None:
    clock = FakeClock()
    pubsub = await process(spec, Retention(max_age_ms=1000), clock_ms=clock, purge_interval_ms=500)
    await publish_many(pubsub, "t", 10)
    clock.advance(2000)
    await pubsub.publish("t", "late")  # due: purges in the background
    await pubsub.close()  # waits for the purge
    assert await event_rows(spec.stores[-1], "t") == 1


async def test_waiting_subscriber_notices_its_topic_restarting_below_it(
    spec: BackendSpec,
) -> None:
    clock = FakeClock()
    retention = Retention(idle_ttl_ms=1000)
    producer = await process(spec, retention, clock_ms=clock)
    consumer = await process(spec, retention, clock_ms=clock)
    await publish_many(producer, "t", 5)
    sub = await consumer.subscribe("t")
    clock.advance(2000)  # the topic expired while the subscriber waited...
    await producer.publish("t", "restarted")  # ...and a new run started over at 1
    with pytest.raises(FutureCursorError) as caught:
        await take(sub, 1)
    assert (caught.value.after, caught.value.last_index) == (5, 1)


async def test_sqlite_polls_only_while_a_subscriber_waits(
    streams_sqlite_path: str,
) -> None:
    spec = BackendSpec("store-sqlite", database=streams_sqlite_path)
    try:
        producer = await process(spec)
        store = await spec.open_store()
        assert isinstance(store, SQLiteStore)
        log = CountingLog(store.stream_log)
        consumer = StorePubSub(log, poll_interval_s=0.01)
        spec.made.append(consumer)
        async with await consumer.subscribe("t") as sub:
            await producer.publish("t", "hello")
            assert [e.data for e in await take(sub, 1)] == ["hello"]
        polls = log.head_reads
        assert polls >= 1
        await asyncio.sleep(0.1)  # ten intervals without a waiting subscriber
        assert log.head_reads == polls
    finally:
        await spec.close_all()


class CountingLog:
    """A stream log that counts head reads (the poller's queries)."""

    def __init__(self, inner: StreamLog) -> None:
        self.inner = inner
        self.head_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def heads(self, topics: Any, **kwargs: Any) -> dict[str, int]:
        self.head_reads += 1
        return await self.inner.heads(topics, **kwargs)


async def test_subscriber_survives_a_postgres_restart(
    streams_postgres: PostgresServer,
) -> None:
    spec = BackendSpec("store-postgres", database=streams_postgres.url)
    try:
        producer, consumer = await process(spec), await process(spec)
        sub = await consumer.subscribe_with_replay("t")
        await publish_many(producer, "t", 3)
        assert indices(await take(sub, 3)) == [1, 2, 3]
        await asyncio.to_thread(streams_postgres.restart)  # every connection is cut
        await publish_many(producer, "t", 3, final=True)  # the pool retries until it is back
        assert indices(await drain(sub)) == [4, 5, 6]
    finally:
        await spec.close_all()


async def test_a_closed_store_is_reported_as_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "closed.db")
    await store.open()
    pubsub = StorePubSub.for_store(store, clock_ms=wall_clock_ms)
    await store.close()
    with pytest.raises(StreamUnavailableError) as caught:
        await pubsub.publish("t", 1)
    assert caught.value.retryable and "sqlite" in str(caught.value)
    await pubsub.close()


async def test_app_puts_run_streams_in_its_store_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"sqlite:///{tmp_path / 'app.db'}"
    async with ip.App("a", database=database, streams="store") as app:
        assert isinstance(app.engine.pubsub, StorePubSub)
    monkeypatch.setenv("INFERPIPE_STREAMS_URL", "store")
    async with ip.App("b", database=database) as app:
        assert isinstance(app.engine.pubsub, StorePubSub)
    monkeypatch.setenv("INFERPIPE_STREAMS_URL", "kafka://nope")
    with pytest.raises(ConfigurationError, match="store"):
        await ip.App("c", database=database).start()
