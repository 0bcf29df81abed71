"""One behaviour suite, run against every PubSub backend (see ``conftest.BACKENDS``)."""

from __future__ import annotations

import asyncio

import pytest

from inferpipe.streams.errors import (
    CursorExpiredError,
    FutureCursorError,
    InvalidCursorError,
    InvalidPayloadError,
    InvalidTopicError,
    PubSubClosedError,
    StreamError,
    SubscriberOverflowError,
    TopicFinishedError,
)
from inferpipe.streams.pubsub import PubSub, Retention, StreamEvent, Subscription
from tests.streams.conftest import BackendSpec, FakeClock

# Guards every wait in this file: a broken backend fails the test instead of hanging it.
WAIT_S = 10.0


async def take(sub: Subscription, count: int) -> list[StreamEvent]:
    """Read exactly ``count`` events."""
    async with asyncio.timeout(WAIT_S):
        return [await anext(sub) for _ in range(count)]


async def drain(sub: Subscription) -> list[StreamEvent]:
    """Read until the subscription ends (after the final event)."""
    async with asyncio.timeout(WAIT_S):
        return [event async for event in sub]


async def publish_many(pubsub: PubSub, topic: str, count: int, *, final: bool = False) -> None:
    for n in range(count):
        await pubsub.publish(topic, {"n": n}, final=final and n == count - 1)


def indices(events: list[StreamEvent]) -> list[int]:
    return [event.index for event in events]


async def test_backend_implements_protocol(pubsub: PubSub) -> None:
    assert isinstance(pubsub, PubSub)
    sub = await pubsub.subscribe("t")
    assert isinstance(sub, Subscription)
    await sub.close()


async def test_publish_assigns_per_topic_indices_from_one(pubsub: PubSub) -> None:
    first = await pubsub.publish("run/1", {"token": "Hel", "nested": [1, 2.5, None, True]})
    second = await pubsub.publish("run/1", "lo")
    assert (first.topic, first.index, first.final) == ("run/1", 1, False)
    assert first.data == {"token": "Hel", "nested": [1, 2.5, None, True]}
    assert second.index == 2
    assert second.ts_ms >= first.ts_ms > 0
    assert await pubsub.get_history("run/1") == [first, second]


async def test_late_subscriber_gets_history_then_live(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 3)
    async with await pubsub.subscribe_with_replay("t") as sub:
        assert indices(await take(sub, 3)) == [1, 2, 3]
        await publish_many(pubsub, "t", 2, final=True)
        rest = await drain(sub)
    assert indices(rest) == [4, 5]
    assert rest[-1].final


async def test_reconnect_with_cursor_gets_exactly_what_was_missed(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 5)
    async with await pubsub.subscribe_with_replay("t", after=3) as sub:
        assert sub.cursor == 3
        assert indices(await take(sub, 2)) == [4, 5]
        assert sub.cursor == 5
        await pubsub.publish("t", "live")
        (live,) = await take(sub, 1)
    assert (live.index, live.data) == (6, "live")


async def test_replay_from_zero_and_from_last(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 2)
    async with await pubsub.subscribe_with_replay("t", after=0) as sub:
        assert indices(await take(sub, 2)) == [1, 2]
    async with await pubsub.subscribe_with_replay("t", after=2) as sub:
        await pubsub.publish("t", 3)
        assert indices(await take(sub, 1)) == [3]


async def test_live_subscribe_skips_history(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 3)
    async with await pubsub.subscribe("t") as sub:
        assert sub.cursor == 3
        await publish_many(pubsub, "t", 2, final=True)
        assert indices(await drain(sub)) == [4, 5]


async def test_get_history_after_and_limit(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 6)
    assert indices(await pubsub.get_history("t", after=2)) == [3, 4, 5, 6]
    assert indices(await pubsub.get_history("t", after=2, limit=2)) == [3, 4]
    assert await pubsub.get_history("t", after=6) == []
    assert await pubsub.get_history("t", limit=0) == []
    assert await pubsub.get_history("never-published") == []


async def test_history_larger_than_one_page_replays_in_order(pubsub: PubSub) -> None:
    await asyncio.gather(*(pubsub.publish("t", n) for n in range(1200)))
    await pubsub.publish("t", "end", final=True)
    async with await pubsub.subscribe_with_replay("t", after=7) as sub:
        assert indices(await drain(sub)) == list(range(8, 1202))


