"""Fixtures of the streams tests: a real redis-server and every PubSub backend behind one spec."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inferpipe.streams.caching import CachingPubSub, MemoryStreamCache
from inferpipe.streams.memory import MemoryLivePubSub, MemoryPubSub
from inferpipe.streams.pubsub import PubSub, Retention, wall_clock_ms
from inferpipe.streams.redis import RedisPubSub, RedisStreamCache
from tests.servers import ServerStartError, start_redis

BACKENDS = ["memory", "redis", "caching-memory", "caching-redis"]
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
    made: list[PubSub] = field(default_factory=list)

    @property
    def uses_redis(self) -> bool:
        return self.redis_url is not None

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
        if self.name == "memory":
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

    async def close_all(self) -> None:
        while self.made:
            await self.made.pop().close()


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


@pytest.fixture(params=BACKENDS)
def backend_spec(request: pytest.FixtureRequest) -> BackendSpec:
    """One backend per parametrization; Redis ones start the session server on first use."""
    name: str = request.param
    url = request.getfixturevalue("redis_url") if "redis" in name else None
    return BackendSpec(name, url)


@pytest.fixture
async def backend(backend_spec: BackendSpec) -> AsyncIterator[BackendSpec]:
    """Like ``backend_spec``, closing what the test made when it ends."""
    yield backend_spec
    await backend_spec.close_all()


@pytest.fixture
async def pubsub(backend: BackendSpec) -> PubSub:
    """A pubsub with default retention on the parametrized backend."""
    return await backend.make()
