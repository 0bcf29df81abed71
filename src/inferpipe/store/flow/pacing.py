"""The arithmetic of flow control: throttle starts (GCRA), debounce and batch windows, fair
queue tags. Pure functions of the state a store loaded."""

from __future__ import annotations

from inferpipe.core.records import FlowBuffer, FlowPace
from inferpipe.store.base import FAIR_STEP_MS
from inferpipe.store.flow.reasons import at

PaceState = tuple[int, int]
"""A throttle key's GCRA state: its theoretical arrival time in units of 1/rate ms, and that
rate (the key's limit when the state was written)."""


def throttle_start(state: PaceState | None, pace: FlowPace, now_ms: int) -> tuple[int, PaceState]:
    """GCRA: reserve the key's next start, one every period/limit ms, `burst` more early.
    Returns the start and the key's new state.

    Times are kept in units of 1/limit ms, so that each step is exactly `period_ms` units."""
    rate = pace.limit
    now_units = now_ms * rate
    tat = now_units if state is None else max(now_units, state[0] * rate // state[1])
    start_units = max(now_units, tat - pace.burst * pace.period_ms)
    return -(-start_units // rate), (tat + pace.period_ms, rate)


def window(buf: FlowBuffer, first_at_ms: int, size: int, now_ms: int) -> tuple[int, str]:
    """When a pending debounce/batch run of `size` events starts, and why it waits until then."""
    if buf.batch:
        if size >= buf.max_size:
            return now_ms, f"batch full: {size} events"
        closes = first_at_ms + buf.wait_ms
        return closes, f"collecting a batch: {size}/{buf.max_size} events until {at(closes)}"
    starts = now_ms + buf.wait_ms
    latest = ""
    if buf.max_wait_ms is not None:
        starts = min(starts, first_at_ms + buf.max_wait_ms)
        latest = f", at the latest {at(first_at_ms + buf.max_wait_ms)}"
    return starts, f"debounced: starts at {at(starts)} unless another event comes{latest}"


def fair_tag(head_ms: int | None, next_tag_ms: int | None, now_ms: int) -> tuple[int, int]:
    """Start-time fair queueing: a key's runs get consecutive tags from the head of the
    function's queue (`head_ms`: the first tag of its unstarted ready runs), so keys take
    turns however many runs each has queued. Returns the tag and the key's next one."""
    virtual_now = now_ms if head_ms is None else min(head_ms, now_ms)
    tag = virtual_now if next_tag_ms is None else max(next_tag_ms, virtual_now)
    return tag, tag + FAIR_STEP_MS