async def test_concurrent_subscribers_each_see_every_event_once(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 10)
    subs = [await pubsub.subscribe_with_replay("t", after=after) for after in (None, 0, 5, 10)]
    readers = [asyncio.create_task(drain(sub)) for sub in subs]
    await asyncio.gather(*(pubsub.publish("t", n) for n in range(100)))
    await pubsub.publish("t", "end", final=True)
    results = await asyncio.gather(*readers)
    assert [indices(r) for r in results] == [
        list(range(1, 112)),
        list(range(1, 112)),
        list(range(6, 112)),
        list(range(11, 112)),
    ]


async def test_topics_are_isolated(pubsub: PubSub) -> None:
    sub_a = await pubsub.subscribe_with_replay("a")
    sub_b = await pubsub.subscribe_with_replay("b")
    for n in range(3):
        await pubsub.publish("a", f"a{n}")
        await pubsub.publish("b", f"b{n}")
    await pubsub.publish("a", "end", final=True)
    events_a = await drain(sub_a)
    assert [(e.topic, e.index, e.data) for e in events_a] == [
        ("a", 1, "a0"),
        ("a", 2, "a1"),
        ("a", 3, "a2"),
        ("a", 4, "end"),
    ]
    assert [e.data for e in await take(sub_b, 3)] == ["b0", "b1", "b2"]
    assert indices(await pubsub.get_history("b")) == [1, 2, 3]
    await sub_b.close()


async def test_retention_by_count_and_cursor_too_old(backend: BackendSpec) -> None:
    pubsub = await backend.make(Retention(max_events=5))
    await publish_many(pubsub, "t", 10)
    assert indices(await pubsub.get_history("t")) == [6, 7, 8, 9, 10]
    assert indices(await pubsub.get_history("t", after=5)) == [6, 7, 8, 9, 10]
    with pytest.raises(CursorExpiredError) as caught:
        await pubsub.get_history("t", after=4)
    assert (caught.value.topic, caught.value.after, caught.value.oldest_index) == ("t", 4, 6)
    assert caught.value.code == "cursor_expired"
    assert not isinstance(caught.value, SubscriberOverflowError)
    with pytest.raises(CursorExpiredError):
        await pubsub.subscribe_with_replay("t", after=0)
    async with await pubsub.subscribe_with_replay("t") as sub:  # after=None: all retained
        assert indices(await take(sub, 5)) == [6, 7, 8, 9, 10]


async def test_retention_by_age(backend: BackendSpec) -> None:
    clock = FakeClock()
    pubsub = await backend.make(Retention(max_age_ms=1000), clock=clock)
    await publish_many(pubsub, "t", 3)
    clock.advance(600)
    await publish_many(pubsub, "t", 2)
    clock.advance(500)  # the first three are now 1100 ms old
    assert indices(await pubsub.get_history("t")) == [4, 5]
    with pytest.raises(CursorExpiredError) as caught:
        await pubsub.get_history("t", after=2)
    assert caught.value.oldest_index == 4
    assert indices(await pubsub.get_history("t", after=3)) == [4, 5]
    clock.advance(1000)  # everything expired, the index counter remains
    assert await pubsub.get_history("t", after=5) == []
    with pytest.raises(CursorExpiredError) as caught:
        await pubsub.get_history("t", after=4)
    assert caught.value.oldest_index == 6
    assert (await pubsub.publish("t", "again")).index == 6


async def test_future_cursor_is_rejected(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 3)
    with pytest.raises(FutureCursorError) as caught:
        await pubsub.get_history("t", after=4)
    assert (caught.value.after, caught.value.last_index, caught.value.code) == (
        4,
        3,
        "cursor_ahead",
    )
    with pytest.raises(FutureCursorError):
        await pubsub.subscribe_with_replay("t", after=10)
    with pytest.raises(FutureCursorError) as caught:
        await pubsub.subscribe_with_replay("unknown-topic", after=1)
    assert caught.value.last_index == 0


async def test_bad_input_raises_clear_errors(pubsub: PubSub) -> None:
    with pytest.raises(InvalidCursorError):
        await pubsub.get_history("t", after=-1)
    with pytest.raises(InvalidCursorError):
        await pubsub.subscribe_with_replay("t", after=-3)
    with pytest.raises(InvalidTopicError):
        await pubsub.publish("", "x")
    with pytest.raises(InvalidTopicError):
        await pubsub.subscribe("x" * 600)
    with pytest.raises(InvalidPayloadError):
        await pubsub.publish("t", {"not json": object()})  # type: ignore[dict-item]
    with pytest.raises(InvalidPayloadError, match="limit"):
        await pubsub.publish("t", "x" * 2_000_000)
    with pytest.raises(ValueError, match="limit"):
        await pubsub.get_history("t", limit=-1)
    assert await pubsub.get_history("t") == []  # nothing was stored by the failures


