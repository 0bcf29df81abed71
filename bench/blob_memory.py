"""Peak memory of a run whose one step returns a large string (offloaded to the blob store).

    .venv/bin/python -m bench.blob_memory [--mb 100] [--store sqlite|postgres]

Runs in a fresh interpreter (peak RSS is per process), on the embedded SQLite store with its
folder blob store, or on PostgreSQL with its `blobs` table (a temporary server, tests/servers.py;
its memory is another process's, so the figure is the engine's side alone). Prints the peak resident set size, the part of it above the process's size
before the run (the output itself is `--mb` MB: anything beyond one copy is the engine's), and
the wall time of the run. The output is hex of random bytes, as in `bench.blobs`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import inferpipe as ip
from inferpipe.core.json import MB
from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


async def main(mb: int, store_name: str) -> None:
    app = ip.App("bench-blob-memory")

    @app.function(id="one")
    async def one(ctx: ip.Context) -> int:
        return len(await ctx.step.run("big", lambda: os.urandom(mb * MB // 2).hex()))

    stop: Callable[[], None] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        store: Store
        if store_name == "postgres":
            from tests.servers import start_postgres  # noqa: PLC0415 - only for --store postgres

            url, stop, _ = start_postgres(Path(tempfile.mkdtemp(prefix="inferpipe-pg-")))
            store = PostgresStore(url)
        else:
            store = SQLiteStore(Path(tmp) / "bench.db")
        await app.start(store=store)
        worker = app.worker(concurrency=1)
        task = asyncio.create_task(worker.run())
        try:
            base = peak_mb()
            t0 = time.perf_counter()
            run = await app.result(await app.invoke("one"), timeout=600)
            wall_ms = (time.perf_counter() - t0) * 1000
            assert run.output == mb * MB, run.error
        finally:
            worker.notify_shutdown()
            await task
            await app.close()
            if stop is not None:
                stop()
    peak = peak_mb()
    print(
        f"{store_name}, {mb} MB step output: peak RSS {peak:,.0f} MB ({peak - base:,.0f} MB above the"
        f" {base:,.0f} MB before the run, {(peak - base) / mb:.1f}x the output), run {wall_ms:,.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    asyncio.run(main(args.mb, args.store))
