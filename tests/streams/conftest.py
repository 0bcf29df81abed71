"""Fixtures of the streams tests: a real redis-server and every PubSub backend behind one spec."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.streams.caching import CachingPubSub, MemoryStreamCache
from inferpipe.streams.memory import MemoryLivePubSub, MemoryPubSub
from inferpipe.streams.pubsub import PubSub, Retention, wall_clock_ms
from inferpipe.streams.redis import RedisPubSub, RedisStreamCache
from inferpipe.streams.store import StorePubSub
from tests.servers import ServerStartError, start_redis
from tests.store.conftest import PostgresServer, launch_postgres

BACKENDS = [
    "memory",
    "redis",
    "caching-memory",
    "caching-redis",
    "store-sqlite",
    "store-postgres",
]
_prefixes = itertools.count()


class FakeClock:
    """A wall clock in ms that only moves when told to."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class BackendSpec:
    """Builds pubsubs of one backend; loop-agnostic, so hypothesis examples can use it too."""

    name: str
    redis_url: str | None = None
    #: The database of a store backend: a SQLite file or a PostgreSQL URL, shared by the
    #: session and emptied of streams when a test (or example) makes its first pubsub.
    database: str | None = None
    made: list[PubSub] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)

    @property
    def uses_redis(self) -> bool:
        return self.redis_url is not None

    @property
    def uses_store(self) -> bool:
        return self.database is not None

    async def make(
        self,
        retention: Retention | None = None,
        *,
        clock: FakeClock | None = None,
        max_queue: int = 1000,
        **options: Any,
    ) -> PubSub:
        """A fresh pubsub with its own key space; ``close_all`` closes it."""
        prefix = f"test:{next(_prefixes)}:"
        pubsub: PubSub
        if self.database is not None:
            store = await self.open_store(empty=not self.made)
            pubsub = StorePubSub.for_store(
                store, retention, clock_ms=clock or wall_clock_ms, max_queue=max_queue, **options
            )
        elif self.name == "memory":
            pubsub = MemoryPubSub(retention, clock_ms=clock or wall_clock_ms, max_queue=max_queue)
        elif self.name == "redis":
            assert self.redis_url is not None
            pubsub = RedisPubSub.from_url(
                self.redis_url, retention, key_prefix=prefix, clock_ms=clock, **options
            )
        elif self.name == "caching-memory":
            cache = MemoryStreamCache(retention, clock_ms=clock or wall_clock_ms)
            pubsub = CachingPubSub(MemoryLivePubSub(max_queue=max_queue), cache, **options)
        else:
            assert self.redis_url is not None
            redis_cache = RedisStreamCache.from_url(
                self.redis_url, retention, key_prefix=prefix, clock_ms=clock
            )
            pubsub = CachingPubSub(MemoryLivePubSub(max_queue=max_queue), redis_cache, **options)
        self.made.append(pubsub)
        return pubsub

    async def open_store(self, *, empty: bool = False) -> Store:
        """An open store on this backend's database (``empty``: delete every stream first)."""
        assert self.database is not None
        store: Store
        if self.name == "store-sqlite":
            store = SQLiteStore(self.database)
        else:
            store = PostgresStore(self.database)
        await store.open()
        self.stores.append(store)
        if empty:
            await empty_streams(store)
        return store

    async def close_all(self) -> None:
        while self.made:
            await self.made.pop().close()
        while self.stores:
            await self.stores.pop().close()


async def empty_streams(store: Store) -> None:
    """Delete every topic of a store backend (tests share one database per session)."""
    if isinstance(store, SQLiteStore):

        def delete(c: Any) -> None:
            c.execute("DELETE FROM stream_events")
            c.execute("DELETE FROM stream_topics")

        await store._db.write(delete)
    elif isinstance(store, PostgresStore):

        async def truncate(c: Any) -> None:
            await c.execute("TRUNCATE stream_events, stream_topics")

        await store._db.transaction(truncate)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session, on a free loopback port."""
    workdir: Path = tmp_path_factory.mktemp("redis")
    try:
        url, stop = start_redis(workdir)
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield url
    stop()


@pytest.fixture(scope="session")
def streams_sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The SQLite file of the store-sqlite backend."""
    return str(tmp_path_factory.mktemp("streams-sqlite") / "streams.db")


@pytest.fixture(scope="session")
def streams_postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL cluster for the whole session, on a free loopback port."""
    server, stop = launch_postgres()
    try:
        yield server
    finally:
        stop()


@pytest.fixture(params=BACKENDS)
def backend_spec(request: pytest.FixtureRequest) -> BackendSpec:
    """One backend per parametrization; servers start on first use, once per session."""
    name: str = request.param
    url = request.getfixturevalue("redis_url") if "redis" in name else None
    database = None
    if name == "store-sqlite":
        database = request.getfixturevalue("streams_sqlite_path")
    elif name == "store-postgres":
        database = request.getfixturevalue("streams_postgres").url
    return BackendSpec(name, url, database)


@pytest.fixture
async def backend(backend_spec: BackendSpec) -> AsyncIterator[BackendSpec]:
    """Like ``backend_spec``, closing what the test made when it ends."""
    yield backend_spec
    await backend_spec.close_all()


@pytest.fixture
async def pubsub(backend: BackendSpec) -> PubSub:
    """A pubsub with default retention on the parametrized backend."""
    return await backend.make()