async def test_final_event_ends_every_subscription(pubsub: PubSub) -> None:
    live = await pubsub.subscribe("t")
    replay = await pubsub.subscribe_with_replay("t")
    await publish_many(pubsub, "t", 3, final=True)
    assert indices(await drain(live)) == [1, 2, 3]
    assert indices(await drain(replay)) == [1, 2, 3]
    with pytest.raises(TopicFinishedError) as caught:
        await pubsub.publish("t", "late")
    assert caught.value.code == "topic_finished"
    assert await drain(await pubsub.subscribe("t")) == []  # nothing more will ever come
    assert await drain(await pubsub.subscribe_with_replay("t", after=3)) == []
    assert indices(await drain(await pubsub.subscribe_with_replay("t", after=1))) == [2, 3]


async def test_clear_topic_keeps_indices_unique(pubsub: PubSub) -> None:
    await publish_many(pubsub, "t", 3, final=True)
    await pubsub.clear_topic("t")
    assert await pubsub.get_history("t") == []
    assert (await pubsub.publish("t", "new run")).index == 4  # final mark gone, index kept
    with pytest.raises(CursorExpiredError):
        await pubsub.get_history("t", after=2)
    assert indices(await pubsub.get_history("t", after=3)) == [4]
    await pubsub.clear_topic("never-published")


async def test_clear_topic_under_live_subscriber(pubsub: PubSub) -> None:
    async with await pubsub.subscribe("t") as sub:
        await pubsub.publish("t", 1)
        assert indices(await take(sub, 1)) == [1]
        await pubsub.clear_topic("t")
        await pubsub.publish("t", 2)
        assert [(e.index, e.data) for e in await take(sub, 1)] == [(2, 2)]


async def test_slow_subscriber_resumes_from_history(backend: BackendSpec) -> None:
    pubsub = await backend.make(max_queue=4)
    async with await pubsub.subscribe("t") as sub:
        await publish_many(pubsub, "t", 50)
        assert indices(await take(sub, 50)) == list(range(1, 51))
        await pubsub.publish("t", "after")
        assert indices(await take(sub, 1)) == [51]


async def test_slow_subscriber_gets_overflow_error_not_a_gap(backend: BackendSpec) -> None:
    pubsub = await backend.make(Retention(max_events=10), max_queue=4)
    sub = await pubsub.subscribe_with_replay("t", after=0)
    await publish_many(pubsub, "t", 50)
    with pytest.raises(SubscriberOverflowError) as caught:
        await take(sub, 1)
    error = caught.value
    assert isinstance(error, CursorExpiredError)
    assert (error.topic, error.after, error.oldest_index, error.code) == (
        "t",
        0,
        41,
        "subscriber_overflow",
    )
    with pytest.raises(StopAsyncIteration):
        await anext(sub)  # an errored subscription is closed


async def test_close_wakes_a_waiting_reader(pubsub: PubSub) -> None:
    sub = await pubsub.subscribe("t")
    reader = asyncio.create_task(drain(sub))
    await asyncio.sleep(0)  # let the reader start waiting; the outcome is the same if not
    await sub.close()
    assert await reader == []
    await pubsub.publish("t", "unseen")


async def test_closing_the_pubsub_ends_subscriptions(backend: BackendSpec) -> None:
    pubsub = await backend.make()
    sub = await pubsub.subscribe_with_replay("t")
    reader = asyncio.create_task(drain(sub))
    await pubsub.publish("t", 1)
    await asyncio.sleep(0)
    await pubsub.close()
    assert indices(await reader) in ([], [1])
    with pytest.raises(PubSubClosedError) as caught:
        await pubsub.publish("t", 2)
    assert isinstance(caught.value, StreamError)
    with pytest.raises(PubSubClosedError):
        await pubsub.subscribe("t")
    await pubsub.close()  # idempotent


async def test_published_data_cannot_be_mutated_afterwards(pubsub: PubSub) -> None:
    data = {"tokens": ["a"]}
    await pubsub.publish("t", data)
    data["tokens"].append("b")
    assert (await pubsub.get_history("t"))[0].data == {"tokens": ["a"]}
