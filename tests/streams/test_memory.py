"""In-process backends: topic expiry on a virtual clock, bounded queues, forgotten subscribers."""

from __future__ import annotations

import asyncio
import gc
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpipe.streams.caching import MemoryStreamCache
from inferpipe.streams.errors import (
    FutureCursorError,
    MessagesLostError,
    PubSubClosedError,
    TopicFinishedError,
)
from inferpipe.streams.memory import MemoryLivePubSub, MemoryPubSub
from inferpipe.streams.pubsub import Retention
from tests.streams.conftest import FakeClock
from tests.streams.test_conformance import drain, indices, publish_many, take


async def test_finished_topic_expires_after_its_ttl() -> None:
    clock = FakeClock()
    pubsub = MemoryPubSub(Retention(finished_ttl_ms=1000), clock_ms=clock)
    await publish_many(pubsub, "t", 3, final=True)
    clock.advance(999)
    assert indices(await pubsub.get_history("t")) == [1, 2, 3]
    clock.advance(1)
    assert await pubsub.get_history("t") == []
    with pytest.raises(FutureCursorError):  # the cursor belongs to a topic that is gone
        await pubsub.get_history("t", after=3)
    assert (await pubsub.publish("t", "new")).index == 1


async def test_idle_topic_expires_unless_someone_listens() -> None:
    clock = FakeClock()
    pubsub = MemoryPubSub(Retention(idle_ttl_ms=1000), clock_ms=clock)
    await pubsub.publish("idle", 1)
    await pubsub.publish("watched", 1)
    sub = await pubsub.subscribe("watched")
    clock.advance(5000)
    assert await pubsub.get_history("idle") == []
    assert indices(await pubsub.get_history("watched")) == [1]
    await pubsub.publish("watched", 2)  # indices continue: the subscriber's cursor stays valid
    assert indices(await take(sub, 1)) == [2]
    await sub.close()
    clock.advance(5000)
    assert await pubsub.get_history("watched") == []


async def test_sweep_drops_expired_topics_without_reads() -> None:
    clock = FakeClock()
    cache = MemoryStreamCache(Retention(idle_ttl_ms=1000), clock_ms=clock)
    for n in range(50):
        await cache.append(f"topic-{n}", n)
    clock.advance(2000)
    await cache.append("fresh", 0)
    assert cache.topic_count == 1


async def test_timestamps_never_go_backwards_within_a_topic() -> None:
    clock = FakeClock()
    pubsub = MemoryPubSub(clock_ms=clock)
    first = await pubsub.publish("t", 1)
    clock.advance(-500)  # wall clock stepped back (NTP)
    second = await pubsub.publish("t", 2)
    assert second.ts_ms == first.ts_ms


async def test_forgotten_subscription_stops_costing_fan_out() -> None:
    pubsub = MemoryPubSub()
    await pubsub.subscribe("t")  # dropped without close()
    gc.collect()
    await pubsub.publish("t", 1)
    assert "t" not in pubsub._feeds


async def test_closed_subscription_is_unregistered() -> None:
    pubsub = MemoryPubSub()
    sub = await pubsub.subscribe("t")
    await sub.close()
    await pubsub.publish("t", 1)
    assert "t" not in pubsub._feeds


async def test_live_pubsub_reports_lost_messages_then_continues() -> None:
    live = MemoryLivePubSub(max_queue=2)
    sub = await live.subscribe("t")
    for n in range(5):
        await live.publish("t", n)
    with pytest.raises(MessagesLostError) as caught:
        await anext(sub)
    assert caught.value.code == "messages_lost"
    assert [await anext(sub), await anext(sub)] == [3, 4]  # queued after the overflow
    await live.publish("t", "next")
    assert await anext(sub) == "next"
    await live.close()
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    with pytest.raises(PubSubClosedError):
        await live.publish("t", 1)


async def test_live_pubsub_delivers_in_order_to_each_subscriber() -> None:
    live = MemoryLivePubSub()
    subs = [await live.subscribe("t") for _ in range(3)]
    other = await live.subscribe("other")
    for n in range(4):
        await live.publish("t", n)
    for sub in subs:
        assert [await anext(sub) for _ in range(4)] == [0, 1, 2, 3]
        await sub.close()
    await live.publish("t", "nobody listens")
    await other.close()


async def test_constructor_rejects_an_empty_queue() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        MemoryPubSub(max_queue=0)
    with pytest.raises(ValueError, match="max_queue"):
        MemoryLivePubSub(max_queue=0)


async def test_cache_reports_finished_topics() -> None:
    cache = MemoryStreamCache()
    await cache.append("t", 1, final=True)
    page = await cache.read("t", None, None)
    assert (page.last_index, page.finished, indices(page.events)) == (1, True, [1])
    with pytest.raises(TopicFinishedError):
        await cache.append("t", 2)
    await cache.close()
    with pytest.raises(PubSubClosedError):
        await cache.read("t", None, None)


