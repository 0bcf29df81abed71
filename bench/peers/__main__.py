"""The peer table of issue #18 in one command: inferpipe beside DBOS Transact on this machine.

    .venv/bin/python -m bench.peers [--reps 3] [--stores sqlite,postgres] [--only REGEX]
        [--database URL] [--dbos-python PATH] [--dbos-version 3.4.0]

Every case runs each engine in a fresh process on a fresh database, the two engines one after
the other, the order flipping from one repetition to the next (a busy machine slows both
alike; the ratio is what counts); each figure is the median of the repetitions. Cases: 1 run x
1000 steps (µs/step); 1000 runs x 10 steps (steps/s) started by one call per run, by
inferpipe's one batched send, and through a concurrency limit of 50 (DBOS: on PostgreSQL
only, where the issue compares it); the wake-up of 200 parked runs (p50, p99); 300 zero-step
runs start -> result (p50). See `bench/peers/common.py` for the workloads. The w2 cases ending
in `-1p` and `-2p` (inferpipe only) run the workers in 1 or 2 processes of their own, the
benchmark's process only starting the runs and awaiting them: how throughput scales out.

DBOS runs in a virtualenv of its own, made on first use in ~/.cache/inferpipe-bench/ with
`pip install dbos==VERSION` (never a dependency of inferpipe); when that fails the table has
inferpipe's column only, and says why. PostgreSQL: the server at `--database`, else a
throwaway one (tests/servers.py). Progress and the load average go to stderr; ~10 minutes on
a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inferpipe-bench"
RUN_TIMEOUT_S = 600
"""A case's run at most (DBOS's 1000 x 10 steps on SQLite took over 300 s at load 27)."""

CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("w1", ("dbos", "inferpipe"), ("sqlite", "postgres")),
    ("w2-start", ("dbos", "inferpipe"), ("sqlite", "postgres")),
    ("w2-send", ("inferpipe",), ("sqlite", "postgres")),
    ("w2-queue", ("dbos", "inferpipe"), ("postgres",)),
    ("w2-queue", ("inferpipe",), ("sqlite",)),
    *(
        (f"w2-{mode}-{p}p", ("inferpipe",), ("sqlite", "postgres"))
        for mode in ("start", "send", "queue")
        for p in (1, 2)
    ),
    ("w3", ("dbos", "inferpipe"), ("sqlite", "postgres")),
    ("w4", ("dbos", "inferpipe"), ("sqlite", "postgres")),
]
"""(case, engines, stores): the runs of one repetition, in order."""

RATE = "steps_per_s"

ROWS: list[tuple[str, str, str, str, bool]] = [
    ("1 run x 1000 steps, µs/step", "w1", "w1", "us_per_step", False),
    ("1000 x 10 steps, invoke, steps/s", "w2-start", "w2-start", "steps_per_s", True),
    ("1000 x 10 steps, batched send, steps/s", "w2-send", "w2-start", "steps_per_s", True),
    ("1000 x 10 steps, concurrency 50, steps/s", "w2-queue", "w2-queue", "steps_per_s", True),
    *(
        (f"{label}, {p} worker process{'es' if p > 1 else ''}", f"w2-{mode}-{p}p", "", RATE, True)
        for mode, label in (
            ("start", "1000 x 10 steps, invoke"),
            ("send", "1000 x 10 steps, batched send"),
            ("queue", "1000 x 10 steps, concurrency 50"),
        )
        for p in (1, 2)
    ),
    ("wake-up after a matching event, p50 ms", "w3", "w3", "wakeup.p50_ms", False),
    ("wake-up after a matching event, p99 ms", "w3", "w3", "wakeup.p99_ms", False),
    ("zero-step run, start -> result, p50 ms", "w4", "w4", "start_to_result.p50_ms", False),
]
"""(label, inferpipe's case, DBOS's case, metric, higher is better)."""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def dbos_python(version: str) -> tuple[str | None, str]:
    """The python of a virtualenv with DBOS installed (made when missing), or None and why."""
    venv = CACHE / f"dbos-{version}"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import dbos"]
    if python.exists() and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return str(python), ""
    progress(f"installing dbos=={version} into {venv} (once)")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", f"dbos=={version}"],
    ]
    for step in steps:
        done = subprocess.run(step, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return None, f"`{' '.join(step[-3:])}` failed: {' '.join(tail)}"
    return str(python), ""


def run_one(python: str, engine: str, store: str, case: str, server: str) -> dict[str, Any]:
    module = f"bench.peers.{engine}_side"
    argv = [python, "-m", module, "--store", store, "--case", case, "--pg-server", server]
    try:
        done = subprocess.run(
            argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        progress(f"    {engine} {case} {store}: timed out after {RUN_TIMEOUT_S} s")
        return {}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        err = done.stderr.strip().splitlines()[-1:] or ["no output"]
        progress(f"    {engine} {case} {store}: failed ({err[0]})")
        return {}
    record: dict[str, Any] = json.loads(lines[-1])
    if record["metrics"].get("wrong"):
        progress(f"    {engine} {case} {store}: {record['metrics']['wrong']} wrong results")
    return record


def metric(record: dict[str, Any], path: str) -> float | None:
    value: Any = record.get("metrics", {})
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value)


def median(records: list[dict[str, Any]], path: str) -> float | None:
    values = [v for v in (metric(r, path) for r in records) if v is not None]
    return statistics.median(values) if values else None


def table(results: dict[tuple[str, str, str], list[dict[str, Any]]], stores: list[str]) -> None:
    print("| workload | store | DBOS | inferpipe | inferpipe vs DBOS |")
    print("|---|---|---:|---:|---|")
    for label, ours, theirs, path, higher in ROWS:
        for store in stores:
            mine = median(results.get(("inferpipe", ours, store), []), path)
            peer = median(results.get(("dbos", theirs, store), []), path)
            if mine is None and peer is None:
                continue
            cells = [
                "-" if v is None else f"{v:.3g}" if v < 100 else f"{v:.0f}" for v in (peer, mine)
            ]
            verdict = ""
            if mine and peer:
                ahead = mine / peer if higher else peer / mine
                verdict = f"{ahead:.2f}x {'ahead' if ahead >= 1 else 'behind'}"
            print(f"| {label} | {store} | {cells[0]} | {cells[1]} | {verdict} |")


def main(args: argparse.Namespace) -> None:
    stores = args.stores.split(",")
    peer, why = (args.dbos_python, "") if args.dbos_python else dbos_python(args.dbos_version)
    if peer is None:
        progress(f"DBOS is skipped: {why}")
    stop: Callable[[], None] | None = None
    server = args.database or ""
    if "postgres" in stores and not server:
        from tests.servers import start_postgres  # noqa: PLC0415 - only without --database

        server, stop, _ = start_postgres(Path(tempfile.mkdtemp(prefix="inferpipe-peers-pg-")))
    pythons = {"inferpipe": sys.executable, "dbos": peer}
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    before, t0 = load(), time.monotonic()
    try:
        for rep in range(1, args.reps + 1):
            for case, engines, case_stores in CASES:
                if not re.search(args.only, case):
                    continue
                order = engines if rep % 2 else tuple(reversed(engines))
                for store in (s for s in case_stores if s in stores):
                    for engine in order:
                        python = pythons[engine]
                        if python is None:
                            continue
                        progress(f"[rep {rep}] {engine} {case} {store} (load {load()})")
                        record = run_one(python, engine, store, case, server)
                        if record:
                            results.setdefault((engine, case, store), []).append(record)
    finally:
        if stop is not None:
            stop()
    minutes = (time.monotonic() - t0) / 60
    print(f"\nPeer table: medians of {args.reps}, {os.cpu_count()} cores, {minutes:.1f} min")
    print(f"load average before: {before}; after: {load()}")
    if peer is None:
        print(f"DBOS skipped: {why}")
    print()
    table(results, stores)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--only", default=".", help="a regex: the cases to run (e.g. '^w4')")
    parser.add_argument("--database", help="a postgresql:// server URL (default: a throwaway)")
    parser.add_argument("--dbos-python", help="a python with dbos installed (default: made)")
    parser.add_argument("--dbos-version", default="3.4.0")
    main(parser.parse_args())
