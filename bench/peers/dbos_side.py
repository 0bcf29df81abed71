"""DBOS Transact's side of the peer benchmark: one workload, one fresh database, one JSON line.

    <dbos venv>/bin/python -m bench.peers.dbos_side --store sqlite|postgres --case CASE
        [--pg-server URL]

Run from the repository's root by `python -m bench.peers`, in a virtualenv of its own with
`dbos` installed (never a dependency of inferpipe). CASE: w1, w2-start
(`DBOS.start_workflow` x N), w2-queue (a queue with `global_concurrency=50`), w3 (`DBOS.recv`
on its own workflow id, woken by `DBOS.send`), w4 (`DBOS.start_workflow(...).get_result()`).
Workflows and steps are plain functions (DBOS runs each workflow on a thread of its own), with
DBOS's default settings (SQLite wakes `recv` by polling every second; PostgreSQL by
LISTEN/NOTIFY).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import uuid
from importlib.metadata import version
from typing import Any

import psycopg
from dbos import DBOS, DBOSConfig

from bench.peers import common
from bench.peers.common import W2_STEPS, WARMUP, cpu_s, latency_ms, now


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += noop(i)
    return total


@DBOS.workflow()
def empty() -> int:
    return 0


entered = threading.Semaphore(0)
"""Released once per w3 waiter that reached its `recv`."""


@DBOS.workflow()
def waiter(timeout_s: float) -> list[Any]:
    entered.release()
    message = DBOS.recv("bench", timeout_seconds=timeout_s)
    return [now(), message]


def w1(n: int) -> dict[str, Any]:
    steps(10)
    t0 = now()
    total = DBOS.start_workflow(steps, n).get_result()
    return {
        "us_per_step": round((now() - t0) / n * 1e6, 1),
        "wrong": int(total != n * (n - 1) // 2),
    }


def w2(n: int, mode: str) -> dict[str, Any]:
    expect = W2_STEPS * (W2_STEPS - 1) // 2
    for _ in range(WARMUP):
        steps(W2_STEPS)
    if mode == "queue":
        queue = DBOS.register_queue("bench_q", global_concurrency=50)
        t0 = now()
        handles = [queue.enqueue(steps, W2_STEPS) for _ in range(n)]
        results = [h.get_result(polling_interval_sec=0.01) for h in handles]
    else:
        t0 = now()
        handles = [DBOS.start_workflow(steps, W2_STEPS) for _ in range(n)]
        results = [h.get_result() for h in handles]
    return {
        "steps_per_s": round(n * W2_STEPS / (now() - t0), 1),
        "wrong": sum(1 for r in results if r != expect),
    }


def w3(n: int) -> dict[str, Any]:
    handles = [DBOS.start_workflow(waiter, 60.0) for _ in range(n)]
    for _ in range(n):
        entered.acquire()
    # Parked once recv has durably recorded its timeout (a step row of the workflow).
    pending = {h.get_workflow_id() for h in handles}
    while pending:
        pending = {w for w in pending if not DBOS.list_workflow_steps(w, load_output=False)}
        time.sleep(0.05)
    time.sleep(0.2)  # the last recv calls reach their wait
    sent_at = []
    for k, handle in enumerate(handles):
        sent_at.append(now())
        DBOS.send(handle.get_workflow_id(), k, "bench")
    lat, wrong = [], 0
    for k, handle in enumerate(handles):
        resumed, message = handle.get_result()
        if message != k:
            wrong += 1
            continue
        lat.append(resumed - sent_at[k])
    return {"wakeup": latency_ms(lat), "wrong": wrong}


def w4(n: int) -> dict[str, Any]:
    for _ in range(WARMUP):
        DBOS.start_workflow(empty).get_result()
    lat, wrong = [], 0
    for _ in range(n):
        t0 = now()
        wrong += int(DBOS.start_workflow(empty).get_result() != 0)
        lat.append(now() - t0)
    return {"start_to_result": latency_ms(lat), "wrong": wrong}


def main(args: argparse.Namespace) -> None:
    workload, _, mode = args.case.partition("-")
    n = common.SIZES[workload]
    folder = tempfile.mkdtemp(prefix="dbos-peer-")
    url, name = f"sqlite:///{os.path.join(folder, 'bench.sqlite')}", ""
    if args.store == "postgres":
        name = f"peer_dbos_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = args.pg_server.rsplit("/", 1)[0] + f"/{name}"
    config: DBOSConfig = {"name": "peer-bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    try:
        c0, t0 = cpu_s(), now()
        if workload == "w1":
            metrics = w1(n)
        elif workload == "w2":
            metrics = w2(n, mode)
        elif workload == "w3":
            metrics = w3(n)
        else:
            metrics = w4(n)
        metrics["cpu_pct"] = round(100 * (cpu_s() - c0) / (now() - t0), 1)
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=0)
        shutil.rmtree(folder, ignore_errors=True)
        if name:
            with psycopg.connect(args.pg_server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    common.emit("dbos", version("dbos"), args.store, args.case, metrics)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--pg-server", default="", help="a postgresql:// URL of a server")
    main(parser.parse_args())
