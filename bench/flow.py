"""Flow control figures on the embedded SQLite store (durable commits: WAL + synchronous=FULL).

    .venv/bin/python -m bench.flow [--events 10000] [--keys 100] [--per-key 2]

Prints:
- end to end: N events over K keys, one worker (100 slots), a per-key concurrency limit, each
  run holding its slot for ~2 ms of simulated I/O: throughput, and the spread of wait times
  (start - creation) across keys; the same workload without flow control for comparison;
  then a skewed load (half the events on one hot key, sent first): the wait of the other
  keys with and without the per-key limit (fairness);
- intake: events accepted per second with and without flow control (fair-queue tags);
- claims: the cost of one claim (10 runs) with a 10 000-run backlog, with flow control
  (concurrency keys, fair order) and without, and the cost of a claim that finds every
  key full.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import inferpipe as ip
from inferpipe.core.records import NewRun, RunFlow, RunStatus
from inferpipe.engine.flow import Concurrency
from inferpipe.store.base import Outcome, RunFilter
from inferpipe.store.sqlite import SQLiteStore

SEND_BATCH = 200
WORK_S = 0.002


def build_app(per_key: int | None) -> ip.App:
    app = ip.App("bench")
    limit = Concurrency(per_key, key="event.data.k") if per_key else None

    @app.function(id="job", trigger=ip.on_event("job"), concurrency=limit)
    async def job(ctx: ip.Context) -> None:
        await asyncio.sleep(WORK_S)  # the run holds its slot meanwhile

    return app


def workload(events: int, keys: int, *, skewed: bool) -> list[ip.Event]:
    if not skewed:
        return [ip.Event("job", {"k": f"k{i % keys:03d}"}) for i in range(events)]
    hot = [ip.Event("job", {"k": "hot"}) for _ in range(events // 2)]
    rest = events - len(hot)
    return hot + [ip.Event("job", {"k": f"k{i % (keys - 1):03d}"}) for i in range(rest)]


async def end_to_end(
    folder: Path, events: int, keys: int, per_key: int | None, *, skewed: bool = False
) -> dict[str, float]:
    app = build_app(per_key)
    await app.start(store=SQLiteStore(folder / f"e2e-{per_key}-{skewed}.db"))
    worker = app.worker(concurrency=100)
    task = asyncio.create_task(worker.run())
    batch = workload(events, keys, skewed=skewed)
    t0 = time.perf_counter()
    for i in range(0, events, SEND_BATCH):
        await app.send(batch[i : i + SEND_BATCH])
    send_s = time.perf_counter() - t0
    while await _done(app) < events:
        await asyncio.sleep(0.05)
    total_s = time.perf_counter() - t0
    worker.notify_shutdown()
    await task
    waits = await _waits_by_key(app)
    await app.close()
    hot = waits.pop("hot", [0.0])
    per_key_mean = [statistics.fmean(w) for w in waits.values()]
    every = [x for w in waits.values() for x in w]
    return {
        "hot_mean_ms": statistics.fmean(hot),
        "send_s": send_s,
        "total_s": total_s,
        "runs_per_s": events / total_s,
        "wait_p50_ms": statistics.median(every),
        "wait_p99_ms": statistics.quantiles(every, n=100)[98],
        "key_mean_min_ms": min(per_key_mean),
        "key_mean_max_ms": max(per_key_mean),
        "key_mean_cv": statistics.pstdev(per_key_mean) / statistics.fmean(per_key_mean),
    }


async def _done(app: ip.App) -> int:
    page = await app.list_runs(RunFilter(status=ip.RunStatus.COMPLETED), limit=100_000)
    return len(page.items)


async def _waits_by_key(app: ip.App) -> dict[str, list[float]]:
    waits: dict[str, list[float]] = defaultdict(list)
    page = await app.list_runs(RunFilter(function_id="job"), limit=100_000)
    for run in page.items:
        assert run.started_at_ms is not None
        waits[run.events[0]["data"]["k"]].append(run.started_at_ms - run.created_at_ms)
    return waits


def backlog(n: int, keys: int, flow: bool, per_key: int) -> list[NewRun]:
    runs = []
    for i in range(n):
        key = f"fn:job:k={i % keys}"
        plan = RunFlow(concurrency=((key, per_key),), fair_key=key) if flow else None
        runs.append(NewRun(f"run{i:07d}", "job", [], [], 0, flow=plan))
    return runs


async def claim_cost(
    folder: Path, flow: bool, n: int = 10_000, keys: int = 100
) -> dict[str, float]:
    store = SQLiteStore(folder / f"claims-{flow}.db")
    await store.open()
    runs = backlog(n, keys, flow, per_key=2)
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        await store.create_runs(runs[i : i + 500], 1)
    insert_us = (time.perf_counter() - t0) / n * 1e6
    times = []
    for _ in range(200):  # drain 2 000 runs, 10 per claim, finishing each claim's runs
        t = time.perf_counter()
        claimed = await store.claim("w", ["job"], 10, 2, 60_000)
        times.append(time.perf_counter() - t)
        for c in claimed:
            await store.finish(c.lease, Outcome(RunStatus.COMPLETED), [], 2)
    full_ms = 0.0
    if flow:  # hold every slot: 100 keys x 2; then a claim finds nothing to take
        while await store.claim("w", ["job"], 50, 3, 60_000):
            pass
        t = time.perf_counter()
        for _ in range(20):
            assert await store.claim("w", ["job"], 10, 3, 60_000) == []
        full_ms = (time.perf_counter() - t) / 20 * 1000
    await store.close()
    return {
        "insert_us": insert_us,
        "claim_ms": statistics.fmean(times) * 1000,
        "claim_p99_ms": statistics.quantiles(times, n=100)[98] * 1000,
        "full_claim_ms": full_ms,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--per-key", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferpipe-bench-") as tmp:
        folder = Path(tmp)
        for label, per_key in (("per-key limit", args.per_key), ("no flow control", None)):
            r = await end_to_end(folder, args.events, args.keys, per_key)
            print(
                f"{label:>16}: {args.events} events / {args.keys} keys in {r['total_s']:.2f} s"
                f" = {r['runs_per_s']:.0f} runs/s (intake {args.events / r['send_s']:.0f}"
                f" events/s) · wait p50 {r['wait_p50_ms']:.0f} ms, p99 {r['wait_p99_ms']:.0f}"
                f" ms · per-key mean wait {r['key_mean_min_ms']:.0f}..{r['key_mean_max_ms']:.0f}"
                f" ms (cv {r['key_mean_cv']:.3f})"
            )
        for label, per_key in (("skewed, limit", args.per_key), ("skewed, none", None)):
            r = await end_to_end(folder, args.events, args.keys, per_key, skewed=True)
            print(
                f"{label:>16}: half the events on one hot key, sent first · other keys'"
                f" mean wait {r['key_mean_min_ms']:.0f}..{r['key_mean_max_ms']:.0f} ms"
                f" (p50 {r['wait_p50_ms']:.0f} ms) · hot key {r['hot_mean_ms']:.0f} ms"
                f" · {r['runs_per_s']:.0f} runs/s"
            )
        for flow in (True, False):
            c = await claim_cost(folder, flow)
            label = "claim, flow" if flow else "claim, none"
            full = f" · all keys full: {c['full_claim_ms']:.2f} ms" if flow else ""
            print(
                f"{label:>16}: 10 000 backlog · claim of 10: mean {c['claim_ms']:.2f} ms,"
                f" p99 {c['claim_p99_ms']:.2f} ms · insert {c['insert_us']:.0f} us/run{full}"
            )


if __name__ == "__main__":
    asyncio.run(main())
