"""How long a hostile CEL filter holds up `/healthz` on a running API server.

A keyless API server (as `inferpipe dev` runs it) serves an app with a few runs. One thread
sends `GET /v1/dashboard/runs?where=<filter>` while another probes `/healthz` every 5 ms; the
figure is the slowest probe answered while the filter request was in flight, against the
slowest probe with no filter running. Each filter is tried `--repeat` times.

Filters: the issue's four nested `map`s over literal lists (234 characters), and one at the
2000-character cap of `where` (two nested `map`s over long literal lists, the deepest nesting
the static check admits).

Run: .venv/bin/python -m bench.hostile_expressions [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

import inferpipe as ip
from inferpipe.server.runner import ApiServer

PROBE_INTERVAL_S = 0.005


def literal_list(chars: int) -> str:
    """A CEL list literal of small integers, about `chars` characters long."""
    items: list[str] = []
    while len("[" + ",".join([*items, "9"]) + "]") <= chars:
        items.append(str(len(items) % 10))
    return "[" + ",".join(items) + "]"


def issue_filter() -> str:
    """The issue's filter: four nested maps, 234 characters."""
    shape = "{L}.map(run, {L}.map(event, {L}.map(run, {L}.map(event, run+event)))).size() > 0"
    room = (234 - len(shape.replace("{L}", ""))) // 4
    return shape.replace("{L}", literal_list(room))


def capped_filter(cap: int = 2000) -> str:
    """Two nested maps over literal lists, as long as the `where` cap allows."""
    shape = "{L}.map(run, {L}.map(event, run+event)).size() > 0"
    room = (cap - len(shape.replace("{L}", ""))) // 2
    return shape.replace("{L}", literal_list(room))


def build_app(database: str) -> ip.App:
    app = ip.App("bench-hostile", database=database)

    @app.function(id="noop", trigger=ip.on_event("bench/noop"), retries=0)
    async def noop(ctx: ip.Context) -> str:
        return "ok"

    return app


def slowest_probe(base_url: str, during: threading.Event, done: threading.Event) -> float:
    """The slowest /healthz answer while `during` is set, until `done`."""
    worst = 0.0
    with httpx.Client(base_url=base_url, timeout=60.0) as http:
        while not done.is_set():
            started = time.perf_counter()
            http.get("/healthz").raise_for_status()
            took = time.perf_counter() - started
            if during.is_set():
                worst = max(worst, took)
            time.sleep(PROBE_INTERVAL_S)
    return worst


def measure(base_url: str, where: str | None) -> tuple[float, float, int]:
    """(slowest /healthz in seconds, filter request seconds, its status)."""
    during, done = threading.Event(), threading.Event()
    result: dict[str, float] = {}
    prober = threading.Thread(
        target=lambda: result.update(worst=slowest_probe(base_url, during, done))
    )
    prober.start()
    time.sleep(0.05)
    during.set()
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=120.0) as http:
        if where is None:
            time.sleep(0.5)
            status = 0
        else:
            status = http.get("/v1/dashboard/runs", params={"where": where}).status_code
    took = time.perf_counter() - started
    time.sleep(0.02)
    during.clear()
    done.set()
    prober.join()
    return result["worst"], took, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(str(Path(tmp) / "bench.db"))
        server = ApiServer(app, port=0, require_keys=False, log_level="warning")
        thread = threading.Thread(target=lambda: asyncio.run(server.run()), daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        base_url = f"http://127.0.0.1:{server.port}"
        try:
            with httpx.Client(base_url=base_url, timeout=10.0) as http:
                for _ in range(3):
                    http.post("/v1/events", json={"name": "bench/noop", "data": {}})
            filters = {"none": None, "issue (234 chars)": issue_filter()}
            filters["cap (2000 chars)"] = capped_filter()
            for label, where in filters.items():
                runs = [measure(base_url, where) for _ in range(args.repeat)]
                worst = [r[0] * 1000 for r in runs]
                took = [r[1] * 1000 for r in runs]
                print(
                    f"{label:>18}: slowest /healthz {max(worst):8.1f} ms "
                    f"(median {statistics.median(worst):7.1f}) · filter request "
                    f"{statistics.median(took):8.1f} ms · HTTP {runs[-1][2]}"
                )
        finally:
            server.stop()
            thread.join(timeout=30)


if __name__ == "__main__":
    main()
