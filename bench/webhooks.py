"""Outgoing webhooks' cost on run throughput, and delivery latency.

    .venv/bin/python -m bench.webhooks [--runs 500] [--subscribers 0 1]

Runs N trivial runs through a worker (concurrency 100) on the embedded SQLite store, without
`enable_delivery` and with it (with subscribers each finished run starts a dispatch run, and
one delivery run per subscriber to a receiver on loopback; without, dispatch runs are skipped
but for the first). Prints the wall time until every run (and every delivery) is done, how
many runs were made, and with subscribers the median time from a run's finish to its
delivery's arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import inferpipe as ip
from inferpipe.core import json
from inferpipe.net.egress import EgressPolicy
from inferpipe.webhooks.delivery import DeliverySettings, enable_delivery
from inferpipe.webhooks.subscriptions import EventType, webhook_subscriptions


class _Receiver:
    def __init__(self) -> None:
        self.arrived: list[tuple[float, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.arrived.append((time.time(), json.loads(body)))  # type: ignore[arg-type]
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


_FINISHED = {"completed", "failed", "cancelled"}


async def one(runs: int, delivery: bool, subscribers: int, folder: Path) -> None:
    app = ip.App("bench-webhooks", database=f"sqlite:///{folder / f'{delivery}-{subscribers}.db'}")
    finished_at: dict[str, float] = {}

    @app.function(id="noop", trigger=ip.on_event("bench/go"), retries=0)
    async def noop(ctx: ip.Context) -> int:
        finished_at[ctx.run_id] = time.time()
        return 1

    if delivery:
        enable_delivery(app, DeliverySettings(egress=EgressPolicy(allow_private=True)))
    receiver = _Receiver()
    async with app:
        for _ in range(subscribers):
            await webhook_subscriptions(app.engine.store).create(
                "default", receiver.url, events=[EventType.RUN_FINISHED], allow_private=True
            )
        worker = app.worker(concurrency=100)
        task = asyncio.create_task(worker.run())
        start = time.perf_counter()
        await app.send([ip.Event("bench/go", {"i": i}) for i in range(runs)])
        # Done: every run finished (dispatch and delivery runs too: how many there are is
        # what is measured) and every delivery arrived.
        while True:
            counts = await app.engine.store.count_runs_by_status()
            unfinished = sum(n for status, n in counts.items() if status not in _FINISHED)
            if (
                len(finished_at) >= runs
                and unfinished == 0
                and len(receiver.arrived) >= runs * subscribers
            ):
                break
            await asyncio.sleep(0.02)
        wall = time.perf_counter() - start
        total = sum(counts.values())
        worker.notify_shutdown()
        await task
    receiver.server.shutdown()
    label = f"delivery={'on ' if delivery else 'off'} subscribers={subscribers}"
    line = f"{label}: {runs} runs in {wall:.2f} s ({runs / wall:.0f} runs/s, {total} runs made)"
    if subscribers:
        lags = [at - finished_at[p["data"]["run_id"]] for at, p in receiver.arrived]
        line += f", finish-to-arrival median {statistics.median(lags) * 1000:.0f} ms"
    print(line, flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--subscribers", type=int, nargs="*", default=[0, 1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        await one(args.runs, False, 0, Path(folder))
        for subscribers in args.subscribers:
            await one(args.runs, True, subscribers, Path(folder))


if __name__ == "__main__":
    asyncio.run(main())
