"""Stream figures for every PubSub backend (Redis: a local redis-server on loopback).

    .venv/bin/python -m bench.streams [--events 20000] [--samples 2000] [--replay 10000]
                                      [--redis-url redis://...] [--postgres-url postgresql://...]
                                      [--only store]

Prints, per backend:
- publish throughput: one publisher awaiting each publish, and 64 publishes in flight, with one
  live subscriber draining (the figure counts until the subscriber has everything);
- publish -> deliver latency, p50 / p99: one event at a time, from the call to ``publish`` to
  the subscriber holding the event;
- replay: time for a reconnecting subscriber (``subscribe_with_replay(after=0)``) to receive a
  10 000-event history, and for one ``get_history`` call returning it.

Store backends (``StorePubSub``) appear twice: with the subscriber in the publishing process
(woken at once), and "x-proc", with the subscriber on its own store (its own SQLite connection
thread or PostgreSQL pool, as another process would have) so that only what crosses processes
delivers: the SQLite poll or PostgreSQL NOTIFY. The SQLite file is in a temporary folder on the
local disk; every publish is a durable commit.

Without ``--redis-url`` a throwaway redis-server is started, and without ``--postgres-url`` a
throwaway PostgreSQL cluster (see tests/servers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import start_postgres, start_redis

from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.streams.caching import CachingPubSub, MemoryStreamCache
from inferpipe.streams.memory import MemoryLivePubSub, MemoryPubSub
from inferpipe.streams.pubsub import JSONValue, PubSub, Retention, Subscription
from inferpipe.streams.redis import RedisPubSub, RedisStreamCache
from inferpipe.streams.store import StorePubSub

IN_FLIGHT = 64
PAYLOAD: JSONValue = {"token": "hello", "run_id": "01J0000000000000000000000", "step": 3}


@dataclass
class Figures:
    backend: str
    sequential_per_s: float
    concurrent_per_s: float
    p50_ms: float
    p99_ms: float
    replay_ms: float
    history_ms: float


async def _drain(sub: Subscription, count: int) -> None:
    received = 0
    async for _ in sub:
        received += 1
        if received == count:
            return


@dataclass
class Pair:
    """Where events are published, and where they are subscribed to (often the same pubsub)."""

    publisher: PubSub
    subscriber: PubSub
    stores: list[Store]

    async def close(self) -> None:
        await self.subscriber.close()
        if self.publisher is not self.subscriber:
            await self.publisher.close()
        for store in self.stores:
            await store.close()


async def publish_throughput(pair: Pair, topic: str, events: int, in_flight: int) -> float:
    """Events per second until one live subscriber has received them all."""
    pubsub = pair.publisher
    sub = await pair.subscriber.subscribe(topic)
    reader = asyncio.create_task(_drain(sub, events))
    started = time.perf_counter()
    if in_flight == 1:
        for _ in range(events):
            await pubsub.publish(topic, PAYLOAD)
    else:
        for first in range(0, events, in_flight):
            batch = min(in_flight, events - first)
            await asyncio.gather(*(pubsub.publish(topic, PAYLOAD) for _ in range(batch)))
    await reader
    elapsed = time.perf_counter() - started
    await sub.close()
    return events / elapsed


async def delivery_latency_ms(pair: Pair, topic: str, samples: int) -> list[float]:
    """Publish -> deliver latency, one event in flight at a time."""
    pubsub = pair.publisher
    sub = await pair.subscriber.subscribe(topic)
    latencies: list[float] = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        receive = asyncio.ensure_future(anext(sub))
        await pubsub.publish(topic, PAYLOAD)
        await receive
        latencies.append((time.perf_counter_ns() - started) / 1e6)
    await sub.close()
    return latencies


async def replay_ms(pair: Pair, topic: str, history: int) -> tuple[float, float]:
    """Time to replay a ``history``-event topic to a reconnecting subscriber, and to read it."""
    for first in range(0, history, IN_FLIGHT):
        batch = min(IN_FLIGHT, history - first)
        await asyncio.gather(*(pair.publisher.publish(topic, PAYLOAD) for _ in range(batch)))
    pubsub = pair.subscriber
    started = time.perf_counter()
    async with await pubsub.subscribe_with_replay(topic, after=0) as sub:
        await _drain(sub, history)
    replay = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    events = await pubsub.get_history(topic, after=0)
    read = (time.perf_counter() - started) * 1000
    assert len(events) == history, len(events)
    return replay, read


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(name: str, make: Callable[[], Awaitable[Pair]], args: Namespace) -> Figures:
    pair = await make()
    run = f"{time.time_ns()}:"  # fresh topics, even in a database kept between backends
    try:
        sequential = await publish_throughput(pair, run + "seq", args.events, 1)
        concurrent = await publish_throughput(pair, run + "conc", args.events, IN_FLIGHT)
        latencies = await delivery_latency_ms(pair, run + "lat", args.samples)
        replay, history = await replay_ms(pair, run + "replay", args.replay)
    finally:
        await pair.close()
    return Figures(
        name,
        sequential,
        concurrent,
        statistics.median(latencies),
        percentile(latencies, 0.99),
        replay,
        history,
    )


class Namespace(argparse.Namespace):
    events: int
    samples: int
    replay: int
    redis_url: str | None
    postgres_url: str | None
    only: str | None


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory() as workdir:
        started_url, stop = start_redis(Path(workdir))
        try:
            yield started_url
        finally:
            stop()


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    # Not TemporaryDirectory: the folder is handed to the postgres user, and removed by stop().
    started_url, stop, _ = start_postgres(Path(tempfile.mkdtemp(prefix="inferpipe-bench-pg-")))
    try:
        yield started_url
    finally:
        stop()


def one(pubsub: PubSub) -> Pair:
    return Pair(pubsub, pubsub, [])


async def store_pair(
    open_store: Callable[[], Store], retention: Retention, *, cross_process: bool
) -> Pair:
    """Publisher and subscriber on one store, or each on its own (as two processes)."""
    stores = [open_store() for _ in range(2 if cross_process else 1)]
    for store in stores:
        await store.open()
    publisher = StorePubSub.for_store(stores[0], retention)
    subscriber = StorePubSub.for_store(stores[-1], retention) if cross_process else publisher
    return Pair(publisher, subscriber, stores)


async def run(args: Namespace, redis_url: str, postgres_url: str, workdir: Path) -> list[Figures]:
    retention = Retention(max_events=max(args.replay, 10_000) * 2)
    prefix = f"bench:{time.time_ns()}:"

    async def memory() -> Pair:
        return one(MemoryPubSub(retention))

    async def caching_memory() -> Pair:
        return one(CachingPubSub(MemoryLivePubSub(), MemoryStreamCache(retention)))

    async def redis() -> Pair:
        return one(RedisPubSub.from_url(redis_url, retention, key_prefix=prefix + "r:"))

    async def caching_redis() -> Pair:
        cache = RedisStreamCache.from_url(redis_url, retention, key_prefix=prefix + "c:")
        return one(CachingPubSub(MemoryLivePubSub(), cache))

    def store_backend(kind: str, cross_process: bool) -> Callable[[], Awaitable[Pair]]:
        path = workdir / f"streams-{kind}-{cross_process}.db"

        def open_store() -> Store:
            return SQLiteStore(path) if kind == "sqlite" else PostgresStore(postgres_url)

        async def make() -> Pair:
            return await store_pair(open_store, retention, cross_process=cross_process)

        return make

    backends = [
        ("memory", memory),
        ("caching(memory)", caching_memory),
        ("redis", redis),
        ("caching(redis)", caching_redis),
        ("store(sqlite)", store_backend("sqlite", False)),
        ("store(sqlite) x-proc", store_backend("sqlite", True)),
        ("store(postgres)", store_backend("postgres", False)),
        ("store(pg) x-proc", store_backend("postgres", True)),
    ]
    chosen = [(n, m) for n, m in backends if args.only is None or args.only in n]
    return [await measure(name, make, args) for name, make in chosen]


def print_table(rows: list[Figures], args: Namespace) -> None:
    header = (
        f"{'backend':<21} {'publish/s':>10} {f'x{IN_FLIGHT} in flight':>14} "
        f"{'p50 ms':>8} {'p99 ms':>8} {f'replay {args.replay}':>13} {'get_history':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.backend:<21} {r.sequential_per_s:>10,.0f} {r.concurrent_per_s:>14,.0f} "
            f"{r.p50_ms:>8.3f} {r.p99_ms:>8.3f} {r.replay_ms:>10.1f} ms {r.history_ms:>9.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--replay", type=int, default=10_000)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--only", default=None, help="only backends whose name contains this")
    args = parser.parse_args(namespace=Namespace())
    with (
        redis_server(args.redis_url) as url,
        postgres_server(args.postgres_url) as pg_url,
        tempfile.TemporaryDirectory() as workdir,
    ):
        rows = asyncio.run(run(args, url, pg_url, Path(workdir)))
    print_table(rows, args)


if __name__ == "__main__":
    main()
