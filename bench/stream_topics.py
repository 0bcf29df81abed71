"""In-memory stream history at many topics: publish latency and RSS as run topics pile up.

    .venv/bin/python -m bench.stream_topics [--topics 100000] [--events 4] [--window 10000]

Each topic is a run's: ``--events`` lifecycle events of about 300 bytes, and every other run
finishes (a final event) while the rest stay open (parked runs). One ``MemoryPubSub`` with
the default retention, on the wall clock, publishes them all, topic after topic; per window of
``--window`` topics it prints the publish latency (p50, p99, max, in µs), the topics held and
the process's RSS. Flat columns mean the history is bounded and no publish pays for scanning
every topic.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from inferpipe.streams.memory import MemoryPubSub
from inferpipe.streams.pubsub import JSONValue

EVENT: JSONValue = {
    "type": "step.completed",
    "execution": 1,
    "step": {"key": "classify", "attempt": 1, "status": "completed", "output": "x" * 160},
}


def rss_mb() -> float:
    """This process's resident set size, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(topics: int, events: int, window: int) -> None:
    pubsub = MemoryPubSub()
    print(f"{'topics':>8} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>9} {'held':>8} {'RSS MB':>8}")
    latencies: list[float] = []
    for n in range(1, topics + 1):
        topic = f"run/{n:08d}"
        for i in range(events):
            final = i == events - 1 and n % 2 == 0
            start = time.perf_counter()
            await pubsub.publish(topic, EVENT, final=final)
            latencies.append((time.perf_counter() - start) * 1e6)
        if n % window == 0:
            cuts = statistics.quantiles(latencies, n=100)
            held = pubsub._log.topic_count  # type: ignore[attr-defined]
            print(
                f"{n:>8} {cuts[49]:>8.1f} {cuts[98]:>8.1f} {max(latencies):>9.0f}"
                f" {held:>8} {rss_mb():>8.1f}",
                flush=True,
            )
            latencies.clear()
    await pubsub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--window", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args.topics, args.events, args.window))


if __name__ == "__main__":
    main()
