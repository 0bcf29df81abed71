"""``CachingPubSub`` over imperfect live transports: lost messages never become lost events."""

from __future__ import annotations

import itertools
from typing import Self

from inferpipe.streams.caching import (
    CachingPubSub,
    LivePubSub,
    LiveSubscription,
    MemoryStreamCache,
)
from inferpipe.streams.errors import MessagesLostError
from inferpipe.streams.memory import MemoryLivePubSub
from inferpipe.streams.pubsub import JSONValue, PubSub
from tests.streams.test_conformance import drain, indices, publish_many, take


class FlakyLive:
    """A live transport that loses messages: silently (every ``drop_every``-th) or announced."""

    def __init__(self, *, drop_every: int | None = None) -> None:
        self.inner = MemoryLivePubSub()
        self.drop_every = drop_every
        self.lose_next = False
        self.subscriptions = 0
        self._sent = itertools.count(1)

    async def publish(self, topic: str, message: JSONValue) -> None:
        if self.drop_every is not None and next(self._sent) % self.drop_every == 0:
            return
        await self.inner.publish(topic, message)

    async def subscribe(self, topic: str) -> FlakySubscription:
        self.subscriptions += 1
        return FlakySubscription(self, topic, await self.inner.subscribe(topic))

    async def close(self) -> None:
        await self.inner.close()


class FlakySubscription:
    def __init__(self, owner: FlakyLive, topic: str, inner: LiveSubscription) -> None:
        self._owner = owner
        self._topic = topic
        self._inner = inner

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> JSONValue:
        message = await anext(self._inner)
        if self._owner.lose_next:
            self._owner.lose_next = False
            raise MessagesLostError(self._topic, "announced by the test transport")
        return message

    async def close(self) -> None:
        await self._inner.close()


def test_transports_satisfy_the_protocols() -> None:
    live: LivePubSub = MemoryLivePubSub()
    pubsub: PubSub = CachingPubSub(live, MemoryStreamCache())
    assert isinstance(pubsub, PubSub)


async def test_silently_lost_messages_are_recovered_from_the_cache() -> None:
    pubsub = CachingPubSub(FlakyLive(drop_every=3), MemoryStreamCache(), idle_check_s=0.05)
    sub = await pubsub.subscribe("t")
    await publish_many(pubsub, "t", 9, final=True)  # the final event itself is dropped
    assert indices(await drain(sub)) == list(range(1, 10))
    await pubsub.close()


async def test_announced_loss_resubscribes_then_catches_up() -> None:
    live = FlakyLive()
    pubsub = CachingPubSub(live, MemoryStreamCache(), idle_check_s=None)
    sub = await pubsub.subscribe_with_replay("t")
    await publish_many(pubsub, "t", 2)
    assert indices(await take(sub, 1)) == [1]
    live.lose_next = True
    await publish_many(pubsub, "t", 3)
    assert indices(await take(sub, 4)) == [2, 3, 4, 5]
    assert live.subscriptions == 2
    await pubsub.publish("t", "end", final=True)
    assert indices(await drain(sub)) == [6]
    await pubsub.close()


async def test_publish_appends_to_cache_before_announcing() -> None:
    cache = MemoryStreamCache()
    seen_in_cache: list[int] = []

    class Probe(MemoryLivePubSub):
        async def publish(self, topic: str, message: JSONValue) -> None:
            seen_in_cache.append(len((await cache.read(topic, None, None)).events))
            await super().publish(topic, message)

    pubsub = CachingPubSub(Probe(), cache)
    await publish_many(pubsub, "t", 3)
    assert seen_in_cache == [1, 2, 3]
    await pubsub.close()