async def test_pubsub_as_context_manager_closes() -> None:
    async with MemoryPubSub() as pubsub:
        sub = await pubsub.subscribe_with_replay("t")
        await pubsub.publish("t", 1, final=True)
    assert indices(await drain(sub)) in ([], [1])
    with pytest.raises(PubSubClosedError):
        await pubsub.get_history("t")


async def test_topics_over_the_cap_go_oldest_finished_first_never_watched_ones() -> None:
    pubsub = MemoryPubSub(max_topics=3)
    watched = await pubsub.subscribe("watched")
    await pubsub.publish("watched", 1)
    await pubsub.publish("open", 1)
    await pubsub.publish("done", 1, final=True)
    await pubsub.publish("new", 1)  # over the cap: the finished topic goes
    assert await pubsub.get_history("done") == []
    await pubsub.publish("newer", 1)  # no finished one left: the longest idle goes
    assert await pubsub.get_history("open") == []
    await pubsub.publish("newest", 1)  # "watched" is older, but has a subscriber
    assert await pubsub.get_history("new") == []
    assert indices(await pubsub.get_history("watched")) == [1]
    assert indices(await take(watched, 1)) == [1]
    await pubsub.close()


class _HistoryModel:
    """What a bounded history must hold, computed the slow way: full scans, no queues."""

    def __init__(self, retention: Retention, max_topics: int) -> None:
        self.retention = retention
        self.max_topics = max_topics
        self.topics: dict[str, dict[str, Any]] = {}
        self.stamps = itertools.count()

    def _due(self, t: dict[str, Any], now_ms: int) -> bool:
        r = self.retention
        ttl = r.finished_ttl_ms if t["finished"] else r.idle_ttl_ms
        return ttl is not None and now_ms >= t["ts"] + ttl

    def read(self, topic: str, now_ms: int) -> tuple[int, bool, list[int]]:
        t = self.topics.get(topic)
        if t is not None and self._due(t, now_ms):
            del self.topics[topic]
            t = None
        return (0, False, []) if t is None else (t["last"], t["finished"], list(t["events"]))

    def publish(self, topic: str, final: bool, now_ms: int) -> bool:
        for name in [n for n, t in self.topics.items() if self._due(t, now_ms)]:
            del self.topics[name]
        t = self.topics.setdefault(topic, {"last": 0, "ts": 0, "finished": False, "events": []})
        if t["finished"]:
            return False
        t.update(last=t["last"] + 1, ts=max(now_ms, t["ts"]), finished=final)
        t["events"].append(t["last"])
        t["stamp"] = next(self.stamps)
        while len(self.topics) > self.max_topics:
            others = [(not t["finished"], t["stamp"], n) for n, t in self.topics.items()]
            victim = min(o for o in others if o[2] != topic)
            del self.topics[victim[2]]
        return True

    def clear(self, topic: str, now_ms: int) -> None:
        self.read(topic, now_ms)  # an expired topic is dropped, not cleared
        if (t := self.topics.get(topic)) is not None:
            t.update(events=[], finished=False, ts=max(now_ms, t["ts"]))
            t["stamp"] = next(self.stamps)


HISTORY_OPS = st.lists(
    st.tuples(
        st.sampled_from(["publish", "final", "clear", "advance"]),
        st.integers(0, 7),
        st.integers(0, 1500),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=HISTORY_OPS, max_topics=st.integers(1, 5))
def test_bounded_history_matches_a_full_scan_model(
    ops: list[tuple[str, int, int]], max_topics: int
) -> None:
    retention = Retention(max_age_ms=None, max_events=None, finished_ttl_ms=500, idle_ttl_ms=1000)
    clock = FakeClock()
    cache = MemoryStreamCache(retention, clock_ms=clock, max_topics=max_topics)
    model = _HistoryModel(retention, max_topics)
    for kind, n, ms in ops:
        topic = f"t{n}"
        if kind == "advance":
            clock.advance(ms)
        elif kind == "clear":
            asyncio.run(cache.clear(topic))
            model.clear(topic, clock.now_ms)
        elif model.publish(topic, kind == "final", clock.now_ms):
            cache.append_now(topic, n, final=kind == "final")
        else:
            with pytest.raises(TopicFinishedError):
                cache.append_now(topic, n)
        assert cache.topic_count <= max_topics
        for m in range(8):
            page = cache.read_now(f"t{m}", None, None)
            found = (page.last_index, page.finished, indices(page.events))
            assert found == model.read(f"t{m}", clock.now_ms)
