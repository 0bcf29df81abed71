"""Step overhead with OpenTelemetry export on vs off, in one process, rounds alternating
(off, on, off, on, ...) so that a change in the machine's load hits both alike.

    .venv/bin/python -m bench.telemetry [--steps 1000] [--rounds 6]

Each round runs one run of `--steps` steps on a fresh SQLite file (durable commits) through a
worker; "on" exports every span and metric over OTLP/HTTP to a collector stand-in on loopback
that reads each request and answers 200. Prints the median per-step wall time and CPU time
(the process's, exporter thread included) of each side, and their ratio on/off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import inferpipe as ip
from inferpipe.store.sqlite import SQLiteStore


class _Collector(BaseHTTPRequestHandler):
    spans_bytes = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).spans_bytes += len(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def _noop(i: int) -> int:
    return i


def build_app(steps: int, telemetry: bool) -> ip.App:
    app = ip.App("bench-telemetry", telemetry=telemetry)

    @app.function(id="long")
    async def long(ctx: ip.Context) -> int:
        for i in range(steps):
            await ctx.step.run("s", _noop, i)
        return steps

    return app


async def one_round(steps: int, telemetry: bool) -> tuple[float, float]:
    """Wall and CPU microseconds per step of one run, export on or off."""
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(steps, telemetry)
        await app.start(store=SQLiteStore(Path(tmp) / "bench.db"))
        worker = app.worker(concurrency=1)
        task = asyncio.create_task(worker.run())
        try:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            await app.result(await app.invoke("long"), timeout=600)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        finally:
            worker.notify_shutdown()
            await task
            await app.close()  # flushes what is left: not counted, as in a long-lived worker
    return wall / steps * 1e6, cpu / steps * 1e6


async def main(steps: int, rounds: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        }
    )
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    await one_round(min(steps, 100), False)  # warm up imports and caches
    await one_round(min(steps, 100), True)
    for i in range(rounds * 2):
        telemetry = i % 2 == 1
        results[telemetry].append(await one_round(steps, telemetry))
    server.shutdown()
    print(
        f"1 run x {steps} steps, {rounds} rounds each side (A B A B), load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'':14} {'wall us/step':>13} {'cpu us/step':>12}")
    medians = {}
    for telemetry, label in ((False, "export off"), (True, "export on")):
        wall = statistics.median(w for w, _ in results[telemetry])
        cpu = statistics.median(c for _, c in results[telemetry])
        medians[telemetry] = (wall, cpu)
        print(f"{label:14} {wall:13.0f} {cpu:12.0f}")
    ratio_wall = medians[True][0] / medians[False][0]
    ratio_cpu = medians[True][1] / medians[False][1]
    print(f"{'ratio on/off':14} {ratio_wall:13.2f} {ratio_cpu:12.2f}")
    print(f"exported {_Collector.spans_bytes / 1e6:.1f} MB of OTLP")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps in the run of each round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each side")
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.rounds))
