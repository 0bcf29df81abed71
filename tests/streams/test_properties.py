"""Properties over random interleavings of publish, read, disconnect and reconnect.

Every backend must give each subscriber every event exactly once and in order, whatever the
interleaving, including reconnections that race concurrent publishes and subscribers whose
queue overflows. With tight retention, a subscriber may lose events, but only through an
explicit ``CursorExpiredError`` - never a silent gap.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferpipe.streams.errors import CursorExpiredError
from inferpipe.streams.pubsub import JSONValue, PubSub, Retention, StreamEvent, Subscription
from tests.streams.conftest import BackendSpec

CLIENTS = 3
TOPIC = "prop"
SCENARIO_TIMEOUT_S = 20.0

Op = tuple[str, int, int]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 8), st.just(0)),
        st.tuples(st.just("read"), st.integers(0, CLIENTS - 1), st.integers(1, 8)),
        st.tuples(st.just("disconnect"), st.integers(0, CLIENTS - 1), st.just(0)),
        # Reconnect while this many publishes run concurrently with the switch-over.
        st.tuples(st.just("reconnect"), st.integers(0, CLIENTS - 1), st.integers(0, 4)),
    ),
    min_size=3,
    max_size=40,
)


@dataclass
class Client:
    """A consumer that remembers the last index it saw, like a browser with Last-Event-ID."""

    sub: Subscription | None = None
    last_seen: int = 0  # a new client wants everything from the first event
    received: list[StreamEvent] = field(default_factory=list)
    #: Indices at which the client was told, explicitly, that events had expired.
    expired_at: list[int] = field(default_factory=list)

    async def connect(self, pubsub: PubSub) -> None:
        if self.sub is not None:
            await self.sub.close()
        while True:
            try:
                self.sub = await pubsub.subscribe_with_replay(TOPIC, after=self.last_seen)
                return
            except CursorExpiredError as exc:
                self._expired(exc)

    async def read(self, count: int, published: int) -> None:
        if self.sub is None:
            return
        for _ in range(min(count, published - self.last_seen)):
            try:
                event = await anext(self.sub)
            except CursorExpiredError as exc:
                self._expired(exc)
                self.sub = None
                return
            self.received.append(event)
            self.last_seen = event.index

    async def disconnect(self) -> None:
        if self.sub is not None:
            await self.sub.close()
            self.sub = None

    async def finish(self, pubsub: PubSub) -> None:
        """Reconnect as needed and read until the final event."""
        while not (self.received and self.received[-1].final):
            if self.sub is None:
                await self.connect(pubsub)
            await self.read(1, self.last_seen + 1)

    def _expired(self, exc: CursorExpiredError) -> None:
        # The error must be truthful: the next event the client needs is really gone.
        assert exc.oldest_index > self.last_seen + 1
        self.expired_at.append(exc.after)
        self.last_seen = exc.oldest_index - 1  # resume from the oldest retained event


@dataclass
class Scenario:
    pubsub: PubSub
    clients: list[Client]
    published: dict[int, JSONValue] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    async def publish(self) -> None:
        data: JSONValue = {"n": next(self.counter)}
        event = await self.pubsub.publish(TOPIC, data)
        assert event.index not in self.published
        self.published[event.index] = data

    async def apply(self, op: Op) -> None:
        kind, who, amount = op
        if kind == "publish":
            for _ in range(who):
                await self.publish()
        elif kind == "read":
            await self.clients[who].read(amount, len(self.published))
        elif kind == "disconnect":
            await self.clients[who].disconnect()
        else:
            await asyncio.gather(
                self.clients[who].connect(self.pubsub), *(self.publish() for _ in range(amount))
            )

    async def finish(self) -> int:
        final = await self.pubsub.publish(TOPIC, "end", final=True)
        self.published[final.index] = "end"
        for client in self.clients:
            await client.finish(self.pubsub)
        return final.index


async def run(backend: BackendSpec, ops: list[Op], retention: Retention | None) -> Scenario:
    pubsub = await backend.make(retention, max_queue=3)  # tiny queues: overflow happens often
    try:
        scenario = Scenario(pubsub, [Client() for _ in range(CLIENTS)])
        await scenario.clients[0].connect(pubsub)  # one client is there from the start
        async with asyncio.timeout(SCENARIO_TIMEOUT_S):
            for op in ops:
                await scenario.apply(op)
            await scenario.finish()
        return scenario
    finally:
        await backend.close_all()


def examples_for(backend: BackendSpec) -> settings:
    return settings(
        max_examples=40 if backend.uses_redis or backend.uses_store else 100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def test_every_subscriber_sees_every_event_exactly_once_in_order(
    backend_spec: BackendSpec,
) -> None:
    @examples_for(backend_spec)
    @given(ops=OPS)
    def check(ops: list[Op]) -> None:
        scenario = asyncio.run(run(backend_spec, ops, None))
        last = max(scenario.published)
        for client in scenario.clients:
            assert client.expired_at == []
            assert [e.index for e in client.received] == list(range(1, last + 1))
            assert [e.data for e in client.received] == [
                scenario.published[i] for i in range(1, last + 1)
            ]
            assert [e.final for e in client.received].count(True) == 1

    check()


def test_tight_retention_never_leaves_a_silent_gap(backend_spec: BackendSpec) -> None:
    @examples_for(backend_spec)
    @given(ops=OPS)
    def check(ops: list[Op]) -> None:
        scenario = asyncio.run(run(backend_spec, ops, Retention(max_events=4)))
        for client in scenario.clients:
            indices = [e.index for e in client.received]
            assert indices == sorted(set(indices)), "duplicate or out of order"
            jumps = sum(1 for a, b in itertools.pairwise(indices) if b != a + 1)
            # Each discontinuity was announced by an error (a restart may also land
            # exactly where the client was, so errors can outnumber jumps).
            assert jumps <= len(client.expired_at)
            assert client.received[-1].final
            for event in client.received:
                assert event.data == scenario.published[event.index]

    check()
