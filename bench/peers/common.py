"""What both engines' sides of the peer benchmark share: the workloads' sizes, the clock, the
latency summary and the one JSON line each run prints.

This module imports nothing of inferpipe: the DBOS side runs it in a virtualenv of its own.

  w1  1 run of 1000 sequential no-op steps: µs per step
  w2  1000 runs x 10 no-op steps started at once (`start`: one start call per run, `send`:
      inferpipe's one batched send, `queue`: a concurrency limit of 50): steps per second
  w3  200 runs parked on a wait, then one matching message each, sent one after another:
      wake-up = send() called -> the wait returned inside the run
  w4  300 zero-step runs one after another: start -> result
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time
from typing import Any

SIZES = {"w1": 1000, "w2": 1000, "w3": 200, "w4": 300}
W2_STEPS = 10
WARMUP = 5


def now() -> float:
    return time.perf_counter()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    k = math.ceil(p / 100.0 * len(ordered)) - 1
    return ordered[max(0, min(len(ordered) - 1, k))]


def latency_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(engine: str, version: str, store: str, case: str, metrics: dict[str, Any]) -> None:
    """Print the run's one JSON line on stdout (logs go to stderr)."""
    record = {
        "engine": engine,
        "version": version,
        "store": store,
        "case": case,
        "metrics": metrics,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
