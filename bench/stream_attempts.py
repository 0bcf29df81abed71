"""What telling attempts apart costs: the scan a resumed execution makes of its run's stream,
and the final-attempt view a client reads through.

    .venv/bin/python -m bench.stream_attempts [--events 10000] [--steps 100]

Prints:
- `abandoned_before` over a topic of `--events` token events spread over `--steps` steps, half
  of them cut off by a crash (what a resumed execution computes once, before it starts; add
  the backend's `get_history` time from `python -m bench.streams`);
- `FinalAttempts.admit` per event, over the same history read ahead (`learn`) and replayed;
- `step_event` for a 3 MB output (encoded once to measure it, then referenced).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from inferpipe.core import run_stream
from inferpipe.core.records import StepKind, StepRecord, StepStatus
from inferpipe.engine import streaming


def history(events: int, steps: int) -> tuple[list[tuple[int, Any]], dict[str, StepRecord]]:
    """Tokens of `steps` steps in execution 1; the odd steps were recorded, the even ones not."""
    found: list[tuple[int, Any]] = []
    for index in range(1, events + 1):
        key = f"step-{index % steps}"
        data = {"type": "llm.token", "data": {"text": "tok"}, "step": key, "attempt": 0}
        found.append((index, {**data, "execution": 1}))
    journal = {
        f"step-{n}": StepRecord("r", f"step-{n}", f"step-{n}", StepKind.RUN, StepStatus.COMPLETED)
        for n in range(1, steps, 2)
    }
    return found, journal


def timed_ms(fn: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - started) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    events, journal = history(args.events, args.steps)

    scan_ms, found = timed_ms(run_stream.abandoned_before, events, journal, 2)
    print(f"abandoned_before, {args.events} events: {scan_ms:.1f} ms ({len(found)} abandoned)")

    notices = [
        (args.events + n, run_stream.abandoned_event(a, p, r, 2))
        for n, (a, p, r) in enumerate(found, 1)
    ]
    replayed = [d for _, d in events + notices]

    def view() -> int:
        final = run_stream.FinalAttempts()
        final.learn(replayed)
        return sum(final.admit(d) for d in replayed)

    view_ms, shown = timed_ms(view)
    per_event_us = view_ms * 1000 / len(replayed)
    print(
        f"FinalAttempts over {len(replayed)} events: {view_ms:.1f} ms "
        f"({per_event_us:.2f} µs/event, {shown} shown)"
    )

    big = StepRecord(
        "r", "s", "s", StepKind.RUN, StepStatus.COMPLETED, output={"text": "x" * 3_000_000}
    )
    ref_ms, event = timed_ms(streaming.step_event, big, 1)
    print(f"step_event, 3 MB output: {ref_ms:.1f} ms (referenced: {event['output'] is None})")


if __name__ == "__main__":
    main()
