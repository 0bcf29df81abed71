"""Large payloads on the embedded SQLite store, kept inline vs offloaded to the blob store.

    .venv/bin/python -m bench.blobs [--mb 20] [--repeat 5] [--outputs 100]

Payloads are hex of random bytes (like an encoded image: gzip gets them to about half), so the
compression does not flatter the figures. Prints, for a step returning a `--mb` MB string: the
journal row's size and the run's wall time
(one step, median of `--repeat`), inline (offloading off) and offloaded (the 256 KB default);
then the replay time of a run with `--outputs` recorded outputs of 300 KB each (resumed by an
event: the time from the event until it waits again, which is mostly the replay reading them
back; median of `--repeat` resumptions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import inferpipe as ip
from inferpipe.core.json import KB, MB
from inferpipe.store.sqlite import SQLiteStore

INLINE = ip.Limits(offload_bytes=1024 * MB)
"""Offloading off: every output stays in its row (the ceilings raised to match)."""


def build_app(limits: ip.Limits, text: str, outputs: int, replays: int) -> ip.App:
    app = ip.App("bench-blobs", limits=limits)

    @app.function(id="one")
    async def one(ctx: ip.Context) -> int:
        return len(await ctx.step.run("big", lambda: text))

    @app.function(id="many")
    async def many(ctx: ip.Context) -> int:
        total = 0
        for _ in range(outputs):
            total += len(await ctx.step.run("part", lambda: os.urandom(150 * KB).hex()))
        for n in range(replays):  # each event resumes the run: a replay of the whole journal
            await ctx.step.wait_for_event(f"go-{n}", event=f"bench/go-{n}", timeout="1h")
        return total

    return app


def row_bytes(db: Path, run_id: str) -> int:
    with sqlite3.connect(db) as conn:
        (size,) = conn.execute(
            "SELECT length(output) FROM steps WHERE run_id = ? AND key = 'big'", (run_id,)
        ).fetchone()
    return int(size)


async def measure(label: str, limits: ip.Limits, mb: int, repeat: int, outputs: int) -> None:
    text = os.urandom(mb * MB // 2).hex()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        app = build_app(limits, text, outputs, repeat)
        await app.start(store=SQLiteStore(db))
        worker = app.worker(concurrency=4)
        task = asyncio.create_task(worker.run())
        try:
            walls, run_id = [], ""
            for _ in range(repeat):
                t0 = time.perf_counter()
                run_id = await app.invoke("one")
                await app.result(run_id, timeout=600)
                walls.append((time.perf_counter() - t0) * 1000)
            print(
                f"{label:9s} {mb} MB output: row {row_bytes(db, run_id):>10,} bytes   "
                f"run {statistics.median(walls):7.0f} ms (median of {repeat})"
            )
            many = await app.invoke("many")
            replays = []
            for n in range(repeat):
                await parked_at(app, many, n)
                t0 = time.perf_counter()
                await app.send(ip.Event(f"bench/go-{n}", {}))
                if n + 1 < repeat:
                    await parked_at(app, many, n + 1)
                else:
                    await app.result(many, timeout=600)
                replays.append((time.perf_counter() - t0) * 1000)
            print(
                f"{label:9s} replay of {outputs} x 300 KB outputs: "
                f"{statistics.median(replays):7.0f} ms (median of {repeat})"
            )
        finally:
            worker.notify_shutdown()
            await task
            await app.close()


async def parked_at(app: ip.App, run_id: str, n: int) -> None:
    """Until the run waits at its `n`th wait (its steps polled every 2 ms)."""
    while True:
        waiting = (await app.get_run(run_id)).status is ip.RunStatus.WAITING
        if waiting and any(s.name == f"go-{n}" for s in await app.steps(run_id)):
            return
        await asyncio.sleep(0.002)


async def main(mb: int, repeat: int, outputs: int) -> None:
    await measure("inline", INLINE, mb, repeat, outputs)
    await measure("offloaded", ip.Limits(), mb, repeat, outputs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--outputs", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.mb, args.repeat, args.outputs))
