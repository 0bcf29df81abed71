"""Stream figures for every PubSub backend (Redis: a local redis-server on loopback).

    .venv/bin/python -m bench.streams [--events 20000] [--samples 2000] [--replay 10000]
                                      [--redis-url redis://...]

Prints, per backend:
- publish throughput: one publisher awaiting each publish, and 64 publishes in flight, with one
  live subscriber draining (the figure counts until the subscriber has everything);
- publish -> deliver latency, p50 / p99: one event at a time, from the call to ``publish`` to
  the subscriber holding the event;
- replay: time for a reconnecting subscriber (``subscribe_with_replay(after=0)``) to receive a
  10 000-event history, and for one ``get_history`` call returning it.

Without ``--redis-url`` a throwaway redis-server is started (see tests/servers.py).
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

from tests.servers import start_redis

from inferpipe.streams.caching import CachingPubSub, MemoryStreamCache
from inferpipe.streams.memory import MemoryLivePubSub, MemoryPubSub
from inferpipe.streams.pubsub import JSONValue, PubSub, Retention, Subscription
from inferpipe.streams.redis import RedisPubSub, RedisStreamCache

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


async def publish_throughput(pubsub: PubSub, topic: str, events: int, in_flight: int) -> float:
    """Events per second until one live subscriber has received them all."""
    sub = await pubsub.subscribe(topic)
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


async def delivery_latency_ms(pubsub: PubSub, topic: str, samples: int) -> list[float]:
    """Publish -> deliver latency, one event in flight at a time."""
    sub = await pubsub.subscribe(topic)
    latencies: list[float] = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        receive = asyncio.ensure_future(anext(sub))
        await pubsub.publish(topic, PAYLOAD)
        await receive
        latencies.append((time.perf_counter_ns() - started) / 1e6)
    await sub.close()
    return latencies


async def replay_ms(pubsub: PubSub, topic: str, history: int) -> tuple[float, float]:
    """Time to replay a ``history``-event topic to a reconnecting subscriber, and to read it."""
    for first in range(0, history, IN_FLIGHT):
        batch = min(IN_FLIGHT, history - first)
        await asyncio.gather(*(pubsub.publish(topic, PAYLOAD) for _ in range(batch)))
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


async def measure(name: str, make: Callable[[], Awaitable[PubSub]], args: Namespace) -> Figures:
    pubsub = await make()
    try:
        sequential = await publish_throughput(pubsub, "seq", args.events, 1)
        concurrent = await publish_throughput(pubsub, "conc", args.events, IN_FLIGHT)
        latencies = await delivery_latency_ms(pubsub, "lat", args.samples)
        replay, history = await replay_ms(pubsub, "replay", args.replay)
    finally:
        await pubsub.close()
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


async def run(args: Namespace, redis_url: str) -> list[Figures]:
    retention = Retention(max_events=max(args.replay, 10_000) * 2)
    prefix = f"bench:{time.time_ns()}:"

    async def memory() -> PubSub:
        return MemoryPubSub(retention)

    async def caching_memory() -> PubSub:
        return CachingPubSub(MemoryLivePubSub(), MemoryStreamCache(retention))

    async def redis() -> PubSub:
        return RedisPubSub.from_url(redis_url, retention, key_prefix=prefix + "r:")

    async def caching_redis() -> PubSub:
        cache = RedisStreamCache.from_url(redis_url, retention, key_prefix=prefix + "c:")
        return CachingPubSub(MemoryLivePubSub(), cache)

    backends = [
        ("memory", memory),
        ("caching(memory)", caching_memory),
        ("redis", redis),
        ("caching(redis)", caching_redis),
    ]
    return [await measure(name, make, args) for name, make in backends]


def print_table(rows: list[Figures], args: Namespace) -> None:
    header = (
        f"{'backend':<16} {'publish/s':>10} {f'x{IN_FLIGHT} in flight':>14} "
        f"{'p50 ms':>8} {'p99 ms':>8} {f'replay {args.replay}':>13} {'get_history':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.backend:<16} {r.sequential_per_s:>10,.0f} {r.concurrent_per_s:>14,.0f} "
            f"{r.p50_ms:>8.3f} {r.p99_ms:>8.3f} {r.replay_ms:>10.1f} ms {r.history_ms:>9.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--replay", type=int, default=10_000)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args(namespace=Namespace())
    with redis_server(args.redis_url) as url:
        rows = asyncio.run(run(args, url))
    print_table(rows, args)


if __name__ == "__main__":
    main()
